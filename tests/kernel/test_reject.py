"""Services without a usable backend are rejected, never blackholed.

bpf/lib/reject.h turns the packet into an ICMP port unreachable back to the
sender (kube-proxy's REJECT for TCP and UDP alike). Checked two ways: the real
tc ingress program under BPF_PROG_TEST_RUN (frames parsed and checksums
verified here), and real sockets in a sandbox node reconciled by the CLI.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator
from ctypes import c_int
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import iface_types as il
from reconciler.datapath.maps import nat_types as nl
from reconciler.datapath.maps.codecs import managed_interface
from reconciler.datapath.programs import JUMP_TABLES
from reconciler.kernel import bpf as bpfsys
from sandbox.nat_stats import pinned_stat, read_stat
from tests.kernel.conftest import PODS
from tests.kernel.rcl_bcc import (
    BPF_DIR,
    cflags,
    flatten,
    private_pin_dir,
    skip_unless_kernel,
    small_tables,
)
from tests.kernel.rcl_bcc import inet_checksum as _csum
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel

TC_ACT_SHOT, TC_ACT_REDIRECT, TC_ACT_UNSPEC = 2, 7, 0xFFFFFFFF  # retval is a __u32
IF_WORKLOAD, IF_L3 = 1, 4
ETH_HLEN = 14
TCP, UDP, ICMP = nl.Proto.TCP, nl.Proto.UDP, 1
CLIENT = IPv4Address("10.1.0.1")
VIP = IPv4Address("10.96.0.10")
BACKEND = IPv4Address("10.2.0.1")
CLIENT_MAC = bytes.fromhex("020000000001")
NODE_MAC = bytes.fromhex("020000000002")
SIZES = (*small_tables(), "-DRCL_IFSTATE_SIZE=16")

# rcl_reject() alone, for the packets NAT never rejects (ICMP, fragments,
# ...), and as masquerade answers a packet too big for the way on.
TOO_BIG_MTU = 1200
REJECT_ENTRY = f"""
#include "lib/reject.h"
int rcl_test_reject(struct __sk_buff *skb)
{{
	return rcl_reject(skb, ETH_HLEN, 0);
}}
int rcl_test_too_big(struct __sk_buff *skb)
{{
	return rcl_reject(skb, ETH_HLEN, {TOO_BIG_MTU});
}}
"""


def ip_packet(
    src: IPv4Address,
    dst: IPv4Address,
    proto: int,
    l4: bytes,
    *,
    options: bytes = b"",
    frag: int = 0x4000,
    tot_len: int | None = None,
) -> bytes:
    ihl = 5 + len(options) // 4
    length = 4 * ihl + len(l4) if tot_len is None else tot_len
    ip = (
        struct.pack(
            "!BBHHHBBH4s4s", 0x40 | ihl, 0, length, 7, frag, 64, proto, 0, src.packed, dst.packed
        )
        + options
    )
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return ip + l4


def l4(
    proto: int,
    src: IPv4Address,
    dst: IPv4Address,
    sport: int,
    dport: int,
    payload: bytes = b"hello",
) -> bytes:
    if proto == TCP:
        seg = struct.pack("!HHIIBBHHH", sport, dport, 123456789, 0, 5 << 4, 0x02, 65535, 0, 0)
        at = 16
    else:
        seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        at = 6
    seg += payload
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, proto, len(seg))
    return seg[:at] + struct.pack("!H", _csum(pseudo + seg)) + seg[at + 2 :]


def icmp(type_: int, code: int = 0, body: bytes = b"\0\0\0\0abcdefgh") -> bytes:
    msg = struct.pack("!BBH", type_, code, 0) + body
    return msg[:2] + struct.pack("!H", _csum(msg)) + msg[4:]


def frame(ip: bytes, dst_mac: bytes = NODE_MAC) -> bytes:
    return dst_mac + CLIENT_MAC + b"\x08\x00" + ip


def l4_packet(
    proto: int,
    src: IPv4Address = CLIENT,
    dst: IPv4Address = VIP,
    sport: int = 40000,
    dport: int = 80,
    payload: bytes = b"hello",
    **kw,
) -> bytes:
    return ip_packet(src, dst, proto, l4(proto, src, dst, sport, dport, payload), **kw)


def assert_unreachable(
    out: bytes, original: bytes, l3_off: int = ETH_HLEN, mtu: int = 0
) -> None:
    """`out` is a well-formed ICMP port unreachable answering `original`
    (with `mtu`: fragmentation needed, naming that MTU)."""
    orig_ip = original[l3_off:]
    ihl = (orig_ip[0] & 0xF) * 4
    quote = orig_ip[: ihl + 8]
    assert len(out) == l3_off + 20 + 8 + len(quote)  # exactly: no stale tail
    if l3_off:
        assert out[:6] == original[6:12] and out[6:12] == original[:6]  # MACs swapped
        assert out[12:14] == b"\x08\x00"
    ip, msg = out[l3_off : l3_off + 20], out[l3_off + 20 :]
    ver_ihl, _tos, tot_len, _id, _frag, ttl, proto, _c, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", ip
    )
    assert ver_ihl == 0x45 and tot_len == 20 + len(msg)
    assert (ttl, proto) == (64, ICMP)
    assert IPv4Address(src) == IPv4Address(orig_ip[16:20])  # from the VIP ...
    assert IPv4Address(dst) == IPv4Address(orig_ip[12:16])  # ... back to the sender
    assert _csum(ip) == 0, "IPv4 header checksum"
    type_, code, _c, unused, next_hop_mtu = struct.unpack("!BBHHH", msg[:8])
    assert (type_, code, unused, next_hop_mtu) == (3, 4 if mtu else 3, 0, mtu)
    assert _csum(msg) == 0, "ICMP checksum"
    assert msg[8:] == quote  # the original header (options too) + 8 payload bytes


@dataclass
class TcProg:
    """bpf/tc.c's rcl_tc_ingress with its pinned maps, on test_run's device (lo)."""

    prog_fd: int
    fds: dict[str, int]
    ifindex: int

    def run(self, data: bytes) -> tuple[int, bytes]:
        res = bpfsys.prog_test_run(self.prog_fd, data)
        return res.retval, res.data_out

    def iface(self, flags: int, ifindex: int | None = None) -> None:
        """What the reconciler writes for a managed interface: its state with
        zeroed counters, in slot 0, which a test run's packet names (it has
        no classid). The datapath never creates entries itself."""
        for name, key, attrs in managed_interface(ifindex or self.ifindex, flags):
            bpfsys.map_update(self.fds[name], *entries.encode(name, key, attrs))

    def frontend(
        self,
        vip: IPv4Address,
        port: int,
        proto: nl.Proto,
        fe: nr.Frontend,
        backends: tuple[IPv4Address, ...] = (),
    ) -> None:
        for i, ip in enumerate(backends):
            bpfsys.map_update(
                self.fds[nl.MAP_NAT_BE],
                nr.BackendKey(fe.svc_id, i).encode(),
                nr.Backend(ip, 8080).encode(),
            )
        bpfsys.map_update(
            self.fds[nl.MAP_NAT_FE], nr.FrontendKey(vip, port, proto).encode(), fe.encode()
        )

    def counters(self) -> il.Counters:
        raw = bpfsys.map_lookup(self.fds["rcl_ifstate"], il.U32.pack(0))  # slot 0
        assert isinstance(raw, list)  # the interface's entry: flags and per-CPU counters
        return il.Counters.sum_per_cpu(raw)

    def stat(self, which: nl.NatStat) -> int:
        return read_stat(self.fds[nl.MAP_NAT_STATS], which)


@pytest.fixture(scope="module")
def tc() -> Iterator[TcProg]:
    skip_unless_kernel()
    from bcc import BPF

    with private_pin_dir() as root:
        b = BPF(text=flatten(BPF_DIR / "tc.c").encode(), cflags=cflags(root / "maps", *SIZES))
        fds: dict[str, int] = {}
        try:
            fn = b.load_func(b"rcl_tc_ingress", BPF.SCHED_CLS)
            # the ICMP error is built by a tail-called program, as the loader wires it
            table, jumps = JUMP_TABLES["tc"]
            reject = b.load_func(b"rcl_tc_reject", BPF.SCHED_CLS)
            b[table.encode()][c_int(jumps.index("rcl_tc_reject"))] = c_int(reject.fd)
            for name in (
                "rcl_ifstate",
                nl.MAP_NAT_FE,
                nl.MAP_NAT_BE,
                nl.MAP_CT,
                nl.MAP_NAT_STATS,
            ):
                fds[name] = bpfsys.obj_get(str(root / "maps" / name))
            # BPF_PROG_TEST_RUN runs the program on this namespace's loopback device
            ifindex = int(Path("/sys/class/net/lo/ifindex").read_text())
            prog = TcProg(fn.fd, fds, ifindex)
            prog.iface(IF_WORKLOAD)
            prog.frontend(VIP, 80, TCP, nr.Frontend(1, 0))
            prog.frontend(VIP, 53, UDP, nr.Frontend(2, 0))
            prog.frontend(VIP, 443, TCP, nr.Frontend(3, 1, 0, nl.FeFlag.ITP_LOCAL), (BACKEND,))
            prog.frontend(VIP, 8000, TCP, nr.Frontend(4, 1), (BACKEND,))
            yield prog
        finally:
            for fd in fds.values():
                bpfsys.close(fd)
            b.cleanup()


@pytest.fixture(scope="module")
def reject_entries() -> Iterator[dict[str, int]]:
    skip_unless_kernel()
    from bcc import BPF

    with private_pin_dir() as root:
        text = flatten(BPF_DIR / "test_reject_entry.c", text=REJECT_ENTRY)
        b = BPF(text=text.encode(), cflags=cflags(root / "maps"))
        try:
            yield {
                name: b.load_func(name.encode(), BPF.SCHED_CLS).fd
                for name in ("rcl_test_reject", "rcl_test_too_big")
            }
        finally:
            b.cleanup()


@pytest.fixture
def reject_only(reject_entries: dict[str, int]) -> int:
    return reject_entries["rcl_test_reject"]


@pytest.mark.parametrize("proto,port", [(TCP, 80), (UDP, 53)], ids=["tcp-syn", "udp"])
def test_no_backend_gets_port_unreachable(tc: TcProg, proto: nl.Proto, port: int) -> None:
    before, rejects = tc.counters(), tc.stat(nl.NatStat.REJECT_NO_BACKEND)
    pkt = frame(l4_packet(proto, dport=port))
    verdict, out = tc.run(pkt)
    assert verdict == TC_ACT_REDIRECT  # back out of the interface it came in on
    assert_unreachable(out, pkt)
    after = tc.counters()
    assert after.dropped == before.dropped + 1 and after.nat == before.nat
    assert tc.stat(nl.NatStat.REJECT_NO_BACKEND) == rejects + 1


def test_port_unreachable_is_rate_limited_like_the_kernels_own(tc: TcProg) -> None:
    """A burst of 50 errors, then about one per millisecond: a flood of
    connection attempts to a dead service is answered at that rate, and the
    rest is dropped and counted."""
    import os
    import time

    pkt = frame(l4_packet(TCP, dport=80))
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one CPU: one bucket
    try:
        time.sleep(0.1)  # whatever earlier tests spent has come back
        limited = tc.stat(nl.NatStat.REJECT_LIMITED)
        start = time.monotonic()
        answered = sum(tc.run(pkt)[0] == TC_ACT_REDIRECT for _ in range(400))
        elapsed_ms = (time.monotonic() - start) * 1000
        dropped = tc.stat(nl.NatStat.REJECT_LIMITED) - limited
    finally:
        os.sched_setaffinity(0, cpus)
        time.sleep(0.1)  # leave a full bucket to the tests after this one
    assert answered + dropped == 400
    assert 50 <= answered <= 50 + elapsed_ms + 2, (answered, elapsed_ms)
    assert dropped > 0


def test_no_local_backend_gets_port_unreachable(tc: TcProg) -> None:
    pkt = frame(l4_packet(TCP, dport=443))
    verdict, out = tc.run(pkt)
    assert verdict == TC_ACT_REDIRECT
    assert_unreachable(out, pkt)


def test_long_and_short_packets_are_resized_exactly(tc: TcProg) -> None:
    for payload in (b"", b"x" * 1400):
        pkt = frame(l4_packet(UDP, dport=53, payload=payload))
        verdict, out = tc.run(pkt)
        assert verdict == TC_ACT_REDIRECT
        assert_unreachable(out, pkt)
    # IP options are quoted whole, as part of the original header
    pkt = frame(l4_packet(TCP, options=b"\x01\x01\x01\x00"))
    verdict, out = tc.run(pkt)
    assert verdict == TC_ACT_REDIRECT
    assert_unreachable(out, pkt)
    assert len(out) == ETH_HLEN + 20 + 8 + 24 + 8


def test_services_with_backends_and_other_traffic_are_untouched(tc: TcProg) -> None:
    verdict, out = tc.run(frame(l4_packet(TCP, dport=8000)))
    assert verdict == TC_ACT_UNSPEC and IPv4Address(out[30:34]) == BACKEND
    pkt = frame(l4_packet(TCP, dst=IPv4Address("10.96.0.11")))
    assert tc.run(pkt) == (TC_ACT_UNSPEC, pkt)


def test_l3_device(tc: TcProg) -> None:
    """No Ethernet header (l3_off 0). test_run still parses the data as Ethernet,
    so a source of 8.0.x.x makes bytes 12-13 read as ETH_P_IP."""
    tc.iface(IF_L3)
    try:
        src = IPv4Address("8.0.0.1")
        pkt = l4_packet(TCP, src=src)
        verdict, out = tc.run(pkt)
        assert verdict == TC_ACT_REDIRECT
        assert_unreachable(out, pkt, l3_off=0)
    finally:
        tc.iface(IF_WORKLOAD)


def test_a_slot_naming_another_interface_leaves_the_packet_alone(tc: TcProg) -> None:
    """The program finds its interface by the filter's classid (slot 0 here);
    a slot that names another ifindex (a filter left behind, a slot handed on)
    is not this interface's: no NAT, no reject, nothing counted."""
    pkt = frame(l4_packet(TCP))  # a service without backends: rejected when ours
    assert tc.run(pkt)[0] == TC_ACT_REDIRECT
    tc.iface(IF_WORKLOAD, ifindex=tc.ifindex + 1000)
    try:
        before = tc.counters()
        assert tc.run(pkt) == (TC_ACT_UNSPEC, pkt)
        assert tc.counters() == before
    finally:
        tc.iface(IF_WORKLOAD)
    assert tc.run(pkt)[0] == TC_ACT_REDIRECT


