"""Someone else's tc filter on a hook we manage: one that runs before ours is
a loud warning (and --status is not "in sync"); one after ours is a note."""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from pathlib import Path

import pytest

from sandbox.netns import Sandbox
from tests.kernel.conftest import PODS, Node

BACK = "cali-back0"


@pytest.fixture
def node(tmp_path, capsys):
    sandbox = Sandbox(prefix=f"rclf{uuid.uuid4().hex[:5]}")
    try:
        sandbox.up(PODS)
        n = Node(sandbox, tmp_path / "config", tmp_path / "state", capsys)
        n.config.mkdir()
        yield n
    finally:
        sandbox.down()
    assert not Path(sandbox.bpffs_root).exists()


def tc(node, *args: str) -> str:
    return subprocess.run(
        ["tc", "-n", node.sandbox.node, *args], capture_output=True, text=True, check=True
    ).stdout


def _pass_filter(node, iface: str, direction: str, prio: int) -> None:
    """A BPF filter of someone else's that lets every packet through (TC_ACT_OK)."""
    from bcc import BPF

    from reconciler.datapath.programs import TC_PARENTS
    from reconciler.kernel.pyroute import route

    other = BPF(
        text=b"#include <uapi/linux/pkt_cls.h>\n"
        b"int other_prog(struct __sk_buff *skb) { return TC_ACT_OK; }"
    )
    fn = other.load_func(b"other_prog", BPF.SCHED_CLS)
    with route(node.sandbox.node) as ipr:
        idx = ipr.link_lookup(ifname=iface)[0]
        with contextlib.suppress(Exception):  # ours is there already
            ipr.tc("add", "clsact", idx)
        ipr.tc("add-filter", "bpf", idx, ":1", fd=fn.fd, name="foreign",
               parent=TC_PARENTS[direction], classid=1, direct_action=True,
               prio=prio)  # fmt: skip
    other.cleanup()


def _setup(node) -> None:
    node.felix()
    for pod in PODS:
        node.wep(pod)
    node.apply_converged()


def test_foreign_filter_before_ours_is_a_warning_and_not_in_sync(node):
    from reconciler.datapath.programs import TC_PRIO

    _setup(node)
    _pass_filter(node, BACK, "egress", 1)
    rc, out, err = node.run("--plan")
    assert rc == 0, out + err
    warning = (
        f"Warning: tc/{BACK}/egress prio 1 foreign: a tc filter that is not ours runs "
        f"before ours (prio {TC_PRIO:#x}) and can decide packets first"
    )
    assert warning in out, out
    assert f"tc filter del dev {BACK} egress pref 1" in out, out
    rc, out, err = node.run("--plan", "--json")
    assert rc == 0, out + err
    warnings = json.loads(out)["warnings"]
    assert any(w.startswith(f"tc/{BACK}/egress prio 1 foreign: ") for w in warnings), warnings
    rc, out, err = node.run("--status")
    assert rc == 2, out + err
    assert "In sync" not in out, out
    assert f"tc/{BACK}/egress prio 1 foreign" in out and "runs before ours" in out, out
    rc, out, err = node.run("--status", "--json")
    assert rc == 2 and json.loads(out)["sync"]["state"] == "shadowed", out
    # never removed: it is not ours
    assert "foreign" in tc(node, "filter", "show", "dev", BACK, "egress")


def test_foreign_filter_after_ours_stays_a_note(node):
    from reconciler.datapath.programs import TC_PRIO

    _setup(node)
    _pass_filter(node, BACK, "egress", TC_PRIO + 1)
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
    assert f"Note: not ours, left alone: tc/{BACK}/egress prio {TC_PRIO + 1} foreign" in out
    assert "Warning" not in out, out
    rc, out, err = node.run("--status")
    assert rc == 0 and "In sync" in out, out + err
