"""Service NAT in the tc path (bpf/lib/nat.h), run with BPF_PROG_TEST_RUN on
packets built here, maps filled through reconciler.kernel.bpf."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import codecs
from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from sandbox.nat_stats import read_stat
from tests.kernel.rcl_bcc import (
    datapath_program,
    private_pin_dir,
    skip_unless_kernel,
    small_tables,
)
from tests.kernel.rcl_bcc import inet_checksum as _csum
from tests.support import conntrack_table
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel

# A minimal tc entry program: the verdict itself is the return value, so the
# test sees exactly what bpf/tc.c will get from rcl_nat_ingress().
ENTRY = """
#include "lib/nat.h"
int rcl_test_nat(struct __sk_buff *skb)
{
	return rcl_nat_ingress(skb, ETH_HLEN, 0);
}
int rcl_test_nat_inside(struct __sk_buff *skb)
{
	return rcl_nat_ingress(skb, ETH_HLEN, 1); /* from a workload interface */
}
int rcl_test_ct_kill(struct __sk_buff *skb)
{
	return rcl_ct_kill_request(skb);
}
"""
PASS, DNAT, SNAT, REJECT, DROP, HAIRPIN, MASQ = 0, 1, 2, 3, 4, 5, 7

CLIENT = IPv4Address("10.1.0.1")
VIP = IPv4Address("10.96.0.10")
BACKENDS = (IPv4Address("10.2.0.1"), IPv4Address("10.2.0.2"))
TCP, UDP = nl.Proto.TCP, nl.Proto.UDP
FIN, SYN, ACK = 0x01, 0x02, 0x10
NO_FLAGS = nl.FeFlag(0)


def packet(
    src: IPv4Address,
    dst: IPv4Address,
    sport: int,
    dport: int,
    proto: nl.Proto,
    flags: int = SYN,
    payload: bytes = b"hello",
    udp_csum: bool = True,
) -> bytes:
    if proto == TCP:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 65535, 0, 0)
        csum_at = 16
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        csum_at = 6
    l4 += payload
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, proto, len(l4))
    c = _csum(pseudo + l4)
    if proto == UDP and not udp_csum:
        c = 0
    l4 = l4[:csum_at] + struct.pack("!H", c) + l4[csum_at + 2 :]
    return ipv4_frame(src, dst, proto, l4)


def ipv4_frame(
    src: IPv4Address, dst: IPv4Address, proto: int, l4: bytes, dont_fragment: bool = True
) -> bytes:
    """An Ethernet frame of an IPv4 packet carrying l4, its header checksum set."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000 if dont_fragment else 0,
                     64, proto, 0, src.packed, dst.packed)  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + l4


@dataclass(frozen=True)
class Parsed:
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    proto: int
    ip_ok: bool
    l4_ok: bool
    l4_csum: int


def parse(frame: bytes) -> Parsed:
    ip = frame[14:34]
    proto = ip[9]
    src, dst = IPv4Address(ip[12:16]), IPv4Address(ip[16:20])
    l4 = frame[34 : 14 + struct.unpack("!H", ip[2:4])[0]]
    sport, dport = struct.unpack("!HH", l4[:4])
    csum_at = 16 if proto == TCP else 6
    l4_csum = struct.unpack("!H", l4[csum_at : csum_at + 2])[0]
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, proto, len(l4))
    l4_ok = _csum(pseudo + l4) == 0 or (proto == UDP and l4_csum == 0)
    return Parsed(src, dst, sport, dport, proto, _csum(ip) == 0, l4_ok, l4_csum)


