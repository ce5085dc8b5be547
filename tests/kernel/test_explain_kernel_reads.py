"""`--explain --kernel` reads the node's links, qdiscs and each crossed
interface's tc filters once per answer, however many workload steps it
judges: counted at our rtnetlink client's one dump call, against the real
kernel of a sandbox node."""

from __future__ import annotations

from collections import Counter

import pytest

from reconciler.kernel import rtnetlink
from reconciler.kernel.rtnetlink import Rtnl
from tests.kernel.conftest import PODS

FRONT, BACK = PODS
NAMES = {
    rtnetlink.RTM_GETLINK: "links",
    rtnetlink.RTM_GETADDR: "addresses",
    rtnetlink.RTM_GETQDISC: "qdiscs",
    rtnetlink.RTM_GETTFILTER: "filters",
}


@pytest.fixture
def dumps(monkeypatch) -> Counter[str]:
    """Every rtnetlink dump made while the test runs, by what it asked for."""
    seen: Counter[str] = Counter()
    dump = Rtnl.dump

    def counted(self: Rtnl, mtype: int, header: bytes) -> list[rtnetlink.Message]:
        seen[NAMES.get(mtype, str(mtype))] += 1
        return dump(self, mtype, header)

    monkeypatch.setattr(Rtnl, "dump", counted)
    return seen


def test_a_two_step_flow_reads_the_kernel_once(node, dumps):
    node.felix()
    for pod in PODS:
        node.wep(pod)
    node.apply_converged()
    dumps.clear()

    rc, out, err = node.run("--explain", "--from", FRONT.name, "--to", f"{BACK.ip}:8080/tcp",
                            "--kernel")  # fmt: skip
    assert rc == 0, out + err
    # two workload steps, each through our loaded program on its own interface
    assert f"shop/{FRONT.name} egress: " in out and f"shop/{BACK.name} ingress: " in out, out
    assert out.count("(agrees)") == 2 and "not attached" not in out, out
    # one link and one qdisc dump for the answer; each interface's two hooks once
    assert dumps == Counter(links=1, qdiscs=1, filters=4), dumps
