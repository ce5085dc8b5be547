"""The reconcile pipeline, in one direction:

    spec -> Source -> Validation -> DesiredState -> ObservedState -> Plan -> Result

`reconcile_once` runs it end to end under the node's apply lock; `make_plan`
stops at the plan. The other functions are its steps."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler import logsink
from reconciler.compile.host import DISABLED, NOT_ENABLED, Host
from reconciler.compile.slots import keep_slots
from reconciler.config.source import Source
from reconciler.config.spec import open_source
from reconciler.datapath import conntrack as ct_table
from reconciler.datapath import loader as build
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps.codecs import GLOBAL_KEY, TABLE_MAPS, be_key_parts
from reconciler.datapath.maps.nat_types import (
    MAP_NAT_AFF,
    MAP_NAT_BE,
    MAP_NAT_FE,
    MAP_NAT_GLOBALS,
)
from reconciler.engine import conntrack_scaling, history
from reconciler.engine import entry_marks as marks
from reconciler.engine.caches import Caches
from reconciler.engine.foreign_place import (
    Blocked,
    blocked_error,
    blocked_hooks,
    blocked_in,
    leave_blocked,
    shares_our_priority,
)
from reconciler.engine.lock import LockHeld, UnsafeLockDir, apply_lock
from reconciler.engine.store import code_fingerprint
from reconciler.kernel import bpf as bpfsys
from reconciler.kernel.nf_sysctl import conntrack_timeouts
from reconciler.kernel.rtnetlink import netns_cookie, netns_path
from reconciler.observe.kernel import held_slots, observe, with_entries
from reconciler.plan.address import Address
from reconciler.plan.diff import Action, Change, diff
from reconciler.plan.notes import NO_NOTES, RemovalNotes
from reconciler.plan.plan import Plan
from reconciler.plan.state import (
    UNRECOGNISED,
    AppliedDump,
    DesiredState,
    Link,
    Mark,
    ObjKind,
    ObservedState,
    RawTable,
    Recognition,
    table_digest,
)
from reconciler.version import version

if TYPE_CHECKING:
    from reconciler.compile import nat_tables as nat_compile
    from reconciler.config.model import Resource
    from reconciler.config.validate import Validation

# Stage messages at INFO: logs with -v, a progress line on a terminal
# (reconciler.cli.logs); `extra={"progress": True}` marks them.
log = logsink.get("reconciler.engine")
PROGRESS = {"progress": True}

# Where a UDP socket may be connected straight to a backend: in any network
# namespace under the connect-time-LB cgroup, in the node's own alone, or
# nowhere.
UDP_EVERYWHERE, UDP_HOST, UDP_NOWHERE = "everywhere", "host", ""


class ReconcileError(Exception):
    """An expected failure: reported to the user, exit code 1."""


class PlanRefused(ReconcileError):
    """A saved plan refused before anything was changed (another node's,
    stale, edited): no reconcile of the node happened, so none is recorded."""


class EmptySource(ReconcileError):
    """The source holds no resources, or the plan would remove everything we
    own: refused unless allowed (a wrong --config must not wipe a node)."""


class Unrecorded(ReconcileError):
    """The kernel was brought to the plan's source (`identity`), or already
    matched it, but the record saying so could not be written
    (history.StateWriteError): the node runs `identity` (all of it when
    `converged`), its record still names what it ran before."""

    def __init__(self, message: str, identity: str, converged: bool) -> None:
        super().__init__(message)
        self.identity = identity
        self.converged = converged


class InvalidConfig(ReconcileError):
    def __init__(self, validation: Validation) -> None:
        super().__init__(f"{len(validation.errors)} error(s) in the configuration")
        self.validation = validation


@dataclass(frozen=True, slots=True)
class Target:
    """Where we reconcile to: the node, its pins, state dir and namespace."""

    node: str
    bpffs_root: str
    state_dir: Path
    netns: str | None = None
    cache_dir: Path | None = None
    cgroup: str | None = None  # cgroup v2 directory for connect-time load balancing
    # A snapshot's node (--plan --observed): its host facts, not this machine's,
    # and no kernel access at all.
    snapshot: Any = None  # observe.snapshot.Snapshot


@dataclass(frozen=True, slots=True)
class Result:
    """What one pass did, as controller-runtime's reconcile.Result says it:
    the plan it carried out, each change's outcome, what still differs
    afterwards (empty when converged), and when to look again."""

    plan: Plan
    applied: tuple[tuple[str, str], ...]
    remaining: tuple[Change, ...]
    requeue_after: float | None = None
    desired: DesiredState | None = None  # the state the plan led to (None: a saved plan)
    # objects not ours that held the place of ours: their interfaces were
    # left out of the plan (engine.foreign_place), everything else applied
    blocked: tuple[str, ...] = ()

    @property
    def converged(self) -> bool:
        """The kernel matches the source: nothing still differs, nothing was left out."""
        return not self.remaining and not self.blocked


def reconcile_once(
    target: Target,
    spec: Mapping[str, Any],
    *,
    caches: Caches,
    plan_file: str | None = None,
    changed: frozenset[str] | None = None,
    use_cache: bool = True,
    on_plan: Callable[[Plan], None] = lambda plan: None,
    opener: Callable[[], Source] | None = None,
    allow_empty: bool = False,
) -> Result:
    """source -> validate -> compile -> observe -> diff -> plan -> apply ->
    verify, holding the node's apply lock throughout. With `plan_file`, apply
    exactly that saved plan, refused when the source or the kernel moved
    since it was made. `changed` (from --watch's file events) names the only
    files that may differ from the last pass. `on_plan` sees the plan before
    anything is applied. `opener` opens the spec's source instead of
    open_source (--watch hands in one it resolved or holds in memory).
    `caches` is what the caller's process keeps between passes.
    Raises InvalidConfig or ReconcileError; on either, nothing was changed,
    but for Unrecorded: the apply's record could not be written, and its
    message says what the kernel went through."""
    try:
        with apply_lock(target.bpffs_root, target.netns):
            if plan_file:
                plan = Plan.read(plan_file)
                spec = plan.source.get("spec") or spec
                source = open_source(dict(spec), use_cache, sources=caches.sources)
                links, slots, now = check_fresh(plan, source, target)
                desired, known = desired_state(source, target, links, slots=slots, caches=caches)
                notes = removal_notes(target, caches, now)
                desired = check_same_changes(plan, desired, now, known, notes)
                observed = None
            else:
                sources = caches.sources
                plan, desired, observed = make_plan(
                    opener
                    or (lambda: open_source(dict(spec), use_cache, changed, sources=sources)),
                    target,
                    False,
                    allow_empty=allow_empty,
                    caches=caches,
                )
                plan = dataclasses.replace(plan, source={**plan.source, "spec": dict(spec)})
            on_plan(plan)
            blocked = blocked_in(plan)
            backends = desired.tables.get(MAP_NAT_BE)
            udp = udp_balanced_at_connect(plan, desired)
            try:
                applied = execute(plan, target, backends, udp) if not plan.empty else []
            except ReconcileError as exc:
                try:
                    record_applied(plan, target, 0, error=str(exc))  # --status: failed
                except history.StateWriteError as unwritten:
                    raise ReconcileError(f"{exc}; not recorded either: {unwritten}") from exc
                raise
            # Read back what the plan changed (or observe again) and compare
            # with the very state we meant to reach. The tables the plan read,
            # with the keys apply wrote, let the next plan recognise them.
            remaining, found = verify(desired, target, plan, observed is None, observed)
            # the plan's changes, as the apply's summary counts them (its
            # results add the conntrack and socket clean-up after them)
            ran_before = history.last_applied(target.state_dir)
            try:
                record_applied(plan, target, len(plan.changes), converged=not remaining,
                               blocked=blocked)  # fmt: skip
            except history.StateWriteError as exc:
                raise unrecorded(exc, plan, len(remaining), ran_before) from exc
            if not remaining:
                try:
                    conntrack_scaling.note(target, desired)
                except history.StateWriteError as exc:  # the apply itself is recorded
                    log.warning("%s; the conntrack table's size is not recorded", exc)
            states = caches.states(target.cache_dir)
            if not remaining and states is not None:
                digests = {t: m for t, m in found.items() if isinstance(m, str)}
                dumps = {
                    **(applied_dumps(plan, observed) if observed is not None else {}),
                    **{t: m for t, m in found.items() if not isinstance(m, str)},
                }
                states.note_applied(
                    desired, digests, {t: d for t, d in dumps.items() if t not in digests}
                )
    except (LockHeld, UnsafeLockDir) as exc:  # not "need root": root cannot fix either
        raise ReconcileError(str(exc)) from None
    return Result(
        plan, tuple(applied), tuple(remaining), desired=desired if observed is not None else None,
        blocked=blocked,
    )  # fmt: skip


def default_state_dir(bpffs_root: str) -> Path:
    digest = hashlib.sha256(bpffs_root.encode()).hexdigest()[:12]
    return Path("/var/lib/calico-reconciler") / digest


def desired_state(
    source: Source,
    target: Target,
    links: list[Link],
    keep_derived: bool = True,
    slots: Mapping[int, int] | None = None,
    allow_empty: bool = False,
    *,
    caches: Caches,
) -> tuple[DesiredState, Recognition]:
    """The state this node should have (compiled_state), with its interfaces
    in the rcl_ifstate slots they hold now (`slots`: observe.held_slots; see
    compile.slots.keep_slots), and what recognises its tables in the kernel. The
    slots are not part of what is compiled or stored: the first plan after
    an apply that gave interfaces their slots still finds the state that
    apply stored."""
    state, known = compiled_state(source, target, links, keep_derived, allow_empty, caches=caches)
    return keep_slots(state, slots or {}), known


def compiled_state(
    source: Source,
    target: Target,
    links: list[Link],
    keep_derived: bool = True,
    allow_empty: bool = False,
    *,
    caches: Caches,
) -> tuple[DesiredState, Recognition]:
    """Validate and compile, or reuse what earlier runs compiled (stored in
    `caches`' state store for the target's cache directory). Returns the
    state and, beside it, what recognises its tables in the kernel (the
    applied record's marks for a stored state; the base table and the keys
    that moved for a derived one).

    Three ways, fastest first:
    - the inputs are identical to a stored state's (a no-op plan): reuse it;
      its key covers the code, the source's identity (a commit, or the hash
      of every file's blob id), the node, the host facts and the program
      sources;
    - only Services and EndpointSlices changed since a stored state with the
      same other inputs (the applied one when there is a record of it, else
      the newest): validate the changed files and recompute the services they
      feed (reconciler.compile.nat_tables.update);
    - otherwise validate and compile everything.
    Only valid configurations are ever stored. `keep_derived=False` (a plan
    that will not be applied) does not store a state derived incrementally:
    deriving it again costs less than writing and reading it. A source with
    no resources raises EmptySource unless `allow_empty`; its state is never
    stored, so a stored state always came from resources."""
    host = host_facts(target, links)
    digest = build.source_digest()
    base_context = hashlib.sha256(
        json.dumps(
            [
                code_fingerprint(),
                target.node,
                host.facts(),
                target.bpffs_root,
                digest,
            ]
        ).encode()
    ).hexdigest()[:32]
    context = hashlib.sha256(
        json.dumps(
            [base_context, [(link.name, link.ifindex, link.addresses) for link in links]]
        ).encode()
    ).hexdigest()[:32]
    key = hashlib.sha256(f"{context}\0{source.identity}".encode()).hexdigest()[:32]
    states = caches.states(target.cache_dir)
    if states is not None and states.path(key).exists():
        stored = states.load(key)
        if stored is not None:
            return stored
    # A read-ahead child may be validating the changed files: each path
    # below waits for it (settle) just before it validates.
    settle = caches.sources.settle
    files = {f.path: f.digest for f in source.files}
    derived: nat_compile.Derived | None = None
    latest = states.latest() if states is not None else None
    previous = latest[0] if latest is not None else None
    if previous is not None and getattr(previous.nat_index, "context", None) == context:
        derived = _services_only_update(previous, source, files, target.cache_dir, settle)
    elif previous is not None and getattr(previous.nat_index, "base_context", "") == base_context:
        settle()
        derived = _interfaces_only_update(previous, source, files, target, host, digest, context)
    known = UNRECOGNISED
    if derived is not None and latest is not None:
        desired, touched = derived
        known = Recognition.derived(latest[0], latest[1], touched)
    else:
        from reconciler.config.validate import validate_source  # as in _services_only_update

        settle()
        validation = validate_source(source, target.cache_dir)
        if not validation.ok:
            raise InvalidConfig(validation)
        if not validation.resources:
            if not allow_empty:
                raise EmptySource(
                    f"the source {source.description} holds no resources ({validation.files} "
                    "file(s)): "
                    "applying it would remove everything this node has from us; pass "
                    "--allow-empty if that is meant; nothing was changed"
                )
            states = None
        # Function-local: the sub-compilers (policy and its selector parser
        # among them) stay unimported when a stored state or a services-only
        # update answers (bench: one changed service among 10,000).
        from reconciler.compile.dataplane import compile_desired

        desired = compile_desired(
            validation.resources, target.node, host, target.bpffs_root, digest, files, context,
            previous,
        )  # fmt: skip
    if desired.nat_index is not None:
        index = dataclasses.replace(
            desired.nat_index, base_context=base_context, source=source.identity
        )
        desired = dataclasses.replace(desired, nat_index=index)
    if len(desired.errors) == 1:
        raise ReconcileError(f"{desired.errors[0]}; nothing was changed")
    if desired.errors:
        listed = "".join(f"\n  {error}" for error in desired.errors)
        raise ReconcileError(f"{len(desired.errors)} problems; nothing was changed:{listed}")
    if states is not None and (keep_derived or derived is None):
        states.store(key, desired, known)
    return desired, known


def _services_only_update(
    previous: DesiredState,
    source: Source,
    files: dict[str, str],
    cache_dir: Path | None,
    settle: Callable[[], None] = lambda: None,
) -> nat_compile.Derived | None:
    """The previous state with the changed files' services recomputed, or None
    when that is not enough (other kinds changed, an error, a cache miss)."""
    # Function-local, as the modules apply alone uses (execute), and
    # validation with its sqlite3 cache: a no-op plan answered by a stored
    # state imports none of them (bench: layout_bench's no-op plan over 200
    # interfaces).
    from reconciler.compile import nat_tables as nat_compile
    from reconciler.config.validate import cached_resources, validate_files

    index = previous.nat_index
    changed = nat_compile.changed_paths(index, files)
    if len(changed) > max(64, len(files) // 10):
        return None  # a big change: the full path validates it in parallel
    old = cached_resources({p: index.files[p] for p in changed if p in index.files}, cache_dir)
    if old is None:
        return None
    settle()  # a read-ahead child validating these: its results land in the cache
    results = validate_files([f for f in source.files if f.path in changed], cache_dir)
    if any(not r.ok for r in results.values()):
        return None  # the full path reports every error, in every file
    new = {path: r.resources for path, r in results.items()}
    if any(_node_ports(r) for rs in new.values() for r in rs):
        return None  # the full path checks them against the node's port ranges
    unchanged = cached_resources(
        {p: files[p] for p in nat_compile.needs(index, old, new)}, cache_dir
    )
    if unchanged is None:
        return None
    return nat_compile.update(previous, files, old, new, unchanged)


def _node_ports(resource: Resource) -> bool:
    return resource.kind == "Service" and resource.spec.get("type") in ("NodePort", "LoadBalancer")


def _interfaces_only_update(
    previous: DesiredState,
    source: Source,
    files: dict[str, str],
    target: Target,
    host: Host,
    digest: str,
    context: str,
) -> nat_compile.Derived | None:
    """The previous state for links that came or went, the source unchanged:
    only the files holding other resources than Services and EndpointSlices
    are compiled again (a new pod's veth must not recompile 10,000 services).
    None when that is not enough (the source changed, a cache miss, the
    services' inputs moved)."""
    from reconciler.compile import nat_tables as nat_compile
    from reconciler.compile.dataplane import compile_desired  # as in compiled_state
    from reconciler.config.validate import cached_resources

    index = previous.nat_index
    if index.source != source.identity and nat_compile.changed_paths(index, files):
        return None
    # the files holding other kinds, and those feeding the Services policy
    # rules name (policy resolves them to their endpoints)
    feeding = {p for ref in index.policy_services for p in index.feeders.get(ref, ())}
    others = tuple(sorted({*index.others, *feeding}))
    loaded = cached_resources({p: files[p] for p in others}, target.cache_dir)
    if loaded is None:
        return None
    resources = [r for path in others for r in loaded[path]]
    interfaces = compile_desired(
        resources, target.node, host, target.bpffs_root, digest, {p: files[p] for p in others}
    )
    return nat_compile.relink(previous, interfaces, context)


def make_plan(
    source: Source | Callable[[], Source],
    target: Target,
    fingerprint: bool = True,
    keep_derived: bool = True,
    allow_empty: bool = False,
    *,
    caches: Caches,
) -> tuple[Plan, DesiredState, ObservedState]:
    """Validate, compile, observe and diff. `fingerprint=False` skips hashing
    the observed state when the plan will not be saved or compared. `source`
    may be a function that opens it: it is called once the kernel is being
    read, so opening the source and reading the NAT tables overlap. Returns
    what was observed too (apply records its NAT tables, see verify).
    Without `allow_empty`, an empty source or a plan that destroys every
    object we own raises EmptySource."""
    log.info("observing the kernel", extra=PROGRESS)
    if target.snapshot is not None:
        observed, links = target.snapshot.observed, list(target.snapshot.links)
        slots = held_slots(observed)
    else:  # first: a bad --netns fails here
        observed, links = observe(target.bpffs_root, target.netns, undecoded=marks.UNDECODED)
        # before compiling: the store then still holds the state last applied
        known_entries = marks.applied_entries(caches.states(target.cache_dir))
        slots = held_slots(observed)  # before the 24,000 policy entries join it
        observed = with_entries(observed, links, known_entries)
    notes = removal_notes(target, caches, observed)
    log.info("observed %d object(s) on %d interface(s); reading the source", len(observed.objects),
             len(links), extra=PROGRESS)  # fmt: skip
    if callable(source):
        if caches.sources.reading_ahead():
            # While a child still reads the tree: load the stored state a
            # services-only change builds on (kept by the store for compile).
            states = caches.states(target.cache_dir)
            if states is not None:
                states.latest()
        source = source()
    mount_pending = False
    if target.snapshot is None:
        # execute() mounts bpffs and makes the root; a plan only checks them
        mount_pending = bpfsys.ensure_bpffs(target.bpffs_root, create=False)
    log.info("compiling %s (%d file(s))", source.description, len(source.files), extra=PROGRESS)
    desired, known = desired_state(
        source, target, links, keep_derived, slots, allow_empty, caches=caches
    )
    entries = sum(len(t) for t in desired.tables.values())
    log.info("compiled %d object(s) and %d map entries; comparing", len(desired.objects), entries,
             extra=PROGRESS)  # fmt: skip
    changes, desired, blocked = diff_around_foreign(desired, observed, known, notes)
    log.info("planned %d change(s)", len(changes), extra=PROGRESS)
    # An explicit `bpfEnabled: false` in the config is what Git says: no guard.
    off = DISABLED in desired.warnings
    if not allow_empty and not off and destroys_everything(observed, changes):
        why = "" if desired.enabled else f" ({NOT_ENABLED})"
        raise EmptySource(
            f"the plan would destroy all {owned_count(observed)} object(s) this node has from "
            f"us and keep none{why}; pass --allow-empty if that is meant; nothing was changed"
        )
    plan = Plan(
        node=target.node,
        source={
            "identity": source.identity,
            "description": source.description,
            **({"commit": source.commit} if source.commit else {}),
        },
        bpffs_root=target.bpffs_root,
        observed_fingerprint=observed.fingerprint() if fingerprint else "",
        changes=changes,
        build=desired.build,
        warnings=(
            *_mount_note(mount_pending and bool(changes)), *desired.warnings,
            *(b.warning for b in blocked),
            *foreign_ahead(desired, observed, {b.foreign for b in blocked}),
        ),
        foreign=observed.foreign,
        not_enforced=desired.not_enforced,
        version=version(),
    )
    return plan, desired, observed


def _mount_note(pending: bool) -> tuple[str, ...]:
    """The plan's word that its apply mounts bpffs first (execute() does,
    for a plan with changes)."""
    return ("bpffs is not mounted at /sys/fs/bpf: the apply mounts it",) if pending else ()


def owned_count(observed: ObservedState) -> int:
    """The objects of ours observed (not another agent's rules)."""
    return sum(1 for o in observed.objects.values() if o.kind is not ObjKind.NETFILTER)


def destroys_everything(observed: ObservedState, changes: tuple[Change, ...]) -> bool:
    """Would these changes delete every object we own now and put nothing in
    their place (a node wiped by a wrong or empty source)? A plan that also
    creates or keeps something is a replacement, not a wipe."""
    from reconciler.plan.address import Address
    from reconciler.plan.diff import Action

    ours = [a for a, o in observed.objects.items() if o.kind is not ObjKind.NETFILTER]
    if not ours or any(c.action is not Action.DELETE for c in changes):
        return False
    deleted = {c.address for c in changes}

    def goes(address: str) -> bool:  # it, or the map that holds it, is deleted
        parsed = Address.parse(address)
        return address in deleted or (
            bool(parsed.map) and Address.map_text(parsed.map) in deleted
        )

    return all(goes(address) for address in ours)


def verify(
    desired: DesiredState,
    target: Target,
    plan: Plan | None = None,
    digests: bool = True,
    before: ObservedState | None = None,
) -> tuple[tuple[Change, ...], dict[str, Mark]]:
    """After apply: what still differs from the state we meant to reach, and
    the marks that let the next plan recognise the kernel's tables without
    comparing 100k entries: (with `digests`) the digests of the NAT tables,
    and those of the policy program maps (reconciler.engine.entry_marks).

    With the plan just applied (`before`: what it read), only what it wrote
    is read back when it changed map entries alone: the plan compared
    everything else moments earlier, under the apply lock. Otherwise
    everything is observed again, except that the bulk NAT tables and the
    policy program maps are read back at the keys the plan changed. A table
    or map the plan recreated (a resize) is compared in full. Without
    `digests` the NAT tables are not read at all: the caller recognises
    them later by the dump the plan read (reconciler.plan.state.AppliedDump),
    which saves reading 110,000 entries again."""
    recreated = _recreates(plan, TABLE_MAPS)
    if plan is not None and before is not None and not digests and marks.entries_only(plan):
        changes, written = marks.verify_entries(desired, plan, target.bpffs_root, before)
        changes += _read_back(desired, plan, target)
        return tuple(sorted(changes, key=lambda c: c.address)), written
    undecoded = () if recreated or _recreates(plan, marks.UNDECODED) else marks.UNDECODED
    observed, links = observe(
        target.bpffs_root, target.netns, tables=recreated or digests, undecoded=undecoded
    )
    found: dict[str, Mark] = {n: d for n, t in observed.tables.items() if (d := table_digest(t))}
    if plan is not None:
        found.update(marks.proven(before, observed, plan.changes))
    if recreated:
        return diff(desired, observed), found
    assert plan is not None
    changes = diff(
        marks.without(desired, undecoded),
        dataclasses.replace(observed, tables={}),
    )
    policy, _ = marks.read_back(desired, plan, target.bpffs_root, links, undecoded)
    remaining = tuple(
        sorted((*changes, *_read_back(desired, plan, target), *policy), key=lambda c: c.address)
    )
    return remaining, found


def _recreates(plan: Plan | None, maps: Collection[str]) -> bool:
    """Does `plan` replace one of `maps` (then every entry is compared again)?"""
    return plan is None or any(
        c.kind is ObjKind.MAP and Address.parse(c.address).map in maps for c in plan.changes
    )


def written_keys(plan: Plan) -> dict[str, frozenset[bytes]]:
    """The bulk-table keys a plan writes or deletes, by table."""
    keys: dict[str, set[bytes]] = {}
    for c in plan.changes:
        if c.kind is ObjKind.ENTRY:
            address = Address.parse(c.address)
            name = address.map
            if name in entries.TABLE_MAPS:
                key = entries.encode(name, address.key or "", c.after or c.before or {})[0]
                keys.setdefault(name, set()).add(key)
    return {name: frozenset(k) for name, k in keys.items()}


def applied_dumps(plan: Plan, before: ObservedState) -> dict[str, AppliedDump]:
    """How the next plan will recognise each NAT table this plan's apply
    left: the table as the plan read it, and the keys the apply wrote."""
    written = written_keys(plan)
    return {
        name: AppliedDump.of(table, written.get(name, frozenset()))
        for name, table in before.tables.items()
        if isinstance(table, RawTable)
    }


def _read_back(desired: DesiredState, plan: Plan, target: Target) -> tuple[Change, ...]:
    """The plan's NAT table entries as the kernel holds them now, diffed."""
    keys = written_keys(plan)
    want: dict[str, dict[bytes, bytes]] = {}
    have: dict[str, dict[bytes, bytes]] = {}
    for name, wanted in keys.items():
        table = desired.tables.get(name, {})
        want[name] = {k: table[k] for k in wanted if k in table}
        have[name] = {}
        fd = bpfsys.obj_get(f"{target.bpffs_root}/maps/{name}")
        try:
            for key in wanted:
                value = bpfsys.map_lookup(fd, key)
                if isinstance(value, bytes):
                    have[name][key] = value
        finally:
            bpfsys.close(fd)
    partial = dataclasses.replace(desired, objects={}, tables=want)
    return diff(partial, ObservedState({}, (), have))


def host_facts(target: Target, links: list[Link]) -> Host:
    if target.snapshot is not None:
        return Host.of_facts(links, target.snapshot.host)
    cgroup_id = None
    if target.cgroup:
        try:
            cgroup_id = os.stat(target.cgroup).st_ino  # a cgroup's id is its kernfs inode
        except OSError as exc:
            raise ReconcileError(f"--cgroup {target.cgroup}: {exc.strerror}") from exc
    return Host(
        tuple(links), cgroup_id, target.cgroup or "", build.kernel_hz(), netns_cookie(target.netns),
        conntrack_scaling.floor_for(target), conntrack_timeouts(target.netns),
    )  # fmt: skip


def removal_notes(target: Target, caches: Caches, observed: ObservedState) -> RemovalNotes:
    """What names the entries a plan for `target` removes: the snapshot's
    notes, or the state this node last applied (reconciler.plan.notes)."""
    if target.snapshot is not None:
        return target.snapshot.notes
    states = caches.states(target.cache_dir)
    return RemovalNotes.of(states.applied() if states is not None else None, observed)


def check_fresh(
    plan: Plan, source: Source | None, target: Target
) -> tuple[list[Link], dict[int, int], ObservedState]:
    """Refuse a saved plan when the kernel or the source moved since it was
    made; returns what was observed for check_same_changes."""
    if plan.node != target.node or plan.bpffs_root != target.bpffs_root:
        raise PlanRefused(
            f"plan is for node {plan.node} at {plan.bpffs_root}, not {target.node} at "
            f"{target.bpffs_root}"
        )
    if source is not None and source.identity != plan.source.get("identity"):
        raise PlanRefused(
            f"plan is stale: the source changed since it was made "
            f"({plan.source.get('identity')} -> {source.identity}); run --plan again"
        )
    observed, links = observe(target.bpffs_root, target.netns)
    if observed.fingerprint() != plan.observed_fingerprint:
        raise PlanRefused(
            "plan is stale: the kernel state changed since it was made; run --plan again"
        )
    return links, held_slots(observed), observed


def _normal(value: object) -> object:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def diff_around_foreign(
    desired: DesiredState,
    observed: ObservedState,
    known: Recognition = UNRECOGNISED,
    notes: RemovalNotes = NO_NOTES,
) -> tuple[tuple[Change, ...], DesiredState, tuple[Blocked, ...]]:
    """The changes from `observed` to `desired`, leaving out what objects not
    ours stand in the way of (engine.foreign_place): our XDP program where
    someone else's is attached, and the tc hooks of an interface where a
    filter at our priority or an `ingress` qdisc sits. Returns the changes,
    the desired state they lead to (what the check after apply compares
    with) and what blocked interfaces; a plan and the check of a saved plan
    both come here, so they leave out the same."""
    if observed.foreign:  # nothing foreign, nothing to leave out
        from reconciler.compile.host_policy import without_foreign_xdp

        desired = without_foreign_xdp(desired, observed.foreign)
    changes = diff(desired, observed, known, notes)
    blocked = blocked_hooks(changes, observed) if observed.foreign else ()
    changes, desired = leave_blocked(changes, desired, observed, blocked)
    return changes, desired, blocked


def foreign_ahead(
    desired: DesiredState, observed: ObservedState, blocked: Collection[str] = ()
) -> list[str]:
    """A warning for each filter not ours that can run before ours on a hook
    we hold: tc runs it first, and its verdict (accept, drop, redirect) is
    final, so our policy and service NAT may never see the packet. That is
    one at a lower priority number than ours, or one at our priority with
    another handle: cls_bpf runs one priority's filters newest first (as
    `tc filter show` lists them; replacing a filter keeps its place), so one
    added after ours runs before it, one added before ours never runs
    (ours always ends the packet's way), and the order, which observe does
    not keep, is not ours to fix. Those in `blocked` (where ours must still
    go: engine.foreign_place) have their own warning. None is ours to
    remove; a filter after ours stays a note."""
    from reconciler.datapath.programs import TC_PRIO

    hooks = {a for a, o in desired.objects.items() if o.kind is ObjKind.TC}
    out = []
    for foreign in observed.foreign:
        address, _, rest = foreign.partition(" prio ")
        prio = rest.split(" ", 1)[0]
        if foreign in blocked or address not in hooks or not prio.isdigit():
            continue
        hook = Address.parse(address)
        if int(prio) == TC_PRIO:
            out.append(shares_our_priority(foreign, hook, TC_PRIO))
        elif int(prio) < TC_PRIO:
            out.append(
                f"{foreign}: a tc filter that is not ours runs before ours (prio {TC_PRIO:#x}) "
                "and can decide packets first: what it accepts or drops our policy and service "
                f"NAT never see; remove it (tc filter del dev {hook.iface} {hook.direction} pref "
                f"{prio}) or move it after ours (a priority above {TC_PRIO}); left alone"
            )
    return out


def _comparable(changes: Sequence[Change]) -> Any:
    """Changes as a saved plan is compared: without their info (why each
    exists, never compared: a removal's note depends on the record of the
    last apply, which another apply may have moved since)."""
    return _normal([{k: v for k, v in c.as_json().items() if k != "info"} for c in changes])


def check_same_changes(
    plan: Plan,
    desired: DesiredState,
    observed: ObservedState,
    known: Recognition = UNRECOGNISED,
    notes: RemovalNotes = NO_NOTES,
) -> DesiredState:
    """Refuse a saved plan whose changes or build are not exactly the ones
    the configuration and the kernel give now: a hand-edited plan, or a node
    that moved in a way the fingerprint does not cover (a new interface, an
    object not ours come or gone where ours must go). Returns the desired
    state the plan leads to (diff_around_foreign)."""
    now, desired, _ = diff_around_foreign(desired, observed, known, notes)
    if _comparable(now) != _comparable(plan.changes):
        raise PlanRefused(
            "plan file does not match the changes the configuration and this node give "
            "now (it was edited, or the node changed since, e.g. an interface appeared); "
            "run --plan again"
        )
    if _normal(dict(desired.build)) != _normal(dict(plan.build)):
        raise PlanRefused(
            "plan file's build does not match the configuration's; run --plan again"
        )
    return desired


def execute(
    plan: Plan,
    target: Target,
    backends: Mapping[bytes, bytes] | None = None,
    udp_connected: str = UDP_EVERYWHERE,
) -> list[tuple[str, str]]:
    """Run every change in plan order; returns (address, result) pairs.
    `udp_connected` says where UDP sockets may be connected to a backend
    (udp_balanced_at_connect), for those of departed backends to be
    destroyed."""
    from reconciler.apply import ct_departed  # as in _services_only_update
    from reconciler.apply.executor import Executor

    if plan.changes:
        bpfsys.ensure_bpffs(target.bpffs_root)  # a plan only checked it: made here, 0700
    executor = Executor(target.bpffs_root, plan.build, target.netns)
    results = []
    total = len(plan.changes)
    built_ahead = False
    try:
        for done, change in enumerate(plan.changes):
            if done % 1024 == 0:
                log.info("applying: %d of %d change(s) done", done, total, extra=PROGRESS)
            if change.kind is ObjKind.PROG and not built_ahead:  # the maps' changes are done
                built_ahead = True
                _log_builds(plan.changes[done:])
                executor.build_ahead(plan.changes[done:])
            try:
                results.append((change.address, executor.run(change)))
            except Exception as exc:
                raise ReconcileError(
                    f"apply failed at {change.action.symbol} {change.address}: {exc}"
                ) from exc
        try:
            executor.finish()
        except Exception as exc:
            raise ReconcileError(f"apply failed ending the conntrack handover: {exc}") from exc
    finally:
        executor.close()
    results += _after_backend_changes(plan, target, backends, udp_connected)
    results += ct_departed.after_workload_changes(plan.changes, target.bpffs_root)
    return results


def _log_builds(changes: Sequence[Change]) -> None:
    """Say which program sets bcc compiles now: the longest stage of a first
    apply or an upgrade."""
    sets = [c.address.removeprefix("prog/") for c in changes
            if c.kind is ObjKind.PROG and c.action in (Action.CREATE, Action.REPLACE)]  # fmt: skip
    if sets:
        log.info("building program set(s) %s with bcc", ", ".join(sets), extra=PROGRESS)


def _after_backend_changes(
    plan: Plan, target: Target, backends: Mapping[bytes, bytes] | None, udp_connected: str
) -> list[tuple[str, str]]:
    """Conntrack and connected-socket hygiene once backends have left.

    Only services whose entries changed are judged. What is live comes from
    the applied backend table when we have it (the kernel now holds exactly
    that; apply verifies it), else from the kernel map."""
    from reconciler.apply import conntrack_gc as ct_clean  # as in _services_only_update

    left = [
        (c, address)
        for c in plan.changes
        if c.kind is ObjKind.ENTRY
        and c.action in (Action.DELETE, Action.UPDATE)
        and (address := Address.parse(c.address)).map in (MAP_NAT_BE, MAP_NAT_FE)
    ]
    maps = Path(target.bpffs_root) / "maps"
    if not left or not (maps / ct_table.MAP).exists():
        return []
    services = {
        be_key_parts(address.key or "")[0] if address.map == MAP_NAT_BE
        else int((c.before or {}).get("svc_id", 0))
        for c, address in left
    }  # fmt: skip
    kill = next(Path(target.bpffs_root).glob(f"progs/tc-*/{ct_table.KILL_PROGRAM}"), None)
    if kill is None:
        return []  # no tc programs: nothing can hold conntrack entries
    fds = {n: bpfsys.obj_get(str(maps / n)) for n in (ct_table.MAP, MAP_NAT_BE, MAP_NAT_AFF)}
    fds["kill"] = bpfsys.obj_get(str(kill))
    try:
        table = (
            ct_clean.backends_of(backends, services)
            if backends is not None
            else bpfsys.map_entries(fds[MAP_NAT_BE])
        )
        live_ids = ct_clean.live_backends(table, services)
        removed = ct_clean.clean_conntrack(
            fds[ct_table.MAP], fds["kill"], live_ids, fds[MAP_NAT_AFF], services
        )
        live = {(socket_ip(ip), int.from_bytes(port, "big")) for _, ip, port in live_ids}
    finally:
        for fd in fds.values():
            bpfsys.close(fd)
    gone = {
        (c.before["ip"], c.before["port"])
        for c, address in left
        if address.map == MAP_NAT_BE and c.before
    } - live
    # `ss -K` runs once per backend and network namespace: only if it can find something
    sockets = 0
    if gone and udp_connected == UDP_EVERYWHERE and target.cgroup:
        sockets = ct_clean.destroy_udp_sockets(ct_clean.cgroup_netns(target.cgroup), gone)
    elif gone and udp_connected == UDP_HOST:
        own = netns_path(target.netns) if target.netns else "/proc/self/ns/net"
        sockets = ct_clean.destroy_udp_sockets([own], gone)
    return [
        ("conntrack", f"removed {removed} entries of departed backends"),
        ("sockets", f"destroyed {sockets} UDP sockets connected to departed backends"),
    ]


def udp_balanced_at_connect(plan: Plan, desired: DesiredState) -> str:
    """Where could a UDP socket be connected straight to a backend? Wherever
    connect-time load balancing covers UDP now, or did until this plan
    changed it: everywhere (bpfConnectTimeLoadBalancing Enabled), or the
    node's own sockets (host_nat, in the other modes)."""
    from reconciler.compile.connect_lb import CTLB_MODES  # as in _services_only_update

    address = Address.entry_text(MAP_NAT_GLOBALS, GLOBAL_KEY)
    everything = CTLB_MODES["Enabled"]
    now = desired.objects.get(address)
    if now is None:
        return UDP_EVERYWHERE
    seen = [now.attrs] + [c.before or {} for c in plan.changes if c.address == address]
    if any(attrs.get("ctlb") == everything for attrs in seen):
        return UDP_EVERYWHERE
    if any(attrs.get("host_nat") for attrs in seen):
        return UDP_HOST
    return UDP_NOWHERE


def socket_ip(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


def record_applied(
    plan: Plan,
    target: Target,
    applied: int,
    converged: bool = True,
    error: str = "",
    blocked: Sequence[str] = (),
) -> None:
    """Remember what the kernel was converged to, or that the pass failed
    (`error`, or not `converged`, or interfaces left out because objects not
    ours held the place of ours: `blocked`, named in the record). A no-op
    pass from the same source keeps the record of the apply that last
    changed something, unless that failed."""
    if blocked and not error:
        error = blocked_error(blocked)
    previous = target.state_dir / "applied.json"
    if plan.empty and converged and not error and previous.exists():
        try:
            old = json.loads(previous.read_text())
        except (OSError, ValueError):
            old = {}
        same = old.get("source", {}).get("identity") == plan.source.get("identity")
        if same and old.get("converged", True) and not old.get("error"):
            return
    target.state_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "node": plan.node,
        "source": dict(plan.source),
        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "changes_applied": applied,
        "bpffs_root": plan.bpffs_root,
        "converged": converged and not error,
        "error": error,
        "blocked": list(blocked),
        "version": version(),
    }
    history.write_applied(target.state_dir, record)


def unrecorded(
    exc: history.StateWriteError,
    plan: Plan,
    remaining: int,
    ran_before: Mapping[str, Any] | None,
) -> Unrecorded:
    """The error of an apply whose record could not be written: what the
    write says (file, reason, remedy), then what the kernel went through,
    and what the record still names."""
    source = plan.source.get("description") or plan.source.get("identity", "?")
    if plan.empty:
        done = f"nothing was changed: the kernel already matches {source}"
    else:
        done = f"the kernel was changed: {len(plan.changes)} change(s) from {source} applied"
        if remaining:
            done += f" ({remaining} object(s) still differ)"
    before = (ran_before or {}).get("source") or {}
    named = before.get("description") or before.get("identity") or "no source (none recorded)"
    return Unrecorded(
        f"{exc}; {done}, but the record of what this node runs still names {named} "
        "(--status and a restarted watcher go by it)",
        str(plan.source.get("identity", "")),
        converged=not remaining,
    )