class Dataplane:
    """The compiled test program plus its pinned maps, opened through bpfsys."""

    def __init__(self, prog_fd: int, kill_fd: int, maps_dir: Path, inside_fd: int = -1) -> None:
        self.prog_fd = prog_fd
        self.kill_fd = kill_fd
        self.inside_fd = inside_fd
        self.fds = {
            name: bpfsys.obj_get(str(maps_dir / name))
            for name in (
                nl.MAP_NAT_FE, nl.MAP_NAT_BE, nl.MAP_NAT_SRC, nl.MAP_NAT_AFF, nl.MAP_CT,
                nl.MAP_NAT_STATS,
            )
        }  # fmt: skip

    def run(self, frame: bytes, inside: bool = False) -> tuple[int, bytes]:
        """The verdict and packet out, as from a data interface (or, `inside`,
        from a workload's)."""
        res = bpfsys.prog_test_run(self.inside_fd if inside else self.prog_fd, frame)
        return res.retval, res.data_out

    def service(
        self,
        svc_id: int,
        backends: tuple[IPv4Address, ...],
        port: int = 80,
        proto: nl.Proto = TCP,
        local: int | None = None,
        flags: nl.FeFlag = NO_FLAGS,
        timeout: int = 0,
        be_port: int = 8080,
    ) -> None:
        for i, ip in enumerate(backends):
            bpfsys.map_update(
                self.fds[nl.MAP_NAT_BE],
                nr.BackendKey(svc_id, i).encode(),
                nr.Backend(ip, be_port).encode(),
            )
        # backends on this node unless told: one elsewhere is masqueraded
        # (RCL_NAT_MASQ) when the client is outside
        local_count = len(backends) if local is None else local
        fe = nr.Frontend(svc_id, len(backends), local_count, flags, timeout)
        bpfsys.map_update(
            self.fds[nl.MAP_NAT_FE], nr.FrontendKey(VIP, port, proto).encode(), fe.encode()
        )

    def source_range(self, svc_id: int, network: str, admit: bool = True) -> None:
        """Admit (or no longer) `network` to svc_id's ranged frontends."""
        key = codecs.src_key(svc_id, network)
        if admit:
            bpfsys.map_update(self.fds[nl.MAP_NAT_SRC], key, codecs.SRC_VALUE)
        else:
            assert bpfsys.map_delete(self.fds[nl.MAP_NAT_SRC], key)

    def ct(self, key: nr.CtKey) -> nr.CtEntry | None:
        found = ct_table.entries(self.fds[nl.MAP_CT]).get(key.encode())
        return nr.CtEntry.decode(found[2]) if found else None

    def ct_kill(self, key: nr.CtKey) -> bool:
        index, ver, _ = ct_table.entries(self.fds[nl.MAP_CT])[key.encode()]
        return ct_table.kill(self.kill_fd, index, ver)

    def ct_write(self, key: nr.CtKey, entry: nr.CtEntry) -> None:
        """Overwrite a live entry in place (nothing runs the program meanwhile)."""
        index, ver, _ = ct_table.entries(self.fds[nl.MAP_CT])[key.encode()]
        bucket, way = divmod(index, ct_table.WAYS)
        at = nl.U32.pack(bucket)
        raw = bpfsys.map_lookup(self.fds[nl.MAP_CT], at)
        assert isinstance(raw, bytes)
        raw = ct_table.with_entry(raw, way, ver, key.encode(), entry.encode())
        bpfsys.map_update(self.fds[nl.MAP_CT], at, raw)

    def stat(self, which: nl.NatStat) -> int:
        return read_stat(self.fds[nl.MAP_NAT_STATS], which)

    def clear(self) -> None:
        for name in (nl.MAP_NAT_FE, nl.MAP_NAT_BE, nl.MAP_NAT_SRC, nl.MAP_NAT_AFF):
            fd = self.fds[name]
            for key in bpfsys.map_keys(fd):
                bpfsys.map_delete(fd, key)
        conntrack_table.clear(self.fds[nl.MAP_CT])

    def close(self) -> None:
        for fd in self.fds.values():
            bpfsys.close(fd)


@pytest.fixture(scope="module")
def module_dp() -> Iterator[Dataplane]:
    skip_unless_kernel()
    from bcc import BPF

    with private_pin_dir() as root:
        b = datapath_program(
            root / "maps", "test_nat_entry.c", ENTRY, *small_tables(ct_buckets=586)
        )  # 4,102 conntrack entries
        try:
            fn = b.load_func(b"rcl_test_nat", BPF.SCHED_CLS)
            kill = b.load_func(b"rcl_test_ct_kill", BPF.SCHED_CLS)
            inside = b.load_func(b"rcl_test_nat_inside", BPF.SCHED_CLS)
            dp = Dataplane(fn.fd, kill.fd, root / "maps", inside.fd)
            try:
                yield dp
            finally:
                dp.close()
        finally:
            b.cleanup()


@pytest.fixture
def dp(module_dp: Dataplane) -> Iterator[Dataplane]:
    module_dp.clear()
    yield module_dp
    module_dp.clear()


@pytest.mark.parametrize("proto", [TCP, UDP])
def test_dnat_conntrack_and_reply_snat(dp: Dataplane, proto: nl.Proto) -> None:
    dp.service(1, BACKENDS, proto=proto)
    verdict, out = dp.run(packet(CLIENT, VIP, 40000, 80, proto))
    assert verdict == DNAT
    p = parse(out)
    assert p.src == CLIENT and p.sport == 40000  # the backend sees the client
    assert p.dst in BACKENDS and p.dport == 8080
    assert p.ip_ok and p.l4_ok and p.l4_csum != 0

    fwd = dp.ct(nr.CtKey(CLIENT, VIP, 40000, 80, proto))
    rev = dp.ct(nr.CtKey(p.dst, CLIENT, 8080, 40000, proto))
    assert fwd is not None and fwd.type == nl.CtType.FORWARD and fwd.be_ip == p.dst
    assert rev is not None and rev.type == nl.CtType.REVERSE
    assert (rev.orig_ip, rev.orig_port, rev.svc_id) == (VIP, 80, 1)

    # the rest of the flow sticks to the backend, through conntrack
    before = dp.stat(nl.NatStat.DNAT_CT)
    for _ in range(5):
        verdict, out = dp.run(packet(CLIENT, VIP, 40000, 80, proto, flags=ACK))
        assert verdict == DNAT and parse(out).dst == p.dst
    assert dp.stat(nl.NatStat.DNAT_CT) == before + 5

    # the reply goes back with the VIP as its source
    verdict, out = dp.run(packet(p.dst, CLIENT, 8080, 40000, proto, flags=SYN | ACK))
    assert verdict == SNAT
    r = parse(out)
    assert (r.src, r.sport, r.dst, r.dport) == (VIP, 80, CLIENT, 40000)
    assert r.ip_ok and r.l4_ok
    if proto == TCP:
        fwd = dp.ct(nr.CtKey(CLIENT, VIP, 40000, 80, proto))
        assert fwd is not None and nl.CtFlag.EST in fwd.flags


