"""Ways around workload policy, closed: real traffic through a sandbox node
under defaultEndpointToHostAction Drop, where vic admits only oth and att
may send only to oth.

- VLAN-tagged and non-IPv4 frames on a workload interface, either way
  (bpf/lib/policy.h rcl_wep_frame_refused): the kernel strips vid-0 tags
  after tc and delivers what was inside, unjudged.
- VXLAN and IP in IP from a workload (rcl_pol_encap_refused), unless Felix
  allows them.
- Broadcast and multicast to the node under Drop (rcl_pol_to_host).
- ICMP errors that quote a flow they do not belong to (rcl_pol_quoted_key).
- A new TCP connection on a closed flow's 4-tuple after a deny
  (rcl_pol_recycled).

One node for the module; each test sends its packets and counts what
arrives (a receiver prints "ready", then how many of its packets came)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.netns import Pod, Sandbox
from tests.kernel.conftest import KNS_SHOP, WEP
from tests.kernel.rcl_bcc import skip_unless_kernel

pytestmark = pytest.mark.kernel

ATT, VIC, OTH = Pod("att", "10.65.0.10"), Pod("vic", "10.65.0.20"), Pod("oth", "10.65.0.30")
NODE_IP, EXT_IP, SUBNET_BCAST = "192.168.50.1", "192.168.50.2", "192.168.50.255"

FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec:
  bpfEnabled: true
  bpfDataIfacePattern: "^eth"
  defaultEndpointToHostAction: Drop
  allowVXLANPacketsFromWorkloads: {vxlan}
"""
POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: vic-in, namespace: shop}}
spec:
  selector: app == "vic"
  types: [Ingress]
  ingress: [{{action: Allow, source: {{selector: app == "oth"}}}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: att-eg, namespace: shop}}
spec:
  selector: app == "att"
  types: [Egress]
  egress: [{{action: Allow, destination: {{selector: app == "{att_may_reach}"}}}}]
"""

# Packet building, run in the namespaces (struct only).
CRAFT = """\
import socket, struct, sys, time
def csum(b):
    b += b"\\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def ip4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 7, 0, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
def udp(sport, dport, data):
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data  # no checksum
def icmp_error(quoted, data):
    m = struct.pack("!BBHI", 3, 3, 0, 0) + quoted + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]
def frame(dst_mac, src_mac, tags, payload):
    et, body = 0x0800, payload
    for tpid in reversed(tags):  # vid 0 each, innermost last
        body = struct.pack("!HH", 0, et) + body
        et = tpid
    return bytes.fromhex(dst_mac) + bytes.fromhex(src_mac) + struct.pack("!H", et) + body
def send_frame(ifname, f):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    for _ in range(3):
        try:
            s.send(f)
        except OSError as e:  # ENOBUFS: tc egress dropped it
            assert e.errno == 105, e
        time.sleep(0.05)
def send_ip(pkt, dst):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for _ in range(3):
        s.sendto(pkt, (dst, 0))
        time.sleep(0.05)
"""

# Receivers: print "ready", then how many packets carrying MARK came in SECS.
UDP_RECEIVER = """\
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
if len(sys.argv) > 3:  # a multicast group, joined on one interface
    idx = socket.if_nametoindex(sys.argv[4])
    mreq = socket.inet_aton(sys.argv[3]) + socket.inet_aton("0.0.0.0") + struct.pack("=i", idx)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
"""
RAW_RECEIVER = """\
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, int(sys.argv[1]))
"""
COUNT = """\
print("ready", flush=True)
n, end = 0, time.time() + float(sys.argv[2])
while time.time() < end:
    s.settimeout(max(end - time.time(), 0.01))
    try:
        n += MARK in s.recv(2048)
    except OSError:
        break
