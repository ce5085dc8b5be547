"""Whether an apply must look for UDP sockets connected to departed backends."""

from __future__ import annotations

from reconciler.compile.connect_lb import CTLB_MODES
from reconciler.engine.reconcile import (
    UDP_EVERYWHERE,
    UDP_HOST,
    UDP_NOWHERE,
    udp_balanced_at_connect,
)
from reconciler.plan.diff import Action, Change
from reconciler.plan.plan import Plan
from reconciler.plan.state import DesiredState, Obj, ObjKind

GLOBALS = "map/rcl_nat_globals/0"


def state(mode: str, host_nat: int = 0) -> DesiredState:
    obj = Obj(GLOBALS, ObjKind.ENTRY, {"ctlb": CTLB_MODES[mode], "host_nat": host_nat})
    return DesiredState("n1", True, {GLOBALS: obj})


def plan(*changes: Change) -> Plan:
    return Plan("n1", {}, "/sys/fs/bpf/x", "", tuple(changes), {}, (), ())


def test_only_udp_balancing_at_connect_leaves_connected_udp_sockets():
    assert udp_balanced_at_connect(plan(), state("Enabled")) == UDP_EVERYWHERE
    assert udp_balanced_at_connect(plan(), state("TCP", host_nat=1)) == UDP_HOST
    assert udp_balanced_at_connect(plan(), state("TCP")) == UDP_NOWHERE
    assert udp_balanced_at_connect(plan(), state("Disabled")) == UDP_NOWHERE


def test_a_plan_that_turns_udp_balancing_off_still_looks():
    change = Change(
        Action.UPDATE, GLOBALS, ObjKind.ENTRY,
        {"ctlb": CTLB_MODES["Enabled"]}, {"ctlb": CTLB_MODES["TCP"]}, {},
    )  # fmt: skip
    assert udp_balanced_at_connect(plan(change), state("TCP")) == UDP_EVERYWHERE
    host_off = Change(
        Action.UPDATE, GLOBALS, ObjKind.ENTRY,
        {"ctlb": CTLB_MODES["TCP"], "host_nat": 1}, {"ctlb": CTLB_MODES["TCP"]}, {},
    )  # fmt: skip
    assert udp_balanced_at_connect(plan(host_off), state("TCP")) == UDP_HOST


def test_without_nat_globals_it_looks_to_be_safe():
    assert udp_balanced_at_connect(plan(), DesiredState("n1", True, {})) == UDP_EVERYWHERE
