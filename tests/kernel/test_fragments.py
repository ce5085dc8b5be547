"""IPv4 fragments through workload policy: a later fragment carries no
ports, so it passes as a packet of the flow its first fragment's ports name
(kept by the datagram's addresses, protocol and IP id where the first
passed), on that flow's conntrack entry alone; one whose first never passed
there is dropped, never judged."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys

from sandbox.netns import Pod, Sandbox
from tests.kernel.test_host_to_pod import big_datagram
from tests.kernel.test_policy import BACK, BACK_FROM_FRONT, FRONT, OTHER, pods, policy

__all__ = ["pods"]  # the fixture, shared with test_policy

# back0 takes UDP 8080 from front0 alone (back1 is denied by the tier's
# default); its egress, and every other pod, keep the profile's Allow.
UDP_FROM_FRONT = BACK_FROM_FRONT.replace("protocol: TCP", "protocol: UDP")


def test_a_big_datagram_between_pods_arrives_whole_where_policy_allows_it(pods):
    node = pods.node
    sb = node.sandbox
    policy(node, "a", UDP_FROM_FRONT)
    node.apply_converged()  # the second plan is "No changes."
    # 4000 bytes: three fragments, through front0's egress and back0's ingress policy
    assert big_datagram(pods, sb.pod_ns(FRONT)) == f"back0 {FRONT.ip}"
    assert big_datagram(pods, sb.pod_ns(FRONT)) == f"back0 {FRONT.ip}"  # a second, on the entry
    assert big_datagram(pods, sb.pod_ns(OTHER)) == "TIMEOUT"  # its first is denied
    # an echo of 4000 bytes both ways (profile-allowed pods): the request's
    # fragments pass as the flow's, and so do the reply's, as its replies
    ping = sb.exec(sb.pod_ns(FRONT), "ping", "-c1", "-W2", "-s", "4000", OTHER.ip)
    assert ping.returncode == 0, ping.stdout + ping.stderr


# Sniffs IPv4 fragments to argv[1] in its namespace (before reassembly) for
# argv[2] seconds, then prints each as "<IP id> <offset in 8-byte units>".
SNIFF = """\
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.settimeout(0.1)
dst = socket.inet_aton(sys.argv[1])
end = time.monotonic() + float(sys.argv[2])
print("ready", flush=True)
seen = []
while time.monotonic() < end:
    try:
        pkt = s.recv(2048)
    except TimeoutError:
        continue
    frag = struct.unpack("!H", pkt[6:8])[0]
    if pkt[16:20] == dst and frag & 0x3fff:
        seen.append(f"{struct.unpack('!H', pkt[4:6])[0]} {frag & 0x1fff}")
print("\\n".join(seen), flush=True)
"""

# Sends the raw IPv4 packets (hex, one per argument) as they are.
SEND = """\
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
    for pkt in sys.argv[1:]:
        b = bytes.fromhex(pkt)
        s.sendto(b, (socket.inet_ntoa(b[16:20]), 0))
"""


def fragment(src: Pod, dst: Pod, ip_id: int, first: bool) -> str:
    """One fragment of a UDP datagram to dst:8080 of 48 bytes: the first
    (its UDP header, 32 bytes, more to follow) or the last (16 bytes at
    offset 32). The kernel fills in the header's checksum."""
    if first:
        payload = struct.pack("!HHHH", 40000, 8080, 48, 0) + b"f" * 24
        frag = 0x2000
    else:
        payload, frag = b"l" * 16, 32 // 8
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ip_id, frag, 64, 17, 0,
                         socket.inet_aton(src.ip), socket.inet_aton(dst.ip))  # fmt: skip
    return (header + payload).hex()


def send(pods, src: Pod, *packets: str) -> None:
    out = pods.node.sandbox.exec(pods.node.sandbox.pod_ns(src), sys.executable, "-c", SEND,
                                 *packets)  # fmt: skip
    assert out.returncode == 0, out.stderr


def started(sb: Sandbox, pod: Pod, script: str, *args: str) -> subprocess.Popen[str]:
    """A Python script run in a pod's namespace, once it printed "ready"."""
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.pod_ns(pod)}", sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        proc.kill()
        proc.wait()
        raise AssertionError(f"{script.splitlines()[0]!r} did not start in {pod.name}")
    return proc


def test_a_later_fragment_passes_only_behind_its_own_first(pods):
    node = pods.node
    sb = node.sandbox
    policy(node, "a", UDP_FROM_FRONT)
    node.apply_converged()
    sniffer = started(sb, BACK, SNIFF, BACK.ip, "2")
    try:
        # an allowed flow: its first fragment, then its last
        send(pods, FRONT, fragment(FRONT, BACK, 1001, True), fragment(FRONT, BACK, 1001, False))
        # the same flow's ports, but a datagram whose first never came
        send(pods, FRONT, fragment(FRONT, BACK, 1002, False))
        # a flow back0's policy denies: its first is dropped, and its last
        send(pods, OTHER, fragment(OTHER, BACK, 1003, True), fragment(OTHER, BACK, 1003, False))
        out, _ = sniffer.communicate(timeout=10)
    finally:
        sniffer.kill()
        sniffer.wait()
    assert sorted(out.split("\n")[:-1]) == ["1001 0", "1001 4"], out
