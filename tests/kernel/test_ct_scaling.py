"""bpfMapSizeConntrackScaling: DoubleIfFull. A conntrack table too small for
its flows is full and evicts live ones; the next apply doubles it (a resize,
entries migrated), the apply after that has nothing to do, and `Disabled`
puts the configured size back. The table starts at one bucket (7 entries),
and real UDP flows between two pods fill it. A table that is far from full
is not doubled for the evictions of one crowded bucket (flows a pod aims
at it: the hash seed is public)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from reconciler.datapath import conntrack
from reconciler.datapath.maps.nat_types import CT_KEY
from reconciler.kernel.rtnetlink import entered
from tests.kernel.conftest import FELIX, PODS

FRONT, BACK = PODS


def felix(node, scaling: str = "", size: int = 7) -> None:
    extra = f"  bpfMapSizeConntrack: {size}\n"
    if scaling:
        extra += f"  bpfMapSizeConntrackScaling: {scaling}\n"
    node.write("felix.yaml", FELIX.format(enabled="true", pattern="^eth") + extra)


def policy_key(src: str, dst: str, sport: int, dport: int) -> bytes:
    """A UDP flow's struct rcl_ct_key in policy's key space (RCL_CT_KEY_POLICY)."""
    addresses = socket.inet_aton(src), socket.inet_aton(dst)
    ports = sport.to_bytes(2, "big"), dport.to_bytes(2, "big")
    packed = CT_KEY.pack(*addresses, *ports, socket.IPPROTO_UDP)
    return packed[:13] + b"\x01\x00\x00"


def crowding_ports(buckets: int, count: int) -> list[int]:
    """`count` source ports whose flows front0 -> back0:9 put both their
    policy entries (the flow's and its replies') in bucket 0."""
    ports = []
    for port in range(20000, 65000):
        keys = (policy_key(FRONT.ip, BACK.ip, port, 9), policy_key(BACK.ip, FRONT.ip, 9, port))
        if all(conntrack.bucket(k, buckets) == 0 for k in keys):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise AssertionError("no such ports")


def udp_flows(node, count: int, ports: list[int] | None = None) -> None:
    """`count` new UDP flows from front0 to back0, each from a port of its
    own (`ports`, or any)."""
    socks = []
    try:
        with entered(node.sandbox.pod_ns(FRONT)):
            for _ in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
        for s, port in zip(socks, ports or [0] * count, strict=True):
            s.bind(("0.0.0.0", port))
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
    assert "the conntrack table is full, 7 of 7 entries held (100%), and evicted" in err, err
    assert "since the last apply: asking for 14 entries" in err, err
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


def test_a_table_that_is_not_full_is_left_alone_also_when_a_bucket_overflows(node):
    felix(node, size=70)  # 10 buckets
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    assert ct_buckets(node) == 10
    udp_flows(node, 2)  # 4 entries in 70 ways: nothing evicted
    assert evicted(node) == 0
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out and "conntrack table" not in err, out + err
    # 8 flows, 16 entries, all in bucket 0: its 7 ways evict live flows
    udp_flows(node, 8, crowding_ports(10, 8))
    assert evicted(node) > 0
    held = status(node)["maps"]["rcl_ct"]["entries"]
    assert held < 0.85 * 70, held
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
    assert f"but is not full, {held} of 70 entries held" in err and "not doubled" in err, err
    _, text, _ = node.run("--status")
    assert "not full (under 85% held): DoubleIfFull does not double it for these" in text, text
    node.apply_converged()  # the record takes the count: the next plan says nothing
    assert ct_buckets(node) == 10
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out and "conntrack table" not in err, out + err