def test_conntrack_timestamps_are_clock_monotonic(dp: Dataplane) -> None:
    """Whichever way the datapath reads its clock (jiffies when the kernel's
    HZ is known, else the coarse helper), it is CLOCK_MONOTONIC to well under
    a second: timeouts hold, and entries written before an upgrade stay
    valid after it."""
    dp.service(1, BACKENDS)
    before = time.monotonic_ns()
    dp.run(packet(CLIENT, VIP, 40700, 80, TCP))
    after = time.monotonic_ns()
    entry = dp.ct(nr.CtKey(CLIENT, VIP, 40700, 80, TCP))
    assert entry is not None
    assert before - 10**9 < entry.created_ns <= after, (before, entry.created_ns, after)


def test_a_retransmitted_syn_keeps_its_flows_backend(dp: Dataplane) -> None:
    """A SYN has its backend chosen before the conntrack lookup; when the flow
    exists, the entry wins, even once the service has lost every backend."""
    dp.service(1, BACKENDS)
    first = parse(dp.run(packet(CLIENT, VIP, 40500, 80, TCP))[1]).dst
    before = (dp.stat(nl.NatStat.DNAT_CT), dp.stat(nl.NatStat.DNAT_NEW))
    for _ in range(16):  # a fresh random choice would differ half of the time
        verdict, out = dp.run(packet(CLIENT, VIP, 40500, 80, TCP))
        assert verdict == DNAT and parse(out).dst == first
    assert (dp.stat(nl.NatStat.DNAT_CT), dp.stat(nl.NatStat.DNAT_NEW)) == (
        before[0] + 16,
        before[1],
    )
    dp.service(1, ())
    verdict, out = dp.run(packet(CLIENT, VIP, 40500, 80, TCP))
    assert verdict == DNAT and parse(out).dst == first


def test_a_syn_on_a_recorded_flow_writes_its_pair_afresh(dp: Dataplane) -> None:
    """A full bucket evicts one entry, not its flow's pair. A forward entry
    left without its reverse would send every new connection on that tuple
    (a client reusing its port) to a backend whose replies are never
    rewritten: a SYN that finds the forward entry writes both again, with
    the backend it names, and starts from its own state."""
    dp.service(1, BACKENDS)
    backend = parse(dp.run(packet(CLIENT, VIP, 40600, 80, TCP))[1]).dst
    fwd_key = nr.CtKey(CLIENT, VIP, 40600, 80, TCP)
    rev_key = nr.CtKey(backend, CLIENT, 8080, 40600, TCP)
    closed = dp.ct(fwd_key)
    assert closed is not None
    dp.ct_write(fwd_key, replace(closed, flags=closed.flags | nl.CtFlag.EST | nl.CtFlag.FIN))
    assert dp.ct_kill(rev_key)
    before = (dp.stat(nl.NatStat.DNAT_CT), dp.stat(nl.NatStat.DNAT_NEW))
    verdict, out = dp.run(packet(CLIENT, VIP, 40600, 80, TCP))
    assert verdict == DNAT and parse(out).dst == backend
    assert (dp.stat(nl.NatStat.DNAT_CT), dp.stat(nl.NatStat.DNAT_NEW)) == (before[0] + 1, before[1])
    fwd, rev = dp.ct(fwd_key), dp.ct(rev_key)
    assert fwd is not None and fwd.be_ip == backend
    assert nl.CtFlag.FIN not in fwd.flags and nl.CtFlag.EST not in fwd.flags
    assert (
        rev is not None
        and rev.type == nl.CtType.REVERSE
        and (rev.orig_ip, rev.orig_port) == (VIP, 80)
    )
    verdict, out = dp.run(packet(backend, CLIENT, 8080, 40600, TCP, flags=SYN | ACK))
    assert verdict == SNAT and (parse(out).src, parse(out).sport) == (VIP, 80)


@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_direct_flow_reusing_a_port_is_not_rewritten_to_the_vip(
    dp: Dataplane, proto: nl.Proto
) -> None:
    """A client port that talked to a VIP (balanced to B) then connects straight
    to B: B's replies must reach it from B, not from the VIP."""
    dp.service(1, BACKENDS, proto=proto)
    backend = parse(dp.run(packet(CLIENT, VIP, 41000, 80, proto))[1]).dst
    direct = packet(CLIENT, backend, 41000, 8080, proto)
    assert dp.run(direct) == (PASS, direct)
    reply = packet(backend, CLIENT, 8080, 41000, proto, flags=SYN | ACK)
    assert dp.run(reply) == (PASS, reply)