print(n, flush=True)
"""
MARK = b"rcl-bypass-probe"


def spawn(netns: str, code: str, *argv: str) -> subprocess.Popen[str]:
    """Python `code` running in the namespace, its output piped."""
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", code, *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@dataclass
class Site:
    sandbox: Sandbox
    config: Path
    state: Path

    def reconcile(self, *mode: str) -> str:
        from reconciler.cli.main import main

        out, err = io.StringIO(), io.StringIO()
        args = self.sandbox.target_args(str(self.state))
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([*mode, *args, "--config", str(self.config), "--no-cache"])
        assert rc == 0, out.getvalue() + err.getvalue()
        return out.getvalue()

    def configure(self, vxlan: bool = False, att_may_reach: str = "oth") -> None:
        """Write the config and apply it twice: the second apply has nothing to do."""
        (self.config / "felix.yaml").write_text(FELIX.format(vxlan=str(vxlan).lower()))
        (self.config / "policy.yaml").write_text(POLICY.format(att_may_reach=att_may_reach))
        assert "Verified" in self.reconcile("--apply")
        assert "No changes." in self.reconcile("--apply")

    def ns(self, pod: Pod | None) -> str:
        return self.sandbox.pod_ns(pod) if pod else self.sandbox.node

    def mac(self, netns: str, ifname: str) -> str:
        out = subprocess.run(["ip", "-n", netns, "-j", "link", "show", ifname],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return str(json.loads(out)[0]["address"]).replace(":", "")

    def run(self, netns: str, code: str) -> None:
        done = self.sandbox.exec(netns, sys.executable, "-c", CRAFT + textwrap.dedent(code))
        assert done.returncode == 0, done.stderr

    def received(self, netns: str, receiver: str, args: list[str], send: list[tuple[str, str]],
                 secs: float = 1.0) -> int:  # fmt: skip
        """How many marked packets the receiver in `netns` gets while each
        (namespace, code) of `send` runs."""
        code = receiver + f"MARK = {MARK!r}\n" + COUNT
        proc = spawn(netns, code, args[0], str(secs), *args[1:])
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            for where, sender in send:
                self.run(where, sender)
            out, err = proc.communicate(timeout=secs + 10)
            return int(out.strip() or f"-1{err}")
        finally:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    skip_unless_kernel()
    sandbox = Sandbox()
    tmp = tmp_path_factory.mktemp("bypass")
    try:
        sandbox.up((ATT, VIC, OTH))
        s = Site(sandbox, tmp / "config", tmp / "state")
        s.config.mkdir()
        for pod in (ATT, VIC, OTH):
            (s.config / f"wep-{pod.name}.yaml").write_text(WEP.format(name=pod.name, ip=pod.ip))
        (s.config / "profile.yaml").write_text(KNS_SHOP)
        s.configure()
        yield s
    finally:
        sandbox.down()
    assert not Path(sandbox.bpffs_root).exists()


def udp_frame_from(site: Site, pod: Pod, src: str, dst: str, dport: int, tags: list[int]) -> str:
    """Code that sends, from the pod's eth0, a UDP datagram in a frame with
    these VLAN tags (vid 0 each)."""
    node_mac = site.mac(site.sandbox.node, pod.host_iface)
    pod_mac = site.mac(site.ns(pod), "eth0")
    return f"""
