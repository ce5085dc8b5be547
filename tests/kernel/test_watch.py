"""`--watch` converges on config changes and on kernel events (interfaces coming and going)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.sandbox import Pod
from tests.kernel.conftest import PODS
from tests.kernel.test_reconcile import ifstate, tc_filters

FRONT, BACK = PODS


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@contextmanager
def watching(node, interval: int) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """A `reconcile --watch` process for the test's node; yields it and, once it
    has been stopped, its stderr (in the list)."""
    reconcile = str(Path(sys.executable).parent / "reconcile")
    proc = subprocess.Popen(
        [reconcile, "--watch", "--interval", str(interval), *node.args()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    try:
        yield proc, stderr
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        stderr.append(err)


def test_watch_follows_config_and_interfaces(node):
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    with watching(node, interval=1) as (proc, _):
        assert wait_for(lambda: "rcl:tc@" in tc_filters(node, "cali-front0", "ingress"))
        assert "rcl:tc@" in tc_filters(node, "cali-back0", "ingress")
        node.remove("wep-front0.yaml")  # a file event
        assert wait_for(lambda: tc_filters(node, "cali-front0", "ingress") == "")
        entries_before = len(ifstate(node))
        node.sandbox.remove_pod(BACK)  # an interface goes away
        assert wait_for(lambda: len(ifstate(node)) == entries_before - 1)
        assert proc.poll() is None  # still running


def test_watch_attaches_a_new_pod_on_its_link_event(node):
    """The drift timer is far away: only the netlink event can explain a quick attach."""
    node.felix()
    late = Pod("late0", "10.65.0.30")
    node.wep(late)  # the WorkloadEndpoint exists before its interface does, as with a CNI
    with watching(node, interval=300) as (_, stderr):
        assert wait_for(lambda: "rcl:tc@" in tc_filters(node, "eth0", "ingress"))
        node.sandbox.add_pod(late)
        assert wait_for(lambda: "rcl:tc@" in tc_filters(node, "cali-late0", "ingress"), 15)
    assert "reconciling: interfaces changed" in stderr[0]