def test_a_syn_ack_on_a_closed_flows_tuple_is_not_rewritten(dp: Dataplane) -> None:
    """A client port whose flow through the VIP is over (its FIN seen) now
    talks to the backend straight, and the reverse entry that should have
    been retired with the direct SYN is still there (the new programs of a
    resize hold a copy of what an old program retired): the SYN-ACK is not
    the closed flow's, and goes back from the backend itself."""
    dp.service(1, BACKENDS)
    backend = parse(dp.run(packet(CLIENT, VIP, 41050, 80, TCP))[1]).dst
    assert dp.run(packet(CLIENT, VIP, 41050, 80, TCP, flags=FIN | ACK))[0] == DNAT
    rev_key = nr.CtKey(backend, CLIENT, 8080, 41050, TCP)
    assert dp.ct(rev_key) is not None
    stale = dp.stat(nl.NatStat.STALE)
    reply = packet(backend, CLIENT, 8080, 41050, TCP, flags=SYN | ACK)
    assert dp.run(reply) == (PASS, reply)
    assert dp.ct(rev_key) is None and dp.stat(nl.NatStat.STALE) == stale + 1


def test_reply_of_a_vanished_flow_is_not_rewritten(dp: Dataplane) -> None:
    dp.service(1, BACKENDS)
    backend = parse(dp.run(packet(CLIENT, VIP, 41100, 80, TCP))[1]).dst
    assert dp.ct_kill(nr.CtKey(CLIENT, VIP, 41100, 80, TCP))
    reply = packet(backend, CLIENT, 8080, 41100, TCP, flags=SYN | ACK)
    assert dp.run(reply) == (PASS, reply)
    assert dp.ct(nr.CtKey(backend, CLIENT, 8080, 41100, TCP)) is None


def test_udp_without_checksum_stays_without(dp: Dataplane) -> None:
    dp.service(1, BACKENDS, proto=UDP)
    verdict, out = dp.run(packet(CLIENT, VIP, 40001, 80, UDP, udp_csum=False))
    assert verdict == DNAT
    p = parse(out)
    assert p.l4_csum == 0 and p.ip_ok and p.dst in BACKENDS


def test_not_a_service_passes_untouched(dp: Dataplane) -> None:
    dp.service(1, BACKENDS)
    frame = packet(CLIENT, IPv4Address("10.96.0.11"), 40000, 80, TCP)
    assert dp.run(frame) == (PASS, frame)
    frame = packet(CLIENT, VIP, 40000, 81, TCP)
    assert dp.run(frame) == (PASS, frame)
    frame = packet(CLIENT, VIP, 40000, 80, UDP)  # same VIP:port, other protocol
    assert dp.run(frame) == (PASS, frame)


def test_new_flows_spread_without_affinity(dp: Dataplane) -> None:
    dp.service(1, BACKENDS)
    seen = {parse(dp.run(packet(CLIENT, VIP, 41000 + i, 80, TCP))[1]).dst for i in range(40)}
    assert seen == set(BACKENDS)


def test_affinity_pins_a_client(dp: Dataplane) -> None:
    dp.service(1, BACKENDS, flags=nl.FeFlag.AFFINITY, timeout=300)
    seen = {parse(dp.run(packet(CLIENT, VIP, 42000 + i, 80, TCP))[1]).dst for i in range(40)}
    assert len(seen) == 1
    raw = bpfsys.map_lookup(dp.fds[nl.MAP_NAT_AFF], nr.AffinityKey(CLIENT, 1).encode())
    assert isinstance(raw, bytes) and nr.Affinity.decode(raw).ip in seen
    # another client may land anywhere but is pinned too
    other = IPv4Address("10.1.0.2")
    seen2 = {parse(dp.run(packet(other, VIP, 42000 + i, 80, TCP))[1]).dst for i in range(20)}
    assert len(seen2) == 1


def test_affinity_to_removed_backend_rebalances(dp: Dataplane) -> None:
    dp.service(1, BACKENDS, flags=nl.FeFlag.AFFINITY, timeout=300)
    first = parse(dp.run(packet(CLIENT, VIP, 43000, 80, TCP))[1]).dst
    survivor = next(ip for ip in BACKENDS if ip != first)
    dp.clear()
    dp.service(1, (survivor,), flags=nl.FeFlag.AFFINITY, timeout=300)
    assert parse(dp.run(packet(CLIENT, VIP, 43001, 80, TCP))[1]).dst == survivor


def test_zero_backends_rejects(dp: Dataplane) -> None:
    dp.service(1, ())
    before = dp.stat(nl.NatStat.REJECT_NO_BACKEND)
    for proto in (TCP, UDP):
        dp.service(1, (), proto=proto)
        verdict, _ = dp.run(packet(CLIENT, VIP, 40000, 80, proto))
        assert verdict == REJECT
    assert dp.stat(nl.NatStat.REJECT_NO_BACKEND) == before + 2
    assert dp.ct(nr.CtKey(CLIENT, VIP, 40000, 80, TCP)) is None


