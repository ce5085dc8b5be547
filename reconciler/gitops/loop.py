"""`--watch`: keep the node converged to its source, whatever happens.

Level-triggered, like a controller: events only say "look again"; each pass
plans the whole desired state against the whole observed state (files a file
event names are the only ones read again, and unchanged inputs reuse the
compiled state). Triggers are in gitops.triggers. One shortcut comes first:
a link that netlink announces and the configuration already names gets its
programs at once, from the state the last pass converged to
(engine.link_fast); the pass that follows confirms it.

A followed remote is fetched off the pass (gitops.fetcher): a pass waits
for the fetch only `fetch_wait` seconds, serving link events meanwhile, then
goes on with the commits last fetched; the fetch's end wakes another pass.

A pass never ends the watcher. When the newest source cannot be used (it is
invalid, its ref vanished or moved backwards, its signature is refused, the
apply lock is held, an apply failed, the fetch failed), the pass is recorded
as failed, the node is held to the last source that was good (drift against
it is still repaired; after a failed fetch, the last fetched commit), and the
newest is tried again with a backoff. `--detect-only` plans and reports but
never changes the kernel. SIGTERM lets the current pass finish, then the
watcher exits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.config.source import Source, SourceError, SourceFile
from reconciler.config.spec import open_source
from reconciler.engine import history
from reconciler.engine.caches import Caches
from reconciler.engine.foreign_place import blocked_error, blocked_in
from reconciler.engine.history import BLOCKED, PassRecord
from reconciler.engine.reconcile import InvalidConfig, ReconcileError, Target, Unrecorded
from reconciler.engine.service_health import ServiceHealth
from reconciler.gitops import triggers
from reconciler.gitops.fetcher import Fetcher
from reconciler.gitops.repo import Follower, RewindError, guarded_commit
from reconciler.gitops.signatures import Keyring
from reconciler.gitops.triggers import LINKS_CHANGED, STOP, Backoff, Event
from reconciler.plan.plan import Plan
from reconciler.plan.state import DesiredState

log = logging.getLogger(__name__)

LINK_SETTLE_S = 0.02  # a pod's veth arrives as a burst of link and address events
FILE_SETTLE_S = 0.05  # watchfiles already groups a checkout's writes
IDLE_S = 0.5  # this long without events after a pass: time for housekeeping
# How long a pass waits for a fetch in flight before it reads the commits
# last fetched (a fetch normally ends well within it; a hung server does not).
FETCH_WAIT_S = 3.0
FETCH_TICK_S = 0.05  # how often a pass waiting for a fetch looks whether it ended


@dataclass(frozen=True, slots=True)
class WatchOptions:
    interval: float = 30.0  # drift check
    poll_interval: float = 15.0  # --repo
    detect_only: bool = False
    use_cache: bool = True
    config: str = "."
    follower: Follower | None = None
    keyring: Keyring | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)
    wake_addr: str | None = None
    first_retry: float = 1.0
    max_retry: float = 60.0
    fetch_wait: float = FETCH_WAIT_S


@dataclass(frozen=True, slots=True)
class Newest:
    """The source a pass should bring the node to, and how to open it."""

    spec: Mapping[str, Any]
    open: Callable[[], Source]
    commit: str | None = None  # a git source's commit, known before opening


class Watcher:
    """Runs passes until stopped. `report` sees every pass's record (and the
    plan, when there was one); `on_idle` runs once events stop coming
    (writing caches a pass held back)."""

    def __init__(
        self,
        target: Target,
        options: WatchOptions,
        engine: Engine,
        report: Callable[[PassRecord, Plan | None], None] = lambda r, p: None,
        on_idle: Callable[[], None] = lambda: None,
        link_changes: Callable[[], Any] | None = None,
        health: ServiceHealth | None = None,
        follow_agent: Callable[[Any], list[dict[str, Any]]] = lambda agent: [],
        on_fetch: Callable[[str], None] = lambda error: None,
    ) -> None:
        self.target, self.options, self.engine = target, options, engine
        self.report, self.on_idle, self.link_changes = report, on_idle, link_changes
        self.events: queue.Queue[Event] = queue.Queue()
        self.stop = threading.Event()
        self.backoff = Backoff(options.first_retry, options.max_retry)
        self.retry_at: float | None = None
        self.good: Newest | None = None  # the last source that converged
        self.good_identity = ""
        self.pinned: dict[str, bytes] = {}  # a directory source's last good files by blob id
        self.invalid: dict[str, str] = {}  # commits found invalid -> why
        self.verified: set[str] = set()
        self.fetch_error = ""
        self.last_pass: PassRecord | None = None
        self.last_drift: tuple[str, ...] = ()
        self.passes = 0
        self.converged: DesiredState | None = None  # what the last pass left the node at
        # kube-proxy's health check servers, what the last apply left them to
        # serve, and whether it converged
        self.health = health
        self.health_checks: Mapping[str, tuple[int, int]] = {}
        self.health_ok = False
        self.attached: list[str] = []  # applied on link events since the last pass
        # reconciler.compile.agent.AgentSettings of the source the node runs
        # (None until a pass compiled one)
        self.agent: Any = None
        # serves what the agent settings ask (the CLI's listeners); says what
        # listens, for the state --status shows
        self.follow_agent = follow_agent
        self.endpoints: list[dict[str, Any]] = []
        # a remote's fetches; `on_fetch` sees each one's outcome ("": fetched)
        follower = options.follower
        self.fetcher = (
            Fetcher(follower.fetch, on_fetch, self._fetch_ended)
            if follower is not None and follower.remote
            else None
        )

    # -- the loop ------------------------------------------------------------

    def start_triggers(self) -> None:
        opts = self.options
        if opts.follower is None:
            triggers.start(triggers.watch_files, opts.config, self.events, self.stop, name="files")
        elif opts.poll_interval > 0:
            triggers.start(
                triggers.poll, self._probe, self.events, self.stop, opts.poll_interval, name="poll"
            )
        if self.link_changes is not None:
            triggers.start(triggers.watch_links, self.link_changes, self.events, name="links")
        if opts.wake_addr:
            triggers.serve_wake(opts.wake_addr, self.events)

    def request_stop(self, *_: object) -> None:
        self.stop.set()
        self.events.put(STOP)

    def run(self) -> int:
        """Until SIGTERM (or request_stop): pass, wait for a reason, pass again."""
        signal.signal(signal.SIGTERM, self.request_stop)
        self.start_triggers()
        self.run_pass(Event("start", fetch=True))
        try:
            while not self.stop.is_set():
                event = self._next_event()
                if event is STOP or self.stop.is_set():
                    break
                self.run_pass(event)
            log.info("stopped")
            self.on_idle()
            return 0
        finally:
            self.stop.set()
            if self.health is not None:
                self.health.close()
            self._save_stopped()

    def _next_event(self) -> Event:
        """The next reason to pass, with the rest of its burst folded in. A
        failed source is retried with its backoff, but never later than the
        drift timer: a held node's drift is repaired as often as any node's."""
        deadline = time.monotonic() + self.options.interval
        idle_done = False
        while True:
            due = deadline if self.retry_at is None else min(self.retry_at, deadline)
            wait = max(0.0, due - time.monotonic())
            if not idle_done:
                wait = min(wait, IDLE_S)
            try:
                event = self.events.get(timeout=wait)
                break
            except queue.Empty:
                if not idle_done and time.monotonic() < due:
                    idle_done = True
                    self.on_idle()
                    continue
                retry = self.retry_at is not None and self.retry_at <= time.monotonic()
                return Event("retry" if retry else "drift check", fetch=True)
        if event is STOP:
            return event
        self._attach(event.links)
        settle = LINK_SETTLE_S if event.changed is None else FILE_SETTLE_S
        end = time.monotonic() + settle
        while (left := end - time.monotonic()) > 0:
            try:
                more = self.events.get(timeout=left)
            except queue.Empty:
                break
            if more is STOP:
                self.events.put(STOP)
                break
            self._attach(more.links)
            changed = (
                None
                if event.changed is None or more.changed is None
                else event.changed | more.changed
            )
            event = Event(event.reason, changed, event.fetch or more.fetch)
        return event

    def _attach(self, names: frozenset[str]) -> None:
        """Links a netlink event names: those the configuration selects get
        their programs now, before the pass (engine.link_fast)."""
        good = self.good
        if not names or self.converged is None or good is None or self.options.detect_only:
            return
        try:
            self.converged, applied = self.engine.attach_links(
                self.target, good.open, self.converged, names
            )
        except Exception as exc:  # noqa: BLE001 - a shortcut never ends the watcher: the pass follows
            log.warning("link event: not attached ahead of the pass: %s", exc)
            return
        if applied:
            self.attached += [address for address, _ in applied]
            log.info("link event: %d change(s) applied ahead of the pass", len(applied))

    # -- one pass ------------------------------------------------------------

    def run_pass(self, event: Event) -> PassRecord:
        started, began = history.now_iso(), time.monotonic()
        if event.reason != "start":
            log.info("reconciling: %s", event.reason)
        record, plan = self._pass(event)
        record = self._with_fetch_error(record)
        record = dataclasses.replace(
            record,
            started=started,
            duration_s=round(time.monotonic() - began, 4),
            trigger=event.reason,
        )
        if self.attached:
            done = "applied" if record.result == "no-op" else record.result
            record = dataclasses.replace(
                record,
                result=done,
                changes=record.changes + len(self.attached),
                attached=tuple(self.attached),
            )
            self.attached = []
        if record.result == "failed" and not record.held:
            self.converged = None  # (a held node is converged to what it is held at)
        self.passes += 1
        self.last_pass = record
        if record.result == "failed":
            delay = self.backoff.failed()
            self.retry_at = time.monotonic() + delay
            log.warning("pass failed (retry in %gs): %s", delay, record.error)
        else:
            self.backoff.succeeded()
            self.retry_at = None
        if self.health is not None and not self.options.detect_only:
            self.health.sync(self.health_checks, self.health_ok)
        self.endpoints = self.follow_agent(self.agent)
        self._save(record)
        self.report(record, plan)
        return record

    def _pass(self, event: Event) -> tuple[PassRecord, Plan | None]:
        try:
            newest = self._newest(event)
        except SourceError as exc:  # vanished ref, rewind, signature, unreadable
            return self._hold(str(exc))
        tried = f"git:{newest.commit}" if newest.commit is not None else ""
        if newest.commit is not None and newest.commit in self.invalid:
            return self._hold(self.invalid[newest.commit], tried)
        try:
            record, plan = self._reconcile(
                newest, event.changed, event.reason == LINKS_CHANGED
            )
        except InvalidConfig as exc:
            why = self.engine.explain(exc)
            if newest.commit is not None:
                self.invalid[newest.commit] = why
            return self._hold(why, tried)
        except Unrecorded as exc:
            # the kernel runs the new source (or already did); only its record
            # failed: holding would apply the last good one over it
            return self._unrecorded(exc, tried), None
        except (ReconcileError, SourceError, OSError) as exc:
            return self._hold(str(exc), tried)
        if record.result != "failed" and not self.options.detect_only:
            self._remember_good(newest, record.source)
        return record, plan

    def _reconcile(
        self, newest: Newest, changed: frozenset[str] | None, links_changed: bool = False
    ) -> tuple[PassRecord, Plan | None]:
        """One plan (and apply) of `newest`. Changes while the source stayed
        the same are drift, unless interfaces came or went (`links_changed`):
        then the desired state itself moved."""
        applied_before = self._applied_identity()
        opened: list[Source] = []

        def opener() -> Source:
            opened.append(newest.open())
            return opened[-1]

        if self.options.detect_only:
            plan, desired = self.engine.plan(self.target, opener)
            self.agent = desired.agent
            identity = str(plan.source.get("identity", ""))
            same = identity == applied_before
            result = "no-op" if plan.empty else ("drift" if same else "planned")
            drift = tuple(c.address for c in plan.changes) if same else ()
            self.last_drift = drift
            blocked = blocked_in(plan)
            result = BLOCKED if blocked else result
            record = self._record(result, plan, drift=drift, error=_left_out(blocked))
            if result in ("planned", "drift") and applied_before:
                # reported, not applied: the node stays at what it runs
                record = dataclasses.replace(record, held=applied_before)
            return record, plan
        result = self.engine.apply(self.target, newest.spec, changed, opener)
        plan = result.plan
        # a link event's attach builds on a state the node fully has: not one
        # with interfaces left out (it would take their filters for new ones)
        self.converged = None if result.remaining or result.blocked else result.desired
        if result.desired is not None:
            self.health_checks = result.desired.health_checks
            self.agent = result.desired.agent
        self.health_ok = not result.remaining
        identity = str(plan.source.get("identity", ""))
        same = identity == applied_before or identity == self.good_identity
        same = same and not links_changed
        drift = tuple(c.address for c in plan.changes) if same else ()
        self.last_drift = ()
        if result.remaining:
            remaining = ", ".join(c.address for c in result.remaining[:10])
            return (
                self._record(
                    "failed",
                    plan,
                    drift=drift,
                    error=f"not converged after apply; still different: {remaining}",
                ),
                plan,
            )
        kind = "no-op" if plan.empty else ("repaired" if same else "applied")
        if opened and self.options.follower is None:
            self._pin(opened[-1])
        # Objects not ours that hold the place of ours: the rest is applied and
        # the source is good (never held back from, no backoff), but the node
        # is not converged: the pass is `blocked` and names what was left
        # out, and the drift timer's passes look again.
        kind = BLOCKED if result.blocked else kind
        return self._record(kind, plan, drift=drift, error=_left_out(result.blocked)), plan

    def _hold(self, why: str, tried: str = "") -> tuple[PassRecord, Plan | None]:
        """The newest source (`tried`, its identity when known) failed:
        report it, and keep the node at the last good source (repairing drift
        against it) unless only reporting. The record's source is the one
        that failed; `held`, the one the node is kept at."""
        good = self.good or self._good_from_record()
        if good is None:
            return PassRecord("", 0.0, "", "failed", tried, error=why), None
        behind = self._behind_the_node(good)
        if behind:  # holding would roll back what was applied since (by hand)
            return PassRecord("", 0.0, "", "failed", tried, error=f"{why}; {behind}"), None
        try:
            record, plan = self._reconcile(good, None)
        except Unrecorded as exc:  # held at the good source, which is not recorded
            unrecorded = self._unrecorded(exc, tried)
            return dataclasses.replace(unrecorded, error=f"{why}; holding: {exc}"), None
        except (ReconcileError, SourceError, OSError) as exc:
            self.health_ok = False  # the node is in no known state
            # the same refusal again (a node problem, not the source's): said once
            error = why if str(exc) == why else f"{why}; holding: {exc}"
            return PassRecord("", 0.0, "", "failed", tried, error=error), None
        held = dataclasses.replace(
            record, result="failed", error=why, held=record.source, source=tried or record.source
        )
        if tried:
            held = dataclasses.replace(held, description="")
        return held, plan

    def _unrecorded(self, exc: Unrecorded, tried: str) -> PassRecord:
        """A failed pass whose apply reached the kernel but not the record:
        the node runs exc.identity (held there, for readiness and --status)."""
        self.health_ok = exc.converged
        runs = exc.identity if exc.converged else ""
        return PassRecord("", 0.0, "", "failed", tried or exc.identity, error=str(exc), held=runs)

    def _behind_the_node(self, good: Newest) -> str:
        """Why the last good commit may not be held to: it does not contain
        the commit the node last applied from the followed repository (one
        applied by hand since, e.g. from another branch). The watcher never
        moves a node backwards without --allow-rewind, holding included."""
        follower = self.options.follower
        if follower is None or good.commit is None:
            return ""
        try:
            applied = guarded_commit(follower, self.target.state_dir)
            follower.check_forward(good.commit, applied)
        except RewindError:
            return (
                f"not holding to the last good commit {good.commit[:12]} either: it does not "
                f"contain {str(applied)[:12]}, which the node runs; nothing is changed"
            )
        return ""

    def _record(
        self, result: str, plan: Plan, drift: tuple[str, ...] = (), error: str = ""
    ) -> PassRecord:
        return PassRecord(
            started="",
            duration_s=0.0,
            trigger="",
            result=result,
            source=str(plan.source.get("identity", "")),
            description=str(plan.source.get("description", "")),
            changes=len(plan.changes),
            error=error,
            drift=drift,
        )

    # -- sources -------------------------------------------------------------

    def _probe(self) -> str:
        """What the followed ref names now; a fetch that fails raises (the
        poll backs off), a ref that vanished is an answer too (the pass
        reports it). The poll joins a fetch in flight."""
        follower = self.options.follower
        assert follower is not None
        if self.fetcher is not None:
            attempt = self.fetcher.begin()
            attempt.done.wait()
            if attempt.error:
                raise SourceError(attempt.error)
        try:
            return follower.resolve()
        except SourceError as exc:
            return f"unresolved: {exc}"

    def _newest(self, event: Event) -> Newest:
        opts = self.options
        follower = opts.follower
        if follower is None:
            spec = {"kind": "dir", "paths": [opts.config], "policy": dict(opts.policy)}
            return Newest(spec, lambda: self._open(spec, event.changed))
        if self.fetcher is not None:
            if event.fetch:
                # a first clone has nothing older to read: it is waited for
                patience = self.options.fetch_wait if follower.fetched else float("inf")
                self._await_fetch(self.fetcher, patience)
            self.fetch_error = _one_line(self.fetcher.last_error)
            if not follower.fetched:  # nothing to go on with: the pass fails
                raise SourceError(
                    self.fetch_error
                    or f"{follower.repo}: not cloned yet (the first clone is still running; "
                    "its end wakes the next pass)"
                )
            if self.fetch_error:  # the mirror keeps what it had: the pass goes on with that
                log.warning("fetch failed, using the last fetched commits: %s", self.fetch_error)
        commit = follower.resolve()
        if not follower.allow_rewind:
            fetched = not self.fetch_error
            follower.check_forward(commit, guarded_commit(follower, self.target.state_dir, fetched))
        if opts.keyring is not None and commit not in self.verified:
            opts.keyring.verify(follower.local, [commit])
            self.verified.add(commit)
        spec = follower.spec(commit, opts.policy)
        return Newest(spec, lambda: self._open(spec), commit)

    def _await_fetch(self, fetcher: Fetcher, patience: float) -> None:
        """Wait up to `patience` seconds for a fetch (the one in flight, or a
        new one), attaching the links that netlink announces meanwhile from the
        state the last pass converged to: a new pod's filters never wait on
        the network. The events seen are put back for the passes to come."""
        attempt = fetcher.begin(by_pass=True)
        deadline = time.monotonic() + patience
        seen: list[Event] = []
        while not attempt.done.is_set() and (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=min(left, FETCH_TICK_S))
            except queue.Empty:
                continue
            seen.append(event)
            if event is STOP:
                break  # stopping: the pass goes on with what was fetched
            self._attach(event.links)
        for event in seen:
            self.events.put(event)
        if not attempt.done.is_set() and not fetcher.give_up(attempt):
            log.warning(
                "fetch still running after %gs: this pass reads the commits last fetched; "
                "the fetch's end wakes another",
                patience,
            )

    def _fetch_ended(self, error: str) -> None:
        """A fetch no pass waited for ended (or its outcome changed): look again."""
        self.events.put(Event("fetch failed" if error else "fetched"))

    def _with_fetch_error(self, record: PassRecord) -> PassRecord:
        """A pass after a failed fetch fails: it converged the node to the
        commit last fetched (held there), but the followed ref may have moved
        where it cannot see."""
        follower = self.options.follower
        if not self.fetch_error or follower is None or record.result in ("failed", BLOCKED):
            return record
        held = record.held or record.source
        why = (
            f"cannot fetch {follower.repo}: {self.fetch_error}; the node runs "
            f"{held or 'what it ran'}, from the commits last fetched, and sees no push until "
            "a fetch succeeds"
        )
        return dataclasses.replace(record, result="failed", error=why, held=held)

    def _open(self, spec: Mapping[str, Any], changed: frozenset[str] | None = None) -> Source:
        sources = self.engine.caches.sources
        return open_source(spec, self.options.use_cache, changed, sources=sources)

    def _applied_identity(self) -> str:
        record = history.last_applied(self.target.state_dir) or {}
        return str((record.get("source") or {}).get("identity", ""))

    def _remember_good(self, newest: Newest, identity: str) -> None:
        if self.options.follower is not None:
            self.good = newest
        self.good_identity = identity

    def _pin(self, source: Source) -> None:
        """Keep a directory source's files in memory: when the tree turns
        invalid, drift is repaired against what it held when it was good.
        Only files with new content are read."""
        try:
            kept = {f.digest: self.pinned.get(f.digest) or f.read() for f in source.files}
        except (OSError, SourceError):
            return  # changed while being read: the next good pass pins it
        self.pinned = kept
        files = tuple(SourceFile(f.path, f.digest, _constant(kept[f.digest])) for f in source.files)
        frozen = dataclasses.replace(source, files=files)
        spec = {"kind": "dir", "paths": [self.options.config], "policy": dict(self.options.policy)}
        self.good = Newest(spec, lambda: frozen)

    def _good_from_record(self) -> Newest | None:
        """After a restart: the commit the node was last converged to, when it
        came from the followed repository (a directory's old files are gone)."""
        follower = self.options.follower
        if follower is None:
            return None
        commit = history.applied_commit(self.target.state_dir, follower.repo)
        if commit is None:
            return None
        spec = follower.spec(commit, self.options.policy)
        return Newest(spec, lambda: self._open(spec), commit)

    # -- the watcher's state on disk -------------------------------------------

    def _save_stopped(self) -> None:
        """The watcher's state on its way out: stopped. (One killed outright
        cannot say so: --status checks its pid, and shows nothing listening
        for either.)"""
        state = history.watch_state(self.target.state_dir)
        if state is None or state.get("pid") != os.getpid():
            return
        state["state"], state["stopped"] = "stopped", history.now_iso()
        try:
            history.write_watch_state(self.target.state_dir, state)
        except OSError as exc:
            log.warning("cannot record the stop under %s: %s", self.target.state_dir, exc)

    def _save(self, record: PassRecord) -> None:
        state = {
            "pid": os.getpid(),
            "updated": history.now_iso(),
            "state": {"failed": "failing", BLOCKED: BLOCKED}.get(record.result, "ok"),
            "detect_only": self.options.detect_only,
            # what the pass tried (on failure: the source refused, when known)
            "newest": record.source if record.source != record.held else "",
            "held": record.held,
            "error": record.error,
            "fetch_error": self.fetch_error,
            "failures": self.backoff.failures,
            "retry_in_s": (
                round(self.retry_at - time.monotonic(), 3) if self.retry_at is not None else None
            ),
            "drift": list(record.drift),
            # a failed pass that held the node nowhere never compared the kernel
            "drift_checked": record.result != "failed" or bool(record.held),
            "last_pass": record.as_json(),
            "health_checks": self.health.report() if self.health is not None else [],
            "endpoints": self.endpoints,
        }
        try:
            history.append(self.target.state_dir, record)
            history.write_watch_state(self.target.state_dir, state)
        except OSError as exc:
            log.warning("cannot record the pass under %s: %s", self.target.state_dir, exc)


def _left_out(blocked: tuple[str, ...]) -> str:
    """A pass's word on interfaces it left out (engine.foreign_place)."""
    if not blocked:
        return ""
    error = blocked_error(blocked)
    log.warning("%s", error)
    return error


def _one_line(text: str) -> str:
    """A git message of several lines as one (records and --status show a line)."""
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


class Engine:
    """What a pass asks of the engine; the CLI supplies the caches the
    watcher keeps across its passes, how plans are shown and invalid
    configurations explained."""

    def __init__(
        self,
        caches: Caches,
        use_cache: bool,
        on_plan: Callable[[Plan], None] = lambda plan: None,
        explain: Callable[[InvalidConfig], str] = str,
        allow_empty: bool = False,
    ) -> None:
        self.caches = caches
        self.use_cache, self.on_plan, self._explain = use_cache, on_plan, explain
        # --allow-empty: without it a pass refuses a source with no resources,
        # or a plan that removes everything, and the node keeps what it has
        self.allow_empty = allow_empty
        self._attacher: Any = None  # engine.link_fast.Attacher, once a link event came

    def apply(
        self,
        target: Target,
        spec: Mapping[str, Any],
        changed: frozenset[str] | None,
        opener: Callable[[], Source],
    ) -> Any:
        from reconciler.engine.reconcile import reconcile_once

        return reconcile_once(
            target,
            spec,
            caches=self.caches,
            changed=changed,
            use_cache=self.use_cache,
            on_plan=self.on_plan,
            opener=opener,
            allow_empty=self.allow_empty,
        )

    def plan(self, target: Target, opener: Callable[[], Source]) -> tuple[Plan, DesiredState]:
        from reconciler.engine.reconcile import make_plan

        plan, desired, _ = make_plan(
            opener, target, False, keep_derived=False, allow_empty=self.allow_empty,
            caches=self.caches,
        )
        self.on_plan(plan)
        return plan, desired

    def explain(self, exc: InvalidConfig) -> str:
        return self._explain(exc)

    def attach_links(
        self,
        target: Target,
        opener: Callable[[], Source],
        converged: DesiredState,
        names: frozenset[str],
    ) -> tuple[DesiredState, list[tuple[str, str]]]:
        if self._attacher is None:
            from reconciler.engine.link_fast import Attacher

            self._attacher = Attacher()
        return self._attacher(target, opener, converged, names, self.caches)