pkt = ip4({src!r}, {dst!r}, 17, udp(4444, {dport}, {MARK!r}))
send_frame("eth0", frame({node_mac!r}, {pod_mac!r}, {tags!r}, pkt))
"""


DOUBLE = [[0x8100, 0x8100], [0x88A8, 0x8100]]


@pytest.mark.parametrize("tags", DOUBLE, ids=["8100-8100", "88a8-8100"])
def test_a_double_tagged_frame_from_a_pod_is_dropped_not_delivered_unjudged(site, tags):
    plain = udp_frame_from(site, ATT, ATT.ip, OTH.ip, 9001, [])
    assert site.received(site.ns(OTH), UDP_RECEIVER, ["9001"], [(site.ns(ATT), plain)]) == 3
    # denied by att's egress, sent as oth (anti-spoofing; vic admits oth), and
    # allowed: each would arrive with its tags stripped if it passed tc
    cases = ((ATT.ip, EXT_IP, site.sandbox.ext), (OTH.ip, VIC.ip, site.ns(VIC)),
             (ATT.ip, OTH.ip, site.ns(OTH)))  # fmt: skip
    got = {}
    for src, dst, receiver_ns in cases:
        code = udp_frame_from(site, ATT, src, dst, 9001, tags)
        got[f"{src}->{dst}"] = site.received(receiver_ns, UDP_RECEIVER, ["9001"],
                                             [(site.ns(ATT), code)])  # fmt: skip
    assert got == dict.fromkeys(got, 0)


def test_a_double_tagged_frame_to_a_pod_is_dropped_on_its_interface(site):
    """The node's side sends oth's datagram (which vic's ingress admits) out
    of vic's interface: plain it arrives, double-tagged it does not."""
    vic_mac = site.mac(site.ns(VIC), "eth0")
    node_mac = site.mac(site.sandbox.node, VIC.host_iface)
    for tags, expected in (([], 3), (DOUBLE[0], 0)):
        code = f"""
pkt = ip4({OTH.ip!r}, {VIC.ip!r}, 17, udp(4444, 9002, {MARK!r}))
send_frame({VIC.host_iface!r}, frame({vic_mac!r}, {node_mac!r}, {tags!r}, pkt))
"""
        got = site.received(site.ns(VIC), UDP_RECEIVER, ["9002"], [(site.sandbox.node, code)])
        assert got == expected, tags


def test_vxlan_and_ipip_from_a_pod_are_dropped_unless_felix_allows_them(site):
    """att may send to oth; VXLAN (UDP 4789) and IP in IP to it are dropped
    before that policy, UDP to another port is not."""
    to_oth = [(site.ns(ATT), f"""
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in (4789, 4790):
    for _ in range(3):
        s.sendto({MARK!r}, ({OTH.ip!r}, port))
""")]  # fmt: skip
    assert site.received(site.ns(OTH), UDP_RECEIVER, ["4790"], to_oth) == 3
    assert site.received(site.ns(OTH), UDP_RECEIVER, ["4789"], to_oth) == 0
    ipip = [(site.ns(ATT), f"""
send_ip(ip4({ATT.ip!r}, {OTH.ip!r}, 4, ip4({OTH.ip!r}, {VIC.ip!r}, 17, udp(1, 9, {MARK!r}))),
        {OTH.ip!r})
""")]  # fmt: skip
    assert site.received(site.ns(OTH), RAW_RECEIVER, ["4"], ipip) == 0
    try:
        site.configure(vxlan=True)
        assert site.received(site.ns(OTH), UDP_RECEIVER, ["4789"], to_oth) == 3
        assert site.received(site.ns(OTH), RAW_RECEIVER, ["4"], ipip) == 0  # IPIP still not
    finally:
        site.configure()


def udp_to(*dsts: str) -> str:
    """Code: marked datagrams to port 5300 of each destination."""
    return f"""
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
for dst in {dsts!r}:
    for _ in range(3):
        s.sendto({MARK!r}, (dst, 5300))
"""


def test_broadcast_and_multicast_from_a_pod_meet_the_drop_to_the_host(site):
    """oth's egress allows everything; defaultEndpointToHostAction Drop keeps
    what the node would deliver to itself from it, not only its unicast.
    The node's socket listens on 5300 and has joined 239.1.2.3 on oth's
    interface; the outside host's subnet broadcast shows that it hears."""
    node, join = site.sandbox.node, ["5300", "239.1.2.3", OTH.host_iface]
    assert site.received(node, UDP_RECEIVER, join, [(site.sandbox.ext, udp_to(SUBNET_BCAST))]) == 3
    got = {
        dst: site.received(node, UDP_RECEIVER, join, [(site.ns(OTH), udp_to(dst))])
        for dst in (SUBNET_BCAST, "255.255.255.255", "239.1.2.3")
    }
    assert got == dict.fromkeys(got, 0)


def keep_flow(site: Site, pod: Pod, dst: str, sport: int, dport: int) -> None:
    site.run(site.ns(pod), f"""
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({pod.ip!r}, {sport}))
s.sendto(b"flow", ({dst!r}, {dport}))
""")


def error_from(src: str, dst: str, q_src: str, q_dst: str, q_sport: int, q_dport: int) -> str:
    """Code: a port unreachable from src to dst quoting the UDP packet
    q_src:q_sport -> q_dst:q_dport, the mark in its tail."""
    return f"""
quoted = ip4({q_src!r}, {q_dst!r}, 17, udp({q_sport}, {q_dport}, b"flow"))
send_ip(ip4({src!r}, {dst!r}, 1, icmp_error(quoted, {MARK!r} * 40)), {dst!r})
"""


def test_an_icmp_error_passes_only_back_to_the_flow_it_quotes(site):
    """vic admits only oth. Its own flow to the outside host gets its port
    unreachable; errors quoting att's allowed flow to oth, sent to vic by
    the outside host or by att, do not pass as related."""
    keep_flow(site, VIC, EXT_IP, 6000, 7000)
    keep_flow(site, ATT, OTH.ip, 5555, 7777)
    related = (site.sandbox.ext, error_from(EXT_IP, VIC.ip, VIC.ip, EXT_IP, 6000, 7000))
    assert site.received(site.ns(VIC), RAW_RECEIVER, ["1"], [related]) == 3
    forged = [(site.sandbox.ext, error_from(EXT_IP, VIC.ip, ATT.ip, OTH.ip, 5555, 7777)),
              (site.ns(ATT), error_from(ATT.ip, VIC.ip, ATT.ip, OTH.ip, 5555, 7777))]  # fmt: skip
    assert site.received(site.ns(VIC), RAW_RECEIVER, ["1"], forged) == 0


def test_an_icmp_error_from_a_pod_to_the_node_meets_the_drop(site):
    """The node sends oth a datagram (its own traffic to a pod: allowed and
    recorded); oth's port unreachable about it belongs to that flow, yet
    goes to the host, where defaultEndpointToHostAction Drop keeps it out."""
    site.run(site.sandbox.node, f"""
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({NODE_IP!r}, 7300))
s.sendto(b"flow", ({OTH.ip!r}, 7400))
""")  # fmt: skip
    error = (site.ns(OTH), error_from(OTH.ip, NODE_IP, NODE_IP, OTH.ip, 7300, 7400))
    assert site.received(site.sandbox.node, RAW_RECEIVER, ["1"], [error]) == 0


SERVER = """\
import socket
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("0.0.0.0", 8080))
l.listen(8)
print("ready", flush=True)
while True:
    c, _ = l.accept()
    c.sendall(b"hello")
    c.close()  # the server closes first: the client's port is free again at once
"""


def connect_from(site: Site, port: int) -> str:
    done = site.sandbox.exec(site.ns(ATT), sys.executable, "-c", f"""
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(({ATT.ip!r}, {port}))
s.settimeout(1.5)
try:
    s.connect(({OTH.ip!r}, 8080))
    print(s.recv(10).decode(), s.recv(10) == b"")
except OSError as e:
    print("failed", type(e).__name__)
s.close()
""")  # fmt: skip
    return done.stdout.strip()


def test_a_new_connection_on_a_closed_flows_ports_is_judged_again(site):
    server = spawn(site.ns(OTH), SERVER)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        assert connect_from(site, 41000) == "hello True"  # closed by FIN both ways
        site.configure(att_may_reach="nobody")
        assert connect_from(site, 41001).startswith("failed")  # a fresh port: judged
        assert connect_from(site, 41000).startswith("failed")  # the closed flow's port too
    finally:
        server.kill()
        server.wait()
        site.configure()


def echo_request(src: str, dst: str, ident: int, data: bytes) -> str:
    """Code: three ICMP echo requests with this id."""
    return f"""
m = struct.pack("!BBHHH", 8, 0, 0, {ident}, 1) + {data!r}
m = m[:2] + struct.pack("!H", csum(m)) + m[4:]
send_ip(ip4({src!r}, {dst!r}, 1, m), {dst!r})
"""


def test_an_echo_request_the_other_way_is_not_a_reply(site):
    """vic pings att (allowed both ways) with id 0x1234. att's requests to
    vic (whose ingress admits only oth), with that id too, are judged as
    new flows, not passed as replies of vic's ping."""
    site.run(site.ns(VIC), echo_request(VIC.ip, ATT.ip, 0x1234, b"ping"))
    requests = [(site.ns(ATT), echo_request(ATT.ip, VIC.ip, 0x1234, MARK))]
    assert site.received(site.ns(VIC), RAW_RECEIVER, ["1"], requests) == 0