@pytest.mark.parametrize("proto", [TCP, UDP])
def test_a_ranged_frontend_admits_new_flows_from_its_ranges_alone(
    dp: Dataplane, proto: nl.Proto
) -> None:
    outsider = IPv4Address("10.9.0.1")
    dp.service(7, BACKENDS, proto=proto, flags=nl.FeFlag.SRC_RANGES)
    dp.source_range(7, "10.1.0.0/16")  # CLIENT's
    dp.source_range(8, "10.9.0.0/16")  # the outsider's, but another service's
    denied = dp.stat(nl.NatStat.SRC_DENIED)
    verdict, out = dp.run(packet(CLIENT, VIP, 41000, 80, proto))
    backend = parse(out).dst
    assert verdict == DNAT and backend in BACKENDS
    for flags in (SYN, ACK):  # a first packet, and one mid-stream with no flow
        frame = packet(outsider, VIP, 41000, 80, proto, flags=flags)
        verdict, out = dp.run(frame)
        assert verdict == DROP and out == frame
    assert dp.stat(nl.NatStat.SRC_DENIED) == denied + 2
    assert dp.ct(nr.CtKey(outsider, VIP, 41000, 80, proto)) is None
    # A flow it admitted keeps its backend when its range goes, as kube-proxy's
    # conntrack keeps it; a new one from there is dropped.
    dp.source_range(7, "10.1.0.0/16", admit=False)
    verdict, again = dp.run(packet(CLIENT, VIP, 41000, 80, proto, flags=ACK))
    assert verdict == DNAT and parse(again).dst == backend
    assert dp.run(packet(CLIENT, VIP, 41001, 80, proto))[0] == DROP
    # the same frontend without the flag admits everyone
    dp.service(7, BACKENDS, proto=proto)
    assert dp.run(packet(outsider, VIP, 41002, 80, proto))[0] == DNAT


def test_local_traffic_policy(dp: Dataplane) -> None:
    dp.service(1, BACKENDS, local=1, flags=nl.FeFlag.ITP_LOCAL)
    seen = {parse(dp.run(packet(CLIENT, VIP, 44000 + i, 80, TCP))[1]).dst for i in range(20)}
    assert seen == {BACKENDS[0]}  # local backends sit at ordinals [0, local_count)
    dp.clear()
    dp.service(1, BACKENDS, local=0, flags=nl.FeFlag.ETP_LOCAL)
    before = dp.stat(nl.NatStat.REJECT_NO_LOCAL)
    assert dp.run(packet(CLIENT, VIP, 44100, 80, TCP))[0] == REJECT
    assert dp.stat(nl.NatStat.REJECT_NO_LOCAL) == before + 1
    # From a pod of this node the external policy does not hold: every
    # endpoint is a choice (kube-proxy short-circuits in-cluster clients);
    # the internal one still does.
    seen = {
        parse(dp.run(packet(CLIENT, VIP, 44200 + i, 80, TCP), inside=True)[1]).dst
        for i in range(20)
    }
    assert seen == set(BACKENDS)
    dp.clear()
    dp.service(1, BACKENDS, local=0, flags=nl.FeFlag.ITP_LOCAL)
    assert dp.run(packet(CLIENT, VIP, 44300, 80, TCP), inside=True)[0] == REJECT


def test_an_outside_flow_to_a_backend_elsewhere_is_marked_for_masquerade(dp: Dataplane) -> None:
    """From outside (a data interface), a backend past the local ordinals is
    on another node: the verdict asks for masquerade, for the flow's first
    packet and its later ones, and its entries carry the mark. A local
    backend, or any from a pod of this node, is plain DNAT."""
    dp.service(1, BACKENDS, local=1)  # BACKENDS[0] here, BACKENDS[1] elsewhere
    verdicts: dict[IPv4Address, set[int]] = {b: set() for b in BACKENDS}
    for i in range(30):
        verdict, out = dp.run(packet(CLIENT, VIP, 45000 + i, 80, TCP))
        verdicts[parse(out).dst].add(verdict)
        again, _ = dp.run(packet(CLIENT, VIP, 45000 + i, 80, TCP, flags=ACK))
        verdicts[parse(out).dst].add(again)
        flags = dp.ct(nr.CtKey(CLIENT, VIP, 45000 + i, 80, TCP)).flags
        assert bool(flags & nl.CtFlag.MASQ) == (parse(out).dst == BACKENDS[1])
    assert verdicts == {BACKENDS[0]: {DNAT}, BACKENDS[1]: {MASQ}}
    inside = {dp.run(packet(CLIENT, VIP, 45100 + i, 80, TCP), inside=True)[0] for i in range(20)}
    assert inside == {DNAT}


