"""An `ingress` qdisc of someone else's where our clsact must go: its
interface is left out of the plan, named with the remedy, and nothing of
ours lands on it; the rest of the node is reconciled."""

from __future__ import annotations

import json

import pytest

from tests.kernel.conftest import PODS
from tests.kernel.test_foreign_ahead import BACK, _setup, tc


def test_an_ingress_qdisc_blocks_its_interface_and_nothing_else(node):
    """The operator's case: our clsact replaced by an ingress qdisc on a pod
    veth. --status says so before any apply; an apply repairs the rest and
    leaves that interface as it is until the qdisc is gone."""
    _setup(node)
    tc(node, "qdisc", "del", "dev", BACK, "clsact")
    tc(node, "qdisc", "add", "dev", BACK, "ingress")
    theirs = tc(node, "qdisc", "show", "dev", BACK)
    front = f"cali-{PODS[0].name}"
    tc(node, "filter", "del", "dev", front, "egress")  # drift elsewhere, to be repaired
    warning = (
        f"Warning: qdisc/{BACK} ingress: an ingress qdisc that is not ours holds the tc hook "
        f"where ours must go (our clsact), so {BACK} gets no policy or service NAT of ours"
    )
    rc, out, err = node.run("--status", "--json")
    sync = json.loads(out)["sync"]
    assert rc == 2 and sync["state"] == "drifted", out + err
    assert sync["blocked"] == [f"qdisc/{BACK} ingress"], sync
    rc, out, err = node.run("--apply")
    assert rc == 1 and warning in out and f"tc qdisc del dev {BACK} ingress" in out, out + err
    assert f"+ tc/{front}/egress" in out and f"tc/{BACK}/" not in out, out
    assert "Apply complete" not in out, out
    assert (
        "Apply partly done: the planned changes are made (resources: 1 added, 0 changed, "
        f"0 destroyed), but 1 interface(s) were left out, where objects not ours hold the "
        f"place of ours: {BACK};"
    ) in out, out
    assert f"left out of the apply: qdisc/{BACK} ingress;" in err, err
    assert "rcl:" in tc(node, "filter", "show", "dev", front, "egress")
    assert tc(node, "qdisc", "show", "dev", BACK) == theirs
    assert "rcl:" not in tc(node, "filter", "show", "dev", BACK, "ingress")
    rc, out, err = node.run("--status")
    assert rc == 1 and "In sync" not in out and f"qdisc/{BACK} ingress" in out, out + err
    rc, out, err = node.run("--apply", "--json")  # nothing else to do
    doc = json.loads(out)
    assert rc == 1 and doc["plan"]["changes"] == [] and doc["converged"] is False, out + err
    assert doc["blocked"] == [f"qdisc/{BACK} ingress"], out
    rc, out, err = node.run("--status", "--json")  # both applies: blocked, not no-op
    rows = json.loads(out)["history"][:2]
    assert [r["result"] for r in rows] == ["blocked", "blocked"], rows
    assert all(f"qdisc/{BACK} ingress" in r["error"] for r in rows), rows
    tc(node, "qdisc", "del", "dev", BACK, "ingress")
    node.apply_converged()
    assert "rcl:" in tc(node, "filter", "show", "dev", BACK, "egress")
    rc, out, err = node.run("--status")
    assert rc == 0 and "In sync" in out, out + err


def test_executor_never_attaches_onto_an_ingress_qdisc(node):
    """Defence in depth: a plan made before the qdisc appeared still attaches nothing."""
    from reconciler.apply.executor import _ensure_clsact
    from reconciler.kernel.pyroute import route

    tc(node, "qdisc", "add", "dev", BACK, "ingress")
    with route(node.sandbox.node) as ipr:
        idx = ipr.link_lookup(ifname=BACK)[0]
        with pytest.raises(OSError, match=f"tc qdisc del dev {BACK} ingress"):
            _ensure_clsact(ipr, idx, BACK)
        tc(node, "qdisc", "del", "dev", BACK, "ingress")
        _ensure_clsact(ipr, idx, BACK)
        _ensure_clsact(ipr, idx, BACK)  # clsact there already: fine
    assert "clsact" in tc(node, "qdisc", "show", "dev", BACK)
