"""An `ingress` qdisc (not our clsact) is reported as foreign, and blocks a
plan's filters on its interface, named with the remedy."""

from __future__ import annotations

from reconciler.engine.foreign_place import blocked_hooks
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


def test_attaching_where_a_foreign_ingress_qdisc_sits_is_blocked():
    observed = ObservedState({}, (foreign_qdisc("cali-a"),))
    (blocked,) = blocked_hooks(_changes("tc/cali-a/egress", "tc/cali-a/ingress"), observed)
    assert (blocked.foreign, blocked.iface) == ("qdisc/cali-a ingress", "cali-a")
    assert blocked.warning.startswith(
        "qdisc/cali-a ingress: an ingress qdisc that is not ours holds the tc hook where ours "
        "must go (our clsact), so cali-a gets no policy or service NAT of ours"
    )
    assert "tc qdisc del dev cali-a ingress" in blocked.warning
    # elsewhere it is only reported
    assert blocked_hooks(_changes("tc/cali-b/egress"), observed) == ()
