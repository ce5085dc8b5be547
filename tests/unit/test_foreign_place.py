"""Objects not ours where ours must go (engine.foreign_place): the interface
they block is left out of the plan, and nothing else is; the plan, a saved
plan's check, the apply record, --status and the watcher all say so."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from reconciler.cli.render import render_plan
from reconciler.compile.host_policy import without_foreign_xdp
from reconciler.datapath.programs import TC_PRIO
from reconciler.engine.foreign_place import blocked_error, blocked_in, held_by_foreign
from reconciler.engine.reconcile import (
    PlanRefused,
    Result,
    Target,
    check_same_changes,
    diff_around_foreign,
    record_applied,
)
from reconciler.plan.diff import diff
from reconciler.plan.plan import Plan
from reconciler.plan.state import DesiredState, Obj, ObjKind, ObservedState

AT_OURS = f"tc/cali-a/egress prio {TC_PRIO} someone"
KUBE_PROXY = "netfilter/kube-proxy"


def _tc(hook: str, prog: str = "tc@new") -> Obj:
    return Obj(hook, ObjKind.TC, {"prog": prog, "slot": 1})


def _entry(key: str) -> Obj:
    return Obj(f"map/rcl_ifstate/{key}", ObjKind.ENTRY, {"flags": 1})


def _node(*foreign: str) -> tuple[DesiredState, ObservedState]:
    """Two pod interfaces wanted with the new programs; cali-a holds ours
    (the old programs) on ingress only; kube-proxy's chains are still there."""
    want = [_tc("tc/cali-a/egress"), _tc("tc/cali-a/ingress"), _tc("tc/cali-b/egress"),
            _tc("tc/cali-b/ingress"), _entry("4"), _entry("5"),
            Obj(KUBE_PROXY, ObjKind.NETFILTER, {"chains": []})]  # fmt: skip
    have = [_tc("tc/cali-a/ingress", "tc@old"),
            Obj(KUBE_PROXY, ObjKind.NETFILTER, {"chains": ["KUBE-SERVICES"]})]  # fmt: skip
    return (
        DesiredState("n1", True, {o.address: o for o in want}, build={"hash": "1"}),
        ObservedState({o.address: o for o in have}, tuple(sorted(foreign))),  # as observe does
    )


def _plan(changes, warnings=(), foreign=(), build=None) -> Plan:
    return Plan("n1", {"identity": "dir:1", "description": "cfg"}, "/sys/fs/bpf/x", "fp",
                tuple(changes), dict(build or {"hash": "1"}), tuple(warnings),
                tuple(foreign))  # fmt: skip


def test_a_filter_at_our_priority_leaves_its_interface_out_and_nothing_else():
    desired, observed = _node(AT_OURS)
    changes, reduced, blocked = diff_around_foreign(desired, observed)
    addresses = {c.address for c in changes}
    assert addresses == {"tc/cali-b/egress", "tc/cali-b/ingress",
                         "map/rcl_ifstate/4", "map/rcl_ifstate/5"}  # fmt: skip
    ((foreign, iface),) = [(b.foreign, b.iface) for b in blocked]
    assert (foreign, iface) == (AT_OURS, "cali-a")
    assert blocked[0].warning.startswith(
        f"{AT_OURS}: a tc filter that is not ours holds our priority ({TC_PRIO:#x}) where ours "
        "must go, so cali-a gets no policy or service NAT of ours (our filters there are left "
        "as they are)"
    )
    assert f"tc filter del dev cali-a egress pref {TC_PRIO}" in blocked[0].warning
    # what apply will find after these changes is the state it leads to:
    # ours on cali-a as they were (never half detached), kube-proxy's kept
    assert reduced.objects["tc/cali-a/ingress"].attrs["prog"] == "tc@old"
    assert "tc/cali-a/egress" not in reduced.objects
    applied = dict(observed.objects) | {c.address: reduced.objects[c.address] for c in changes}
    assert diff(reduced, ObservedState(applied)) == ()


def test_without_anything_in_the_way_every_change_stays():
    desired, observed = _node(f"tc/cali-a/egress prio {TC_PRIO + 1} later")
    changes, reduced, blocked = diff_around_foreign(desired, observed)
    assert blocked == () and reduced is desired
    assert {c.address for c in changes} >= {"tc/cali-a/egress", KUBE_PROXY}


def test_a_saved_plan_is_checked_against_the_same_reduced_changes():
    desired, observed = _node(AT_OURS)
    changes, _, blocked = diff_around_foreign(desired, observed)
    plan = _plan(changes, [b.warning for b in blocked], observed.foreign)
    reduced = check_same_changes(plan, desired, observed)
    assert "tc/cali-a/egress" not in reduced.objects
    # the foreign filter gone since: cali-a would attach, which the plan does not
    _, gone = _node()
    with pytest.raises(PlanRefused, match="plan file does not match the changes"):
        check_same_changes(plan, desired, gone)


def test_a_saved_plan_leaves_a_foreign_xdp_program_alone_as_the_plan_did():
    xdp = "xdp/eth0 generic prog 7 other_xdp"
    desired = DesiredState("n1", True, {"xdp/eth0": Obj("xdp/eth0", ObjKind.XDP, {"prog": "x"})},
                           build={"hash": "1"})  # fmt: skip
    observed = ObservedState({}, (xdp,))
    changes, reduced, blocked = diff_around_foreign(desired, observed)
    assert changes == () and blocked == ()
    plan = _plan(changes, reduced.warnings, observed.foreign)
    check_same_changes(plan, desired, observed)  # accepted, not "does not match"


