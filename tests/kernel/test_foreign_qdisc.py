"""An `ingress` qdisc of someone else's where our clsact must go: the plan is
refused naming the interface and the remedy, and nothing of ours lands on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kernel.conftest import PODS
from tests.kernel.test_foreign_ahead import BACK, _setup, tc


def test_a_foreign_ingress_qdisc_refuses_the_plan_and_gets_nothing_of_ours(node):
    node.felix()
    for pod in PODS:
        node.wep(pod)
    tc(node, "qdisc", "add", "dev", BACK, "ingress")
    for mode in ("--plan", "--apply"):
        rc, out, err = node.run(mode)
        assert rc == 1, out + err
        assert f"{BACK}: an ingress qdisc that is not ours" in err, err
        assert f"tc qdisc del dev {BACK} ingress" in err, err
        assert "Apply complete" not in out, out
    assert "rcl:" not in tc(node, "filter", "show", "dev", BACK, "ingress")
    assert "clsact" not in tc(node, "qdisc", "show", "dev", BACK)
    assert not list(Path(node.sandbox.bpffs_root).glob("progs/*")), "nothing was applied"


def test_an_ingress_qdisc_after_an_apply_is_refused_too(node):
    """The operator's case: our clsact replaced by an ingress qdisc on a pod veth."""
    _setup(node)
    tc(node, "qdisc", "del", "dev", BACK, "clsact")
    tc(node, "qdisc", "add", "dev", BACK, "ingress")
    rc, out, err = node.run("--apply")
    assert rc == 1, out + err
    assert f"tc qdisc del dev {BACK} ingress" in err and "Apply complete" not in out, out + err
    assert "rcl:" not in tc(node, "filter", "show", "dev", BACK, "ingress")
    rc, out, err = node.run("--status")
    assert rc != 0 and "In sync" not in out, out + err
    tc(node, "qdisc", "del", "dev", BACK, "ingress")
    node.apply_converged()
    assert "rcl:" in tc(node, "filter", "show", "dev", BACK, "egress")


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
