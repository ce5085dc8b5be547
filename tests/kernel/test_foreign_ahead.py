"""Someone else's tc filter on a hook we manage: one that runs before ours is
a loud warning (and --status is not "in sync"); one after ours is a note."""

from __future__ import annotations

import json
import subprocess

from tests.kernel.conftest import PODS, foreign_tc_filter

BACK = "cali-back0"


def tc(node, *args: str) -> str:
    return subprocess.run(
        ["tc", "-n", node.sandbox.node, *args], capture_output=True, text=True, check=True
    ).stdout


def _setup(node) -> None:
    node.felix()
    for pod in PODS:
        node.wep(pod)
    node.apply_converged()


def test_foreign_filter_before_ours_is_a_warning_and_not_in_sync(node):
    from reconciler.datapath.programs import TC_PRIO

    _setup(node)
    foreign_tc_filter(node, BACK, 1, "egress", "TC_ACT_OK", "foreign")
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
    foreign_tc_filter(node, BACK, TC_PRIO + 1, "egress", "TC_ACT_OK", "foreign")
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
    assert f"Note: not ours, left alone: tc/{BACK}/egress prio {TC_PRIO + 1} foreign" in out
    assert "Warning" not in out, out
    rc, out, err = node.run("--status")
    assert rc == 0 and "In sync" in out, out + err
