"""A followed remote's fetch runs off the pass: one at a time (the pass and
the poll join the one in flight), a pass that stops waiting is woken by its
end, and a fetch that fails makes the pass that reads the commits last
fetched a failed one, held at them (readiness, metrics and the backoff see
it), while kube-proxy's health check stays up."""

from __future__ import annotations

import threading

from prometheus_client import generate_latest

from reconciler.config.source import SourceError
from reconciler.engine.history import PassRecord
from reconciler.gitops.fetcher import Fetcher
from reconciler.gitops.loop import Watcher, WatchOptions
from reconciler.gitops.metrics import Metrics
from reconciler.gitops.probes import Probes
from reconciler.gitops.repo import Follower


class Gate:
    """A fetch that ends when the test says, the way it says."""

    def __init__(self) -> None:
        self.release, self.calls, self.error = threading.Event(), 0, ""

    def __call__(self) -> None:
        self.calls += 1
        assert self.release.wait(10)
        if self.error:
            raise SourceError(self.error)


def _fetcher(gate: Gate) -> tuple[Fetcher, list[str], list[str]]:
    results: list[str] = []
    ends: list[str] = []
    return Fetcher(gate, results.append, ends.append), results, ends


def test_a_pass_that_gives_up_is_woken_by_the_fetchs_end_and_joins_never_refetch():
    gate = Gate()
    fetcher, results, ends = _fetcher(gate)
    attempt = fetcher.begin(by_pass=True)
    assert fetcher.begin() is attempt  # the poll joins it
    assert not attempt.done.wait(0.1)
    assert fetcher.give_up(attempt) is False  # still running: its end wakes the loop
    gate.error = "git fetch in m: no answer after 60s"
    gate.release.set()
    assert attempt.done.wait(5)
    assert (gate.calls, attempt.error, fetcher.last_error) == (1, gate.error, gate.error)
    assert results == [gate.error] and ends == [gate.error]
    assert fetcher.begin() is not attempt  # the next one is a new fetch


def test_a_fetch_a_pass_waited_for_wakes_nothing_and_an_unawaited_one_only_on_a_change():
    gate = Gate()
    gate.release.set()
    fetcher, results, ends = _fetcher(gate)
    attempt = fetcher.begin(by_pass=True)
    assert attempt.done.wait(5) and fetcher.give_up(attempt) is True
    assert fetcher.begin().done.wait(5)  # a poll's fetch, as before: no pass needed
    assert ends == [] and results == ["", ""]
    gate.error = "fatal: unable to connect"
    assert fetcher.begin().done.wait(5)  # a poll's fetch that newly fails: a pass says so
    assert fetcher.begin().done.wait(5)  # failing again: nothing new
    gate.error = ""
    assert fetcher.begin().done.wait(5)  # recovered: a pass says so
    assert ends == ["fatal: unable to connect", ""]


def _watcher(fetch_error: str) -> Watcher:
    w = object.__new__(Watcher)
    w.options = WatchOptions(follower=Follower("git://git.example/config.git", "main", None))
    w.fetch_error = fetch_error
    return w


def test_a_pass_after_a_failed_fetch_fails_held_at_the_commits_last_fetched():
    record = PassRecord("", 0.0, "drift check", "repaired", "git:abc", changes=1, drift=("tc/x",))
    failed = _watcher("fatal: unable to connect to git.example")._with_fetch_error(record)
    assert (failed.result, failed.held, failed.drift) == ("failed", "git:abc", ("tc/x",))
    assert failed.error == (
        "cannot fetch git://git.example/config.git: fatal: unable to connect to git.example; "
        "the node runs git:abc, from the commits last fetched, and sees no push until a fetch "
        "succeeds"
    )
    assert _watcher("")._with_fetch_error(record) is record
    refused = PassRecord("", 0.0, "push", "failed", "git:def", error="invalid", held="git:abc")
    assert _watcher("down")._with_fetch_error(refused) is refused  # its own error says more

    probes = Probes(30.0)
    probes.observe_pass(failed.result, failed.held, bool(failed.held), failed.error)
    ready = probes.readiness()
    assert ready.status == 503 and ready.body["reason"].startswith("cannot fetch"), ready
    assert probes.proxy_health().status == 200  # the datapath runs what it ran


def test_fetch_outcomes_are_metrics_and_a_failed_fetch_counts_as_a_failure():
    metrics = Metrics(target=None)  # type: ignore[arg-type]  # (no scrape of the kernel here)
    metrics.observe_fetch("fatal: unable to connect")
    metrics.observe_fetch("fatal: unable to connect")
    metrics.observe_pass(PassRecord("", 0.1, "poll", "failed", "git:abc", held="git:abc"))
    text = generate_latest(metrics.registry).decode()
    assert "calico_reconciler_fetch_failures_total 2.0" in text
    assert "calico_reconciler_last_fetch_success_timestamp_seconds 0.0" in text
    assert "calico_reconciler_consecutive_failures 1.0" in text
    metrics.observe_fetch("")
    text = generate_latest(metrics.registry).decode()
    assert "calico_reconciler_last_fetch_success_timestamp_seconds 0.0" not in text


def test_detect_only_keeps_kube_proxys_health_check_up_while_a_new_commit_is_only_planned():
    probes = Probes(30.0)
    probes.observe_pass("no-op", "git:abc")
    probes.observe_pass("planned", "git:abc", held=True)  # git:def planned, git:abc runs
    assert probes.proxy_health().status == 200
    ready = probes.readiness()
    assert ready.status == 503 and ready.body["source"] == "git:abc", ready.body
    probes.observe_pass("drift", "git:abc", held=True)
    assert probes.proxy_health().status == 200
    fresh = Probes(30.0)
    fresh.observe_pass("planned", "git:def")  # a node never applied: nothing proxies
    assert fresh.proxy_health().status == 503


def _detect_only(applied: str, identity: str) -> PassRecord:
    """A --detect-only pass whose plan of `identity` finds one change, on a
    node last applied at `applied` ("": never)."""
    from types import SimpleNamespace

    from reconciler.gitops.loop import Newest
    from reconciler.plan.diff import Action, Change, ObjKind
    from reconciler.plan.plan import Plan

    change = Change(list(Action)[0], "tc/cali-x/ingress", list(ObjKind)[0], None, {}, {})
    plan = Plan("node-1", {"identity": identity}, "/sys/fs/bpf", "", (change,))
    w = object.__new__(Watcher)
    w.options = WatchOptions(detect_only=True)
    w.engine = SimpleNamespace(plan=lambda target, opener: (plan, SimpleNamespace(agent=None)))
    w.target = None
    w._applied_identity = lambda: applied  # type: ignore[method-assign]
    record, _ = w._reconcile(Newest({}, lambda: None), None)  # type: ignore[arg-type, return-value]
    return record


def test_a_detect_only_pass_says_the_node_stays_at_what_it_was_applied():
    planned = _detect_only("git:abc", "git:def")
    assert (planned.result, planned.source, planned.held) == ("planned", "git:def", "git:abc")
    drift = _detect_only("git:abc", "git:abc")
    assert (drift.result, drift.held) == ("drift", "git:abc")
    assert _detect_only("", "git:def").held == ""  # never applied: it stays at nothing
