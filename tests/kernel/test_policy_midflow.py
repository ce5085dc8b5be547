"""A TCP packet that opens no connection (no SYN, or SYN with ACK) and that
no flow knows is dropped at a workload's policy point, never judged nor
recorded (bpf/lib/policy.h rcl_pol_midflow, as Calico's mid-flow miss):
one smuggled or crafted packet no longer opens two-way state. Real packets
through a sandbox node: vic admits the outside host ext and att, and may
send nothing itself (so a packet from vic passes only as a reply); att may
send anywhere."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.kernel.policy_site import FELIX, sandbox_site
from tests.kernel.rcl_bcc import skip_unless_kernel
from tests.kernel.test_policy_bypass import ATT, EXT_IP, MARK, RAW_RECEIVER, VIC, Site, spawn

pytestmark = pytest.mark.kernel

POLICY = f"""\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: vic, namespace: shop}}
spec:
  selector: app == "vic"
  types: [Ingress, Egress]
  ingress:
  - {{action: Allow, source: {{nets: ["{EXT_IP}/32"]}}}}
  - {{action: Allow, source: {{selector: app == "att"}}}}
"""
ACK, FIN, RST, SYN = 0x10, 0x01, 0x04, 0x02
OPENING_NOTHING = {"ack": ACK, "fin-ack": FIN | ACK, "rst": RST, "syn-ack": SYN | ACK}


def tcp_packets(src: str, dst: str, sport: int, dport: int, flags: int) -> str:
    """Code: three marked TCP segments with these flags (no checksum: the
    raw receivers count them, the stack drops them)."""
    return f"""
seg = struct.pack("!HHIIBBHHH", {sport}, {dport}, 1000, 0, 5 << 4, {flags}, 65535, 0, 0)
send_ip(ip4({src!r}, {dst!r}, 6, seg + {MARK!r}), {dst!r})
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    skip_unless_kernel()
    tmp = tmp_path_factory.mktemp("midflow")
    with sandbox_site(tmp, (ATT, VIC), {"felix.yaml": FELIX, "policy.yaml": POLICY}) as s:
        assert "Verified" in s.reconcile("--apply")
        assert "No changes." in s.reconcile("--apply")
        yield s


@pytest.mark.parametrize("flags", OPENING_NOTHING.values(), ids=OPENING_NOTHING.keys())
def test_a_mid_flow_packet_from_an_allowed_peer_is_dropped_and_opens_nothing(site, flags):
    sport = 42000 + flags
    vic, ext = site.ns(VIC), site.sandbox.ext
    to_vic = tcp_packets(EXT_IP, VIC.ip, sport, 7000, flags)
    assert site.received(vic, RAW_RECEIVER, ["6"], [(ext, to_vic)]) == 0
    # no state: vic's answer the other way is judged by its egress (deny),
    # not passed as a reply
    back = tcp_packets(VIC.ip, EXT_IP, 7000, sport, ACK)
    assert site.received(ext, RAW_RECEIVER, ["6"], [(vic, back)]) == 0


def test_a_mid_flow_packet_from_a_pod_is_dropped(site):
    """att's egress allows everything, yet a bare ACK of no flow does not leave it."""
    ack = tcp_packets(ATT.ip, EXT_IP, 43000, 7000, ACK)
    assert site.received(site.sandbox.ext, RAW_RECEIVER, ["6"], [(site.ns(ATT), ack)]) == 0
    syn = tcp_packets(ATT.ip, EXT_IP, 43001, 7000, SYN)  # control: a SYN is judged, and passes
    assert site.received(site.sandbox.ext, RAW_RECEIVER, ["6"], [(site.ns(ATT), syn)]) == 3


SERVER = """\
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7001))
s.listen()
print("ready", flush=True)
for _ in range(2):
    c, _ = s.accept()
    c.sendall(c.recv(100).upper())
    c.close()
"""
CLIENT = f"""\
import socket
with socket.create_connection(({VIC.ip!r}, 7001), timeout=3) as c:
    c.sendall(b"hello")
    print(c.recv(100).decode())
"""


def test_a_connection_still_works_both_ways_through_the_pods_policy(site):
    """From outside and from a pod, vic's ingress admitting both."""
    server = spawn(site.ns(VIC), SERVER)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        for netns in (site.sandbox.ext, site.ns(ATT)):
            out = site.sandbox.exec(netns, sys.executable, "-c", CLIENT)
            assert (out.returncode, out.stdout.strip()) == (0, "HELLO"), out.stderr
    finally:
        server.kill()
        server.wait()
