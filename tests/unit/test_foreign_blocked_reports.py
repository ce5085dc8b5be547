"""A reconcile that left interfaces out for objects not ours (blocked) is
reported as what it is everywhere: the watcher's pass, readiness, metrics,
the one-shot apply's words and its history row. And --status says each
thing once: the commit of the last apply, a repeated error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from reconciler.datapath.programs import TC_PRIO
from reconciler.engine import history
from reconciler.engine.caches import Caches
from reconciler.engine.foreign_place import blocked_error
from reconciler.engine.reconcile import Result, Target, diff_around_foreign
from reconciler.gitops.loop import Engine, Watcher, WatchOptions
from reconciler.gitops.metrics import Metrics
from reconciler.gitops.probes import Probes
from reconciler.gitops.triggers import Event
from reconciler.plan.plan import Plan
from reconciler.plan.state import DesiredState, Obj, ObjKind, ObservedState

AT_OURS = f"tc/cali-a/egress prio {TC_PRIO} someone"
QDISC = "qdisc/cali-b ingress"


def _plan(changes=()) -> Plan:
    return Plan("n1", {"identity": "dir:1", "description": "cfg"}, "/sys/fs/bpf/x", "fp",
                tuple(changes), {"hash": "1"}, (), (AT_OURS,))  # fmt: skip


def _changes():
    """Two changes on cali-c, whose hooks nothing holds."""
    want = {a: Obj(a, ObjKind.TC, {"prog": "tc@1", "slot": 1})
            for a in ("tc/cali-c/egress", "tc/cali-c/ingress")}  # fmt: skip
    changes, _, _ = diff_around_foreign(DesiredState("n1", True, want), ObservedState({}, ()))
    assert len(changes) == 2
    return changes


class _Blocked(Engine):
    """An engine whose every apply leaves cali-a out (and changes nothing else)."""

    def apply(self, target, spec, changed, opener):
        plan = dataclasses.replace(_plan(), source={"identity": "dir:1"})
        return Result(plan, (), (), desired=DesiredState("n1", True, {}), blocked=(AT_OURS,))

    def plan(self, target, opener):
        plan = dataclasses.replace(_plan(), warnings=(f"{AT_OURS}: held where ours must go",))
        return plan, DesiredState("n1", True, {})


def _watcher(tmp_path: Path, report=lambda record, plan: None, detect_only=False) -> Watcher:
    target = Target("n1", "/sys/fs/bpf/x", tmp_path / "state")
    options = WatchOptions(config=str(tmp_path), detect_only=detect_only)
    return Watcher(target, options, _Blocked(Caches(), False), report)


def _count(metrics: Metrics, result: str) -> float:
    (family,) = metrics.results.collect()
    return next(s.value for s in family.samples
                if s.name.endswith("_total") and s.labels["result"] == result)  # fmt: skip


def test_a_blocked_pass_is_not_ready_and_counted_but_backs_nothing_off(tmp_path: Path):
    target = Target("n1", "/sys/fs/bpf/x", tmp_path / "state")
    metrics, probes = Metrics(target), Probes(30)

    def report(record, plan):  # as watch_cmd reports a pass
        metrics.observe_pass(record)
        probes.observe_pass(record.result, record.held or record.source, bool(record.held),
                            record.error)  # fmt: skip

    watcher = _watcher(tmp_path, report)
    for _ in range(2):
        record = watcher.run_pass(Event("drift check"))
    assert record.result == "blocked" and record.error == blocked_error((AT_OURS,)), record
    # not a failed source: no hold-back, no retry
    assert watcher.retry_at is None and watcher.backoff.failures == 0
    assert record.held == "" and watcher.good_identity == "dir:1"
    ready = probes.readiness()
    assert ready.status == 503 and ready.body["ready"] is False, ready
    assert ready.body["last_result"] == "blocked" and AT_OURS in ready.body["reason"], ready
    # its services are proxied: kube-proxy's health answer stays up
    assert probes.proxy_health().status == 200
    assert _count(metrics, "blocked") == 2 and _count(metrics, "failed") == 0
    assert metrics.failures == 2
    (gauge,) = metrics.failing.collect()
    assert gauge.samples[0].value == 2
    watch = json.loads((target.state_dir / history.WATCH).read_text())
    assert watch["state"] == "blocked" and watch["failures"] == 0, watch
    assert [r["result"] for r in history.load(target.state_dir)] == ["blocked", "blocked"]


def test_readiness_gives_a_reason_whenever_it_is_not_ready():
    probes = Probes(30)
    assert probes.readiness().body["reason"] == "no pass has ended yet"
    probes.observe_pass("drift", "dir:1")
    assert "--detect-only" in probes.readiness().body["reason"]
    probes.observe_pass("failed", "dir:1", error="bad yaml")
    assert probes.readiness().body["reason"] == "bad yaml"
    probes.observe_pass("no-op", "dir:1")
    assert probes.readiness().status == 200 and "reason" not in probes.readiness().body


def test_a_detect_only_pass_that_finds_a_blocked_interface_says_blocked(tmp_path: Path):
    record = _watcher(tmp_path, detect_only=True).run_pass(Event("drift check"))
    assert record.result == "blocked" and AT_OURS in record.error, record


def test_a_one_shot_apply_that_left_interfaces_out_is_recorded_blocked(tmp_path: Path):
    from reconciler.cli.status_history import recorded

    target = Target("n1", "/sys/fs/bpf/x", tmp_path)
    for plan in (_plan(_changes()), _plan()):  # the first apply, then one with nothing to do
        recorded(target, lambda plan=plan: Result(plan, (), (), blocked=(AT_OURS,)))
    rows = history.load(tmp_path)
    assert [r["result"] for r in rows] == ["blocked", "blocked"], rows
    assert {r["error"] for r in rows} == {blocked_error((AT_OURS,))}
    recorded(target, lambda: Result(_plan(), (), ()))
    assert history.load(tmp_path)[-1]["result"] == "no-op"


def test_an_apply_that_left_interfaces_out_does_not_say_complete():
    from reconciler.cli.commands import _applied_line
    from reconciler.engine.foreign_place import blocked_ifaces

    assert blocked_ifaces((AT_OURS, QDISC)) == ("cali-a", "cali-b")
    line = _applied_line(Result(_plan(_changes()), (), (), blocked=(AT_OURS, QDISC)))
    assert "complete" not in line, line
    assert line.strip() == (
        "Apply partly done: the planned changes are made (resources: 2 added, 0 changed, 0 "
        "destroyed), but 2 interface(s) were left out, where objects not ours hold the place "
        "of ours: cali-a, cali-b; their tc hooks are left as they were, so they do not enforce "
        "this configuration's policy."
    )
    done = _applied_line(Result(_plan(_changes()), (), ()))
    assert done.strip() == "Apply complete! Resources: 2 added, 0 changed, 0 destroyed."


def test_status_history_shows_a_repeated_error_once():
    from reconciler.cli.status_history import render_history

    long = blocked_error((AT_OURS,))
    rows = [{"started": f"2026-01-01T00:00:0{i}Z", "result": "blocked", "error": long}
            for i in (3, 2)]  # fmt: skip
    rows += [{"started": "2026-01-01T00:00:01Z", "result": "no-op"},
             {"started": "2026-01-01T00:00:00Z", "result": "blocked", "error": long}]  # fmt: skip
    text = render_history({"history": rows})
    assert text.count(long) == 2, text  # again after a row without it
    assert text.count("(the same error as above)") == 1, text


def test_status_names_the_commit_of_the_last_apply_once():
    from reconciler.observe.status import source_words

    sha = "a4ee71c40f3b0523855784a662e55881a44715c2"
    pinned = {"identity": f"git:{sha}", "description": f"/srv/cfg.git@{sha} ({sha[:12]})"}
    assert source_words(pinned) == f"/srv/cfg.git@{sha}"
    branch = {"identity": f"git:{sha}", "description": f"/srv/cfg.git@main ({sha[:12]})"}
    assert source_words(branch) == f"/srv/cfg.git@main ({sha[:12]})"
    directory = {"identity": "dir:5f2c", "description": "/etc/cfg"}
    assert source_words(directory) == "/etc/cfg (dir:5f2c)"