def test_flow_keeps_its_backend_when_ordinals_shift(dp: Dataplane) -> None:
    """Another backend leaving renumbers ordinals; established flows must not move."""
    dp.service(1, BACKENDS)
    first = parse(dp.run(packet(CLIENT, VIP, 45000, 80, TCP))[1]).dst
    other = next(b for b in BACKENDS if b != first)
    # the reconciler removes `other`: `first` may now sit at a different ordinal
    dp.service(1, (first,))
    bpfsys.map_delete(dp.fds[nl.MAP_NAT_BE], nr.BackendKey(1, 1).encode())
    before = dp.stat(nl.NatStat.STALE)
    verdict, out = dp.run(packet(CLIENT, VIP, 45000, 80, TCP, flags=ACK))
    assert verdict == DNAT and parse(out).dst == first != other
    assert dp.stat(nl.NatStat.STALE) == before


def test_flow_to_removed_backend_rebalances_once_its_conntrack_is_cleaned(dp: Dataplane) -> None:
    from reconciler.apply.conntrack_gc import clean_conntrack, live_backends

    dp.service(1, BACKENDS)
    first = parse(dp.run(packet(CLIENT, VIP, 45100, 80, TCP))[1]).dst
    survivor = next(b for b in BACKENDS if b != first)
    dp.service(1, (survivor,))
    bpfsys.map_delete(dp.fds[nl.MAP_NAT_BE], nr.BackendKey(1, 1).encode())
    live = live_backends(bpfsys.map_entries(dp.fds[nl.MAP_NAT_BE]))
    removed = clean_conntrack(dp.fds[nl.MAP_CT], dp.kill_fd, live, dp.fds[nl.MAP_NAT_AFF])
    assert removed == 2  # the forward and the reverse entry of the flow
    verdict, out = dp.run(packet(CLIENT, VIP, 45100, 80, TCP, flags=ACK))
    assert verdict == DNAT and parse(out).dst == survivor


@pytest.mark.parametrize("flags", [SYN, ACK], ids=["syn", "ack"])
def test_expired_conntrack_is_a_miss(dp: Dataplane, flags: int) -> None:
    """A SYN takes the path that picks a backend before the lookup; a
    mid-flow packet the one that looks up first."""
    dp.service(1, BACKENDS)
    dp.run(packet(CLIENT, VIP, 46000, 80, TCP))
    key = nr.CtKey(CLIENT, VIP, 46000, 80, TCP)
    old = dp.ct(key)
    assert old is not None
    # age it past the SYN_SENT timeout (20 s default) and point it at a bogus backend
    bogus = IPv4Address("10.99.99.99")
    aged = replace(
        old,
        created_ns=old.created_ns - 60 * 10**9,
        last_seen_ns=old.last_seen_ns - 60 * 10**9,
        be_ip=bogus,
    )
    dp.ct_write(key, aged)
    verdict, out = dp.run(packet(CLIENT, VIP, 46000, 80, TCP, flags=flags))
    fresh = dp.ct(key)
    # a new flow, balanced afresh: not DNATed to the expired entry's backend
    assert verdict == DNAT and parse(out).dst in BACKENDS
    assert fresh is not None and fresh.be_ip in BACKENDS and fresh.created_ns >= old.created_ns


def test_runs_fast(dp: Dataplane) -> None:
    dp.service(1, BACKENDS)
    frame = packet(CLIENT, VIP, 47000, 80, TCP)
    dp.run(frame)
    # repeats reuse the rewritten skb, so this times the conntrack-hit DNAT once
    # and then the "not a service" lookups: a smoke bound, not a benchmark
    res = bpfsys.prog_test_run(dp.prog_fd, frame, repeat=1000)
    assert res.duration_ns < 5000, res.duration_ns


def test_conntrack_slots_are_where_the_reconciler_hashes_them(dp: Dataplane) -> None:
    """The datapath and reconciler/datapath/conntrack.py agree on every entry's bucket,
    so a resize can migrate entries to where the datapath will look."""
    dp.service(1, BACKENDS)
    for port in range(48000, 48040):
        dp.run(packet(CLIENT, VIP, port, 80, TCP))
    table = ct_table.entries(dp.fds[nl.MAP_CT])
    assert len(table) == 80  # a forward and a reverse entry per flow
    buckets = bpfsys.map_info(dp.fds[nl.MAP_CT]).max_entries
    view = ct_table.table(dp.fds[nl.MAP_CT])
    for key, (index, ver, value) in table.items():
        bucket, way = divmod(index, ct_table.WAYS)
        assert bucket == ct_table.bucket(key, buckets)
        assert ver and ver % 2 == 0
        # the header word (version, tag, state, coarse clock) is what the
        # reconciler writes when it places this entry itself
        word = slice(way * nl.CT_WAY.size, (way + 1) * nl.CT_WAY.size)
        raw = bytes(view[bucket * ct_table.BUCKET : (bucket + 1) * ct_table.BUCKET])
        assert raw[word] == ct_table.with_entry(bytes(ct_table.BUCKET), way, ver, key, value)[word]