def test_plans_find_their_blocked_and_foreign_xdp_warnings_again():
    desired, observed = _node(AT_OURS, "qdisc/cali-b ingress", "tc/cali-b/ingress prio 1 ahead")
    _, _, blocked = diff_around_foreign(desired, observed)
    xdp = "xdp/eth0 generic prog 7 other_xdp"
    with_xdp = without_foreign_xdp(
        DesiredState("n1", True, {"xdp/eth0": Obj("xdp/eth0", ObjKind.XDP, {})}), [xdp]
    )
    (xdp_warning,) = with_xdp.warnings
    assert xdp_warning.startswith(f"{xdp}: a foreign XDP program is attached where ours must go")
    assert "ip link set dev eth0 xdpgeneric off" in xdp_warning
    ahead = "tc/cali-b/ingress prio 1 ahead: a tc filter that is not ours runs before ours"
    plan = _plan((), [*(b.warning for b in blocked), xdp_warning, ahead],
                 (*observed.foreign, xdp))  # fmt: skip
    assert blocked_in(plan) == ("qdisc/cali-b ingress", AT_OURS)
    assert held_by_foreign(plan) == ("qdisc/cali-b ingress", AT_OURS, xdp)


def test_an_empty_plan_with_a_blocked_interface_does_not_say_no_changes():
    desired, observed = _node(AT_OURS)
    _, _, blocked = diff_around_foreign(desired, observed)
    text = render_plan(_plan((), [b.warning for b in blocked], observed.foreign))
    assert "No changes." not in text and f"Warning: {AT_OURS}: a tc filter" in text
    assert "No changes can be made until the 1 object(s) not ours that the warnings" in text
    assert "No changes. The kernel matches" in render_plan(_plan((), (), observed.foreign))


def test_an_apply_that_left_interfaces_out_is_recorded_as_not_converged(tmp_path: Path):
    target = Target("n1", "/sys/fs/bpf/x", tmp_path)
    record_applied(_plan(()), target, 0, blocked=(AT_OURS,))
    record = json.loads((tmp_path / "applied.json").read_text())
    assert record["converged"] is False and record["blocked"] == [AT_OURS]
    assert record["error"] == blocked_error((AT_OURS,))
    assert record["error"].startswith("not converged: objects not ours hold the place of ours")
    assert AT_OURS in record["error"] and "reconcile --plan says how" in record["error"]
    # a later apply that finds nothing in the way records the node converged
    record_applied(_plan(()), target, 0)
    record = json.loads((tmp_path / "applied.json").read_text())
    assert (record["converged"], record["error"], record["blocked"]) == (True, "", [])
    assert not Result(_plan(()), (), (), blocked=(AT_OURS,)).converged


def test_status_names_what_holds_our_place():
    from reconciler.cli.commands import render_sync

    text = render_sync({"state": "blocked", "warnings": ["w"], "blocked": [AT_OURS]})
    assert "Warning: w" in text and "In sync" not in text
    assert "does not enforce all of its policy: " + AT_OURS in text


def test_the_watcher_applies_what_it_can_and_holds_nothing_back(tmp_path: Path):
    """A pass with a blocked interface is no failed source: the source is
    good, no backoff retry; but it did not converge the node: `blocked`,
    naming what was left out."""
    from reconciler.engine.caches import Caches
    from reconciler.gitops.loop import Engine, Watcher, WatchOptions
    from reconciler.gitops.triggers import Event

    class Blocked(Engine):
        def apply(self, target, spec, changed, opener):
            plan = dataclasses.replace(_plan(()), source={"identity": "dir:1"})
            desired = DesiredState("n1", True, {})
            return Result(plan, (), (), desired=desired, blocked=(AT_OURS,))

    target = Target("n1", "/sys/fs/bpf/x", tmp_path / "state")
    watcher = Watcher(target, WatchOptions(config=str(tmp_path)), Blocked(Caches(), False))
    record = watcher.run_pass(Event("drift"))
    assert record.result == "blocked" and AT_OURS in record.error, record
    assert watcher.retry_at is None and watcher.backoff.failures == 0
    assert watcher.good_identity == "dir:1"
    # a new link waits for the pass: the fast attach must not take the blocked
    # interface's filters for the new link's
    assert watcher.converged is None


def test_a_plan_with_only_a_blocked_interface_exits_2():
    from reconciler.cli.commands import plan_exit_code

    desired, observed = _node(AT_OURS)
    changes, _, blocked = diff_around_foreign(desired, observed)
    warnings = [b.warning for b in blocked]
    assert plan_exit_code(_plan((), warnings, observed.foreign)) == 2
    assert plan_exit_code(_plan(changes, warnings, observed.foreign)) == 2
    # a foreign XDP program alone leaves the plan's answer as it was (as a
    # filter ahead of ours does): --status is the one that says blocked
    xdp = "xdp/eth0 generic prog 7 other_xdp"
    held = without_foreign_xdp(
        DesiredState("n1", True, {"xdp/eth0": Obj("xdp/eth0", ObjKind.XDP, {})}), [xdp]
    )
    assert plan_exit_code(_plan((), held.warnings, (xdp,))) == 0
    assert plan_exit_code(_plan((), (), observed.foreign)) == 0