@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_fragmentation_needed_names_the_mtu_and_quotes_the_packet(
    reject_entries: dict[str, int], proto: nl.Proto
) -> None:
    """A full-sized packet becomes an error of the error's own size."""
    pkt = frame(l4_packet(proto, payload=b"z" * 1400))
    res = bpfsys.prog_test_run(reject_entries["rcl_test_too_big"], pkt)
    assert res.retval == TC_ACT_REDIRECT
    assert_unreachable(res.data_out, pkt, mtu=TOO_BIG_MTU)


def test_icmp_echo_request_gets_an_answer(reject_only: int) -> None:
    pkt = frame(ip_packet(CLIENT, VIP, ICMP, icmp(8)))
    res = bpfsys.prog_test_run(reject_only, pkt)
    assert res.retval == TC_ACT_REDIRECT
    assert_unreachable(res.data_out, pkt)


def test_first_fragment_gets_an_answer(reject_only: int) -> None:
    pkt = frame(l4_packet(UDP, dport=53, payload=b"y" * 64, frag=0x2000))  # MF, offset 0
    res = bpfsys.prog_test_run(reject_only, pkt)
    assert res.retval == TC_ACT_REDIRECT
    assert_unreachable(res.data_out, pkt)


BROADCAST = IPv4Address("255.255.255.255")
NO_REPLY = {
    "icmp-error": frame(ip_packet(CLIENT, VIP, ICMP, icmp(3, 3))),
    "icmp-echo-reply": frame(ip_packet(CLIENT, VIP, ICMP, icmp(0))),
    "icmp-time-exceeded": frame(ip_packet(CLIENT, VIP, ICMP, icmp(11))),
    "non-first-fragment": frame(l4_packet(UDP, frag=0x0001)),
    "last-fragment": frame(l4_packet(UDP, frag=0x0010)),
    "ethernet-broadcast": frame(l4_packet(UDP), dst_mac=b"\xff" * 6),
    "ethernet-multicast": frame(l4_packet(UDP), dst_mac=bytes.fromhex("01005e000001")),
    "ip-broadcast-dst": frame(l4_packet(UDP, dst=BROADCAST)),
    "ip-multicast-dst": frame(l4_packet(UDP, dst=IPv4Address("239.1.2.3"))),
    "ip-broadcast-src": frame(l4_packet(UDP, src=BROADCAST)),
    "ip-zero-src": frame(l4_packet(UDP, src=IPv4Address("0.0.0.0"))),
    "ip-loopback-src": frame(l4_packet(UDP, src=IPv4Address("127.0.0.1"))),
    "truncated": frame(ip_packet(CLIENT, VIP, UDP, b"\x9c\x40\x00\x35")),
    "short-tot-len": frame(l4_packet(UDP, tot_len=24)),
    "not-ipv4": bytes.fromhex("020000000002020000000001") + b"\x86\xdd" + bytes(60),
}


