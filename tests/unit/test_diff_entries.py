"""diff over map entries: an entry recognised as the applied state's (the
same attrs object as the desired one) is equal at once, one equal by value
too, and an entry removed is planned alike whether it was decoded or
recognised (then it carries the info the applied state compiled it with)."""

from __future__ import annotations

from reconciler.plan.diff import Action, diff
from reconciler.plan.state import DesiredState, Obj, ObjKind, ObservedState

KEPT, MOVED, GONE = (
    "map/rcl_pol_verdict/0a/default",
    "map/rcl_pol_verdict/0a/1",
    "map/rcl_pol_verdict/0b/default",
)


def test_entries_equal_by_identity_or_value_and_removed_without_info():
    attrs = {"action": "allow", "rule": 0}
    info = {"policy": "policy/bench/pol-1"}
    desired = DesiredState("n1", True, {
        KEPT: Obj(KEPT, ObjKind.ENTRY, attrs, info),
        MOVED: Obj(MOVED, ObjKind.ENTRY, {"action": "deny", "rule": 1}, info),
    })  # fmt: skip
    recognised = ObservedState({
        KEPT: desired.objects[KEPT],  # the applied state's own object
        MOVED: Obj(MOVED, ObjKind.ENTRY, {"action": "allow", "rule": 1}, info),
        GONE: Obj(GONE, ObjKind.ENTRY, {"action": "deny", "rule": 0}, info),
    })  # fmt: skip
    decoded = ObservedState(
        {a: Obj(a, o.kind, dict(o.attrs)) for a, o in recognised.objects.items()}
    )
    planned = diff(desired, recognised)
    assert planned == diff(desired, decoded)
    assert [(c.action, c.address) for c in planned] == [
        (Action.UPDATE, MOVED),
        (Action.DELETE, GONE),
    ]
    assert planned[0].info == info  # what the desired entry says of itself
    assert planned[1].info == {} and planned[1].before == {"action": "deny", "rule": 0}


def test_other_objects_removed_keep_what_was_observed_of_them():
    tc = Obj("tc/eth0/ingress", ObjKind.TC, {"prog": "p"}, {"seen": "x"})
    (change,) = diff(DesiredState("n1", True, {}), ObservedState({tc.address: tc}))
    assert change.action is Action.DELETE and change.info == {"seen": "x"}


def test_a_program_set_built_again_is_attached_again_everywhere():
    """Its attachments (tc, cgroup, XDP) equal by their attrs are made again:
    the set's programs are new; attachments of other sets are left alone."""
    prog = Obj("prog/tc@h1", ObjKind.PROG, {"programs": "rcl_tc_egress,rcl_tc_ingress"})
    attached = {
        "tc/eth0/ingress": Obj("tc/eth0/ingress", ObjKind.TC, {"prog": "tc@h1", "slot": 1}),
        "xdp/eth0": Obj("xdp/eth0", ObjKind.XDP, {"prog": "tc@h1"}),
        "cgroup/connect4": Obj("cgroup/connect4", ObjKind.CGROUP, {"prog": "connect@h2"}),
    }
    desired = DesiredState("n1", True, {prog.address: prog, **attached})
    whole = ObservedState({prog.address: prog, **attached})
    assert diff(desired, whole) == ()
    pin_gone = Obj(prog.address, ObjKind.PROG, {"programs": "rcl_tc_egress"})
    planned = diff(desired, ObservedState({**whole.objects, prog.address: pin_gone}))
    assert [(c.action, c.address, c.reason) for c in planned] == [
        (Action.UPDATE, "prog/tc@h1", ""),
        (Action.UPDATE, "tc/eth0/ingress", "re-attached: prog/tc@h1 is built again"),
        (Action.UPDATE, "xdp/eth0", "re-attached: prog/tc@h1 is built again"),
    ]
