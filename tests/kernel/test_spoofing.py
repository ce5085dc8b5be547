"""A workload sends from its own addresses alone: a packet from a pod with
another source is dropped on the pod's interface, before NAT or policy
judge it by that source; Felix's workloadSourceSpoofing: Any lets a
WorkloadEndpoint's allowSpoofedSourcePrefixes through, as in Calico."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sandbox.netns import Pod
from tests.kernel.conftest import PODS, WEP

pytestmark = pytest.mark.kernel

FRONT, BACK = PODS
SPOOFED = "10.65.0.99"

# In the receiving pod: the source of the first datagram on UDP 9999, or TIMEOUT.
RECEIVE = """\
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
s.settimeout(3)
print("ready", flush=True)
try:
    print(s.recvfrom(100)[1][0], flush=True)
except TimeoutError:
    print("TIMEOUT", flush=True)
"""

# In the sending pod: datagrams to ADDR:9999 from SOURCE, any address.
SEND = """\
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT: any source, as root
s.bind((sys.argv[1], 0))
for _ in range(5):
    s.sendto(b"x", (sys.argv[2], 9999))
    time.sleep(0.2)
"""


def heard_from(node, source: str) -> str:
    """What the back pod hears when the front pod sends from `source`."""
    return heard(node, FRONT, BACK, source)


def heard(node, sender: Pod, receiver: Pod, source: str) -> str:
    """The source `receiver` hears on UDP 9999 when `sender` sends from
    `source` (any address), or TIMEOUT."""
    sb = node.sandbox
    listening = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.pod_ns(receiver)}", sys.executable, "-c", RECEIVE],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listening.stdout is not None and listening.stdout.readline().strip() == "ready"
        sent = sb.exec(sb.pod_ns(sender), sys.executable, "-c", SEND, source, receiver.ip)
        assert sent.returncode == 0, sent.stderr
        out, _ = listening.communicate(timeout=10)
        return out.strip()
    finally:
        listening.kill()
        listening.wait()


def dropped(node, ifname: str) -> int:
    """The interface's dropped counter, as --status reads it."""
    rc, out, err = node.run("--status", "--json")
    assert rc == 0, out + err
    return int(json.loads(out)["counters"][ifname]["dropped"])


def test_a_pod_sending_as_another_address_is_dropped_on_its_interface(node):
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    out = node.apply_converged()
    assert f"map/rcl_wep_src/cali-{FRONT.name}" in out
    assert heard_from(node, FRONT.ip) == FRONT.ip
    before = dropped(node, f"cali-{FRONT.name}")
    assert heard_from(node, SPOOFED) == "TIMEOUT"
    assert dropped(node, f"cali-{FRONT.name}") >= before + 5
    assert heard_from(node, BACK.ip) == "TIMEOUT"  # another pod's address too

    # Felix lets the endpoint's own allowances through once told to
    allowance = WEP.format(name=FRONT.name, ip=FRONT.ip).replace(
        "  profiles:", '  allowSpoofedSourcePrefixes: ["10.65.0.96/28"]\n  profiles:'
    )
    node.write(f"wep-{FRONT.name}.yaml", allowance)
    rc, plan, err = node.run("--plan")
    assert "allowSpoofedSourcePrefixes ignored" in plan + err, plan + err
    node.write(
        "felix.yaml",
        (node.config / "felix.yaml").read_text() + "  workloadSourceSpoofing: Any\n",
    )
    node.apply_converged()
    assert heard_from(node, SPOOFED) == SPOOFED
    assert heard_from(node, BACK.ip) == "TIMEOUT"  # outside the allowance: still dropped