@pytest.mark.parametrize("pkt", NO_REPLY.values(), ids=NO_REPLY.keys())
def test_never_answers(reject_only: int, pkt: bytes) -> None:
    res = bpfsys.prog_test_run(reject_only, pkt)
    assert res.retval == TC_ACT_SHOT


# --- end to end: real sockets in a sandbox node -----------------------------

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: nobody
  namespace: shop
spec:
  type: ClusterIP
  clusterIP: {vip}
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 8080
  - name: dns
    protocol: UDP
    port: 53
    targetPort: 53
"""
E2E_VIP = "10.96.0.60"

# Prints the errno name (or TIMEOUT/OK) and the seconds it took.
CLIENT_CODE = """
import errno, socket, sys, time
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(3)
t0 = time.monotonic()
try:
    s.connect((host, port))
    if proto == "udp":
        s.send(b"anyone?")
        s.recv(100)
    result = "OK"
except socket.timeout:
    result = "TIMEOUT"
except OSError as exc:
    result = errno.errorcode.get(exc.errno or 0, str(exc))
print(result, round(time.monotonic() - t0, 3))
"""


def _attempt(node, netns: str, proto: str, port: int) -> tuple[str, float]:
    done = node.sandbox.exec(
        netns, sys.executable, "-c", CLIENT_CODE, proto, E2E_VIP, str(port), timeout=15
    )
    assert done.returncode == 0, done.stderr
    result, took = done.stdout.split()
    return result, float(took)


def _rejected(node) -> int:
    return pinned_stat(node.sandbox.bpffs_root, nl.NatStat.REJECT_NO_BACKEND)


# A client pod whose ingress policy admits nothing: the port unreachable is
# the datapath's own answer to its packet, not a packet its policy judges.
ISOLATED = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: isolated, namespace: shop}}
spec: {{selector: app == "{name}", types: [Ingress]}}
"""


@pytest.mark.parametrize("where", ["pod", "outside", "pod under ingress policy"])
def test_service_without_endpoints_refuses_fast(node, where: str) -> None:
    """A pod (via its veth) and an outside host (via the data interface) that talk
    to a ClusterIP with no EndpointSlice are refused at once, not left to time
    out (without the dataplane both time out: nothing answers for the VIP).
    The clients run outside the node's cgroup, so tc (not connect-time LB) acts."""
    client = PODS[0]
    node.felix()
    node.wep(client)
    if where == "pod under ingress policy":
        node.write("isolated.yaml", ISOLATED.format(name=client.name))
    node.write("service.yaml", SERVICE.format(vip=E2E_VIP))
    node.apply_converged()
    sb = node.sandbox
    netns = sb.ext if where == "outside" else sb.pod_ns(client)
    before = _rejected(node)
    for proto, port in (("tcp", 80), ("udp", 53)):
        # TCP: the SYN's port unreachable aborts connect(); UDP: the error is
        # queued on the connected socket and raised by recv()
        result, took = _attempt(node, netns, proto, port)
        assert (result, proto) == ("ECONNREFUSED", proto), took
        assert took < 1.0, (proto, result, took)
    assert _rejected(node) == before + 2
