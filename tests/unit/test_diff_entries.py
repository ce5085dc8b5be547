"""diff over map entries: an entry recognised as the applied state's (the
same attrs object as the desired one) is equal at once, one equal by value
too, and an entry removed is planned alike whether it was decoded or
recognised (then it carries the info the applied state compiled it with):
what names it is the notes of the state last applied, not how it was read."""

from __future__ import annotations

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import nat_types as nat
from reconciler.observe import snapshot as snapshots
from reconciler.plan.diff import Action, diff
from reconciler.plan.notes import NO_NOTES, RemovalNotes
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


# A program set of the state applied: the kernel it was applied to holds it.
SET = Obj("prog/tc@h1", ObjKind.PROG, {"programs": ["rcl_tc_ingress"]})
ITS_KERNEL = ObservedState({SET.address: SET})


def applied_state(objects: dict[str, Obj], **fields) -> DesiredState:
    return DesiredState("n1", True, {SET.address: SET, **objects}, **fields)


def test_a_removed_entry_is_named_by_the_state_last_applied_when_it_wrote_exactly_it():
    info = {"policy": "policy/shop/web ingress rule 1"}
    wrote = {"action": "allow", "rule": 0}
    applied = applied_state({GONE: Obj(GONE, ObjKind.ENTRY, wrote, info)})
    notes = RemovalNotes.of(applied, ITS_KERNEL)
    held = ObservedState({GONE: Obj(GONE, ObjKind.ENTRY, dict(wrote))})  # decoded
    (change,) = diff(DesiredState("n1", True, {}), held, notes=notes)
    assert change.action is Action.DELETE and change.info == info
    # the kernel holds something else there: not what that state wrote, no name
    other = ObservedState({GONE: Obj(GONE, ObjKind.ENTRY, {"action": "deny", "rule": 0})})
    (change,) = diff(DesiredState("n1", True, {}), other, notes=notes)
    assert change.info == {}
    assert RemovalNotes.of(None, ITS_KERNEL) is NO_NOTES
    # a state applied to another kernel (another sandbox node sharing the
    # cache directory): none of its program sets is here, no names
    assert RemovalNotes.of(applied, held) is NO_NOTES


def _service_entries(vip: str, svc_id: int) -> dict[bytes, bytes]:
    key, value = entries.encode(
        nat.MAP_NAT_FE, f"{vip}:80/tcp",
        {"svc_id": svc_id, "count": 1, "local_count": 0, "flags": 0, "affinity_timeout_s": 0},
    )  # fmt: skip
    return {key: value}


def test_a_removed_service_entry_is_named_by_its_service_id():
    named, unknown = 0x1234, 0x5678
    table = {**_service_entries("10.96.0.1", named), **_service_entries("10.96.0.2", unknown)}
    held = ObservedState({}, (), {nat.MAP_NAT_FE: table})
    service = {"service": "shop/web:http/tcp", "frontend": "nat/10.96.0.1:80/tcp"}
    applied = applied_state({}, table_info={named: service})
    notes = RemovalNotes.of(applied, ITS_KERNEL)
    changes = diff(DesiredState("n1", True, {}), held, notes=notes)
    assert {c.address: dict(c.info) for c in changes} == {
        "map/rcl_nat_fe/10.96.0.1:80/tcp": service,
        "map/rcl_nat_fe/10.96.0.2:80/tcp": {},
    }
    assert all(c.action is Action.DELETE for c in changes)


def test_a_snapshot_carries_the_notes_of_the_entries_it_holds():
    """So that a plan against it names removals as the node's own plan does."""
    info = {"policy": "tier/default default action"}
    wrote = {"action": "deny", "rule": 2}
    table = _service_entries("10.96.0.1", 7)
    observed = ObservedState({GONE: Obj(GONE, ObjKind.ENTRY, dict(wrote))}, (), {
        nat.MAP_NAT_FE: table,
    })  # fmt: skip
    applied = applied_state(
        {GONE: Obj(GONE, ObjKind.ENTRY, wrote, info), KEPT: Obj(KEPT, ObjKind.ENTRY, wrote, info)},
        table_info={7: {"service": "a/b:c/tcp"}, 8: {"service": "gone/d:e/tcp"}},
    )  # fmt: skip
    notes = RemovalNotes.of(applied, ITS_KERNEL).for_observed(observed)
    assert set(notes.objects) == {GONE} and set(notes.services) == {7}
    snap = snapshots.Snapshot("n1", "/sys/fs/bpf/x", "t", observed, (), {}, notes)
    back = snapshots.load(snapshots.dump(snap))
    nothing = DesiredState("n1", True, {})
    assert diff(nothing, back.observed, notes=back.notes) == diff(nothing, observed, notes=notes)
    assert {c.address: c.info["service" if "nat" in c.address else "policy"]
            for c in diff(nothing, back.observed, notes=back.notes)} == {
        GONE: "tier/default default action", "map/rcl_nat_fe/10.96.0.1:80/tcp": "a/b:c/tcp",
    }  # fmt: skip
    # a snapshot without notes (an older one) plans with none
    data = snapshots.dump(snap)
    del data["notes"]
    assert snapshots.load(data).notes is NO_NOTES


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