def _same_bucket_ports(count: int, buckets: int) -> list[int]:
    """Client ports whose first packets' forward keys share one bucket."""
    by_bucket: dict[int, list[int]] = {}
    for port in range(20000, 60000):
        key = nr.CtKey(CLIENT, VIP, port, 80, TCP).encode()
        ports = by_bucket.setdefault(ct_table.bucket(key, buckets), [])
        ports.append(port)
        if len(ports) == count:
            return ports
    raise AssertionError("no bucket filled")


def test_a_full_bucket_gives_a_new_flow_the_least_recently_seen_slot(dp: Dataplane) -> None:
    dp.service(1, BACKENDS)
    buckets = bpfsys.map_info(dp.fds[nl.MAP_CT]).max_entries
    ports = _same_bucket_ports(ct_table.WAYS + 1, buckets)
    for port in ports[:-1]:
        dp.run(packet(CLIENT, VIP, port, 80, TCP))
    keys = [nr.CtKey(CLIENT, VIP, port, 80, TCP) for port in ports]
    assert all(dp.ct(k) is not None for k in keys[:-1])
    # one flow in the middle was last seen 10 s ago: still live (SYN_SENT: 20 s),
    # but the least recently seen (victims are judged at ~1 s resolution)
    idle = keys[3]
    old = dp.ct(idle)
    assert old is not None
    dp.ct_write(idle, replace(old, last_seen_ns=old.last_seen_ns - 10 * 10**9))
    before = dp.stat(nl.NatStat.CT_EVICTED)
    assert dp.run(packet(CLIENT, VIP, ports[-1], 80, TCP))[0] == DNAT
    assert dp.stat(nl.NatStat.CT_EVICTED) == before + 1  # a live flow lost its entry
    assert dp.ct(idle) is None and dp.ct(keys[-1]) is not None
    assert all(dp.ct(k) is not None for k in keys[:-1] if k != idle)


def test_a_removal_never_clobbers_a_slot_that_changed_hands(dp: Dataplane) -> None:
    dp.service(1, BACKENDS)
    dp.run(packet(CLIENT, VIP, 49000, 80, TCP))
    key = nr.CtKey(CLIENT, VIP, 49000, 80, TCP)
    index, ver, _ = ct_table.entries(dp.fds[nl.MAP_CT])[key.encode()]
    assert not ct_table.kill(dp.kill_fd, index, ver + 2)  # read at another version
    assert dp.ct(key) is not None
    assert ct_table.kill(dp.kill_fd, index, ver)
    assert dp.ct(key) is None
    assert not ct_table.kill(dp.kill_fd, index, ver)  # already gone
    # the slot is free again: the flow's next packet starts it afresh
    assert dp.run(packet(CLIENT, VIP, 49000, 80, TCP))[0] == DNAT
    assert dp.ct(key) is not None


RELATED = 6
ROUTER = IPv4Address("192.0.2.1")  # a router on the way: the error's sender
NOPS = b"\x01\x01\x01\x00"  # an IP option field: three NOPs and the end


