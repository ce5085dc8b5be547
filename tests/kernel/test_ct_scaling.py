"""bpfMapSizeConntrackScaling: DoubleIfFull. A conntrack table too small for
its flows evicts live ones; the next apply doubles it (a resize, entries
migrated), the apply after that has nothing to do, and `Disabled` puts the
configured size back. The table starts at one bucket (7 entries), and real
UDP flows between two pods fill it."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from reconciler.kernel.rtnetlink import entered
from tests.kernel.conftest import FELIX, PODS

FRONT, BACK = PODS


def felix(node, scaling: str = "") -> None:
    extra = "  bpfMapSizeConntrack: 7\n"
    if scaling:
        extra += f"  bpfMapSizeConntrackScaling: {scaling}\n"
    node.write("felix.yaml", FELIX.format(enabled="true", pattern="^eth") + extra)


def udp_flows(node, count: int) -> None:
    """`count` new UDP flows from front0 to back0, each from a port of its own."""
    socks = []
    try:
        with entered(node.sandbox.pod_ns(FRONT)):
            for _ in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
        for s in socks:
            s.bind(("0.0.0.0", 0))
            s.sendto(b"x", (BACK.ip, 9))
    finally:
        for s in socks:
            s.close()


def status(node) -> dict:
    rc, out, _ = node.run("--status", "--json")
    assert rc in (0, 2), out
    return json.loads(out)


def evicted(node) -> int:
    return int(status(node)["service_nat"].get("ct_evicted", 0))


def ct_buckets(node) -> int:
    pin = Path(node.sandbox.bpffs_root) / "maps" / "rcl_ct"
    shown = subprocess.run(["bpftool", "-j", "map", "show", "pinned", str(pin)],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(json.loads(shown)["max_entries"])


def test_a_table_that_evicts_live_flows_is_doubled_and_stays(node):
    felix(node)
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    assert ct_buckets(node) == 1
    udp_flows(node, 20)  # 40 entries for 7 ways
    assert evicted(node) > 0
    # --status (and the metrics) count the table in entries: its 7 ways, all held
    assert status(node)["maps"]["rcl_ct"] == {"entries": 7, "max_entries": 7}
    _, text, _ = node.run("--status")
    assert f"Conntrack: 7 of 7 entries held (100%); {evicted(node)} live flow(s) evicted" in text
    rc, out, err = node.run("--plan")
    assert rc == 2, out + err
    assert "-/+ map/rcl_ct" in out and "max_entries: 1 -> 2" in out, out
    assert "the conntrack table evicted live flows: asking for 14 entries" in err, err
    node.apply_converged()  # (the next plan and apply: "No changes.")
    assert ct_buckets(node) == 2
    assert status(node)["maps"]["rcl_ct"]["max_entries"] == 14
    # still too small: doubled again
    udp_flows(node, 20)
    rc, out, _ = node.run("--apply")
    assert rc == 0 and "max_entries: 2 -> 4" in out, out
    assert ct_buckets(node) == 4
    rc, out, _ = node.run("--plan")
    assert rc == 0 and "No changes." in out, out
    # Disabled: the configured size, whatever scaling chose
    felix(node, "Disabled")
    rc, out, _ = node.run("--apply")
    assert rc == 0 and "max_entries: 4 -> 1" in out, out
    assert ct_buckets(node) == 1
    rc, out, _ = node.run("--plan")
    assert rc == 0 and "No changes." in out, out


def test_a_table_that_keeps_up_is_left_alone(node):
    felix(node)
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    udp_flows(node, 2)  # 4 entries in 7 ways: nothing evicted
    assert evicted(node) == 0
    rc, out, _ = node.run("--plan")
    assert rc == 0 and "No changes." in out, out
