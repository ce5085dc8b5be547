"""An `ingress` qdisc (not our clsact) is reported as foreign, and a plan that
would attach on its interface is refused naming the interface and the remedy."""

from __future__ import annotations

import pytest

from reconciler.engine.reconcile import ReconcileError, refuse_foreign_at_our_place
from reconciler.kernel.rtnetlink import QdiscMsg
from reconciler.observe.kernel import foreign_qdisc, foreign_qdiscs
from reconciler.plan.diff import diff
from reconciler.plan.state import DesiredState, Link, Obj, ObjKind, ObservedState


def test_an_ingress_qdisc_is_foreign_and_a_clsact_is_not():
    links = [Link("cali-a", 4), Link("cali-b", 5), Link("eth0", 2)]
    qdiscs = [QdiscMsg(4, "ingress"), QdiscMsg(5, "clsact"), QdiscMsg(2, "noqueue")]
    assert foreign_qdiscs(qdiscs, links) == ["qdisc/cali-a ingress"]


def _changes(*hooks: str):
    objects = {h: Obj(h, ObjKind.TC, {"prog": "tc@1", "slot": 1}) for h in hooks}
    return diff(DesiredState("node-1", True, objects), ObservedState({}))


def test_attaching_where_a_foreign_ingress_qdisc_sits_is_refused():
    observed = ObservedState({}, (foreign_qdisc("cali-a"),))
    with pytest.raises(ReconcileError) as refused:
        refuse_foreign_at_our_place(_changes("tc/cali-a/egress", "tc/cali-a/ingress"), observed)
    message = str(refused.value)
    assert message.startswith("cali-a: an ingress qdisc that is not ours holds the tc hook")
    assert "tc qdisc del dev cali-a ingress" in message and message.count("cali-a:") == 1
    assert message.endswith("nothing was changed")
    # elsewhere it is only reported
    refuse_foreign_at_our_place(_changes("tc/cali-b/egress"), observed)
