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


def test_after_ours_blocked_elsewhere_and_xdp_are_not_warned():
    blocked = f"tc/cali-a/ingress prio {TC_PRIO} same"  # its own warning: engine.foreign_place
    foreign = (
        f"tc/cali-a/egress prio {TC_PRIO + 1} later",
        blocked,
        f"tc/lo/ingress prio {TC_PRIO} unmanaged",
        "tc/lo/ingress prio 1 unmanaged",
        "xdp/eth0 generic prog 7 other_xdp",
    )
    desired = _desired("tc/cali-a/egress", "tc/cali-a/ingress")
    assert foreign_ahead(desired, ObservedState({}, foreign), {blocked}) == []


def test_a_filter_at_our_priority_on_a_hook_we_hold_may_run_first_and_is_warned():
    """cls_bpf runs one priority's filters newest first: one added after ours
    runs before it, and no plan changes that hook, so nothing else says so."""
    shared = f"tc/cali-a/egress prio {TC_PRIO} someone"
    (warning,) = foreign_ahead(_desired("tc/cali-a/egress"), ObservedState({}, (shared,)))
    assert warning.startswith(
        f"{shared}: a tc filter that is not ours shares our priority ({TC_PRIO:#x}) on a hook "
        "of ours; the kernel runs the filters of one priority newest first, so if it was "
        "added after ours it decides packets before ours"
    ), warning
    # the remedy names its handle: the priority alone would take ours off too
    assert f"tc filter del dev cali-a egress pref {TC_PRIO} handle <its handle> bpf" in warning
    assert warning.endswith("left alone"), warning
