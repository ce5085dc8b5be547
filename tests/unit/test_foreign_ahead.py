"""reconcile.foreign_ahead: a filter not ours before ours on a hook we attach
to is a warning; after ours, or on a hook we do not attach to, it is not."""

from __future__ import annotations

from reconciler.datapath.programs import TC_PRIO
from reconciler.engine.reconcile import foreign_ahead
from reconciler.plan.state import DesiredState, Obj, ObjKind, ObservedState


def _desired(*hooks: str) -> DesiredState:
    objects = {h: Obj(h, ObjKind.TC, {"prog": "tc@1", "slot": 1}) for h in hooks}
    return DesiredState("node-1", True, objects)


def test_a_filter_before_ours_is_named_with_its_remedy():
    observed = ObservedState({}, ("tc/cali-a/egress prio 1 foreign",))
    (warning,) = foreign_ahead(_desired("tc/cali-a/egress"), observed)
    assert warning.startswith(
        f"tc/cali-a/egress prio 1 foreign: a tc filter that is not ours runs before ours "
        f"(prio {TC_PRIO:#x}) and can decide packets first"
    )
    assert "tc filter del dev cali-a egress pref 1" in warning


def test_after_ours_at_ours_elsewhere_and_xdp_are_not_warned():
    foreign = (
        f"tc/cali-a/egress prio {TC_PRIO + 1} later",
        f"tc/cali-a/ingress prio {TC_PRIO} same",  # blocked: engine.foreign_place
        "tc/lo/ingress prio 1 unmanaged",
        "xdp/eth0 generic prog 7 other_xdp",
    )
    desired = _desired("tc/cali-a/egress", "tc/cali-a/ingress")
    assert foreign_ahead(desired, ObservedState({}, foreign)) == []