def quoted(frame: bytes, options: bytes = b"") -> bytes:
    """What an ICMP error quotes of a packet: its IPv4 header (with
    `options` added) and the first 8 bytes after it."""
    ip, l4 = bytearray(frame[14:34]), frame[34:42]
    ip[0] = 0x40 | (5 + len(options) // 4)
    ip[2:4] = struct.pack("!H", struct.unpack("!H", ip[2:4])[0] + len(options))
    ip[10:12] = b"\0\0"
    header = bytes(ip) + options
    return header[:10] + struct.pack("!H", _csum(header)) + header[12:] + l4


def icmp_error(src: IPv4Address, dst: IPv4Address, quote: bytes) -> bytes:
    """An ICMP port unreachable from src to dst."""
    msg = struct.pack("!BBHI", 3, 3, 0, 0) + quote
    msg = msg[:2] + struct.pack("!H", _csum(msg)) + msg[4:]
    return ipv4_frame(src, dst, 1, msg, dont_fragment=False)


@dataclass(frozen=True)
class ParsedError:
    src: IPv4Address
    dst: IPv4Address
    quote_src: IPv4Address
    quote_dst: IPv4Address
    quote_ports: tuple[int, int]
    quote_options: bytes
    checksums_ok: bool  # the error's header, its ICMP message, the quoted header


def parse_error(frame: bytes) -> ParsedError:
    ip, msg = frame[14:34], frame[34:]
    q_len = (msg[8] & 0x0F) * 4
    q = msg[8 : 8 + q_len]
    ok = _csum(ip) == 0 and _csum(msg) == 0 and _csum(q) == 0
    return ParsedError(
        IPv4Address(ip[12:16]), IPv4Address(ip[16:20]),
        IPv4Address(q[12:16]), IPv4Address(q[16:20]),
        struct.unpack("!HH", msg[8 + q_len : 12 + q_len]), q[20:], ok,
    )  # fmt: skip


@pytest.mark.parametrize("options", [b"", NOPS], ids=["plain", "ip-options"])
@pytest.mark.parametrize("proto", [TCP, UDP], ids=["tcp", "udp"])
def test_an_icmp_error_about_a_balanced_flow_is_translated_both_ways(
    dp: Dataplane, proto: nl.Proto, options: bytes
) -> None:
    """Toward the client: an error about what the backend received becomes
    one about what the client sent, from the VIP when the backend sent it.
    Toward the backend: an error about a reply (from the VIP), sent to the
    VIP, goes to the backend about what the backend sent. Every checksum
    stays right, a quote with IP options included; the flow's entries are
    not touched."""
    dp.service(1, BACKENDS, proto=proto)
    to_backend = dp.run(packet(CLIENT, VIP, 42000, 80, proto))[1]
    backend = parse(to_backend).dst
    entries = {k: dp.ct(k) for k in (nr.CtKey(CLIENT, VIP, 42000, 80, proto),
                                     nr.CtKey(backend, CLIENT, 8080, 42000, proto))}  # fmt: skip

    for sender, outer_src in ((backend, VIP), (ROUTER, ROUTER)):
        verdict, out = dp.run(icmp_error(sender, CLIENT, quoted(to_backend, options)))
        e = parse_error(out)
        assert verdict == SNAT and e.checksums_ok, e
        assert (e.src, e.dst) == (outer_src, CLIENT)
        assert (e.quote_src, e.quote_dst, e.quote_ports) == (CLIENT, VIP, (42000, 80))
        assert e.quote_options == options

    reply = packet(VIP, CLIENT, 80, 42000, proto, flags=SYN | ACK)  # as the client got it
    before = dp.stat(nl.NatStat.DNAT_CT)
    for sender in (CLIENT, ROUTER):
        verdict, out = dp.run(icmp_error(sender, VIP, quoted(reply, options)))
        e = parse_error(out)
        assert verdict == RELATED and e.checksums_ok, e
        assert (e.src, e.dst) == (sender, backend)
        assert (e.quote_src, e.quote_dst, e.quote_ports) == (backend, CLIENT, (8080, 42000))
        assert e.quote_options == options
    assert dp.stat(nl.NatStat.DNAT_CT) == before + 2
    assert {k: dp.ct(k) for k in entries} == entries


def test_an_icmp_error_nat_has_no_flow_for_passes_untouched(dp: Dataplane) -> None:
    """No such flow; a reply's error not sent to the VIP; a hairpin flow's
    error the pod did not send to the VIP; an ICMP message that is not an
    error: each passes as it came."""
    dp.service(1, BACKENDS, proto=UDP)
    backend = parse(dp.run(packet(CLIENT, VIP, 42100, 80, UDP))[1]).dst
    reply = quoted(packet(VIP, CLIENT, 80, 42100, UDP))
    unknown = quoted(packet(VIP, CLIENT, 80, 42101, UDP))
    _, hairpin_in = hairpin_flow(dp, 42200)
    echo = icmp_error(CLIENT, VIP, reply)
    echo = echo[:34] + b"\x08" + echo[35:]  # type 8: an echo request, not an error
    for frame in (
        icmp_error(CLIENT, VIP, unknown),
        icmp_error(CLIENT, ROUTER, reply),
        icmp_error(ROUTER, VIP, quoted(hairpin_in)),
        echo,
    ):
        assert dp.run(frame) == (PASS, frame)
    assert backend in BACKENDS


def hairpin_flow(dp: Dataplane, first_port: int) -> tuple[int, bytes]:
    """A UDP flow from BACKENDS[0] to the VIP balanced to BACKENDS[0] itself
    (tried port by port from first_port): its client port, and the packet
    as delivered (from the VIP, to the backend's port)."""
    for port in range(first_port, first_port + 100):
        verdict, out = dp.run(packet(BACKENDS[0], VIP, port, 80, UDP))
        if verdict == HAIRPIN:
            return port, out
    raise AssertionError("no flow was balanced to its own client")


@pytest.mark.parametrize("options", [b"", NOPS], ids=["plain", "ip-options"])
def test_a_hairpin_flows_icmp_error_goes_back_to_the_pod_as_the_vips(
    dp: Dataplane, options: bytes
) -> None:
    """A pod reaching itself through its service: its stack reports (to the
    VIP) on what it received, as the backend (the request) or as the client
    (the reply). The error comes back from the VIP, quoting what the pod
    sent: from its own address to the VIP, on the port it used there."""
    dp.service(1, BACKENDS, proto=UDP)
    pod = BACKENDS[0]
    port, request = hairpin_flow(dp, 42400)
    assert (parse(request).src, parse(request).dst) == (VIP, pod)
    reply = packet(VIP, pod, 80, port, UDP)  # the reply as the pod, the client, got it
    for received, ports in ((request, (port, 80)), (reply, (8080, port))):
        verdict, out = dp.run(icmp_error(pod, VIP, quoted(received, options)))
        e = parse_error(out)
        assert verdict == HAIRPIN and e.checksums_ok, e
        assert (e.src, e.dst) == (VIP, pod)
        assert (e.quote_src, e.quote_dst, e.quote_ports) == (pod, VIP, ports)
        assert e.quote_options == options
