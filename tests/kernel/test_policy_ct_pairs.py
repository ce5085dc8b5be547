"""Stateful policy (bpf/lib/policy.h) when conntrack splits a flow's pair of
entries: a full bucket evicts one entry, not its pair. A reply whose entry
is gone while its flow's forward entry lives passes as that flow's reply
(and gets its entry back), never judged anew by the policy of the other
direction. Run with BPF_PROG_TEST_RUN against real tables: a pod whose
egress allows everything and whose ingress denies everything, so a reply
judged anew is dropped."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nl
from reconciler.datapath.maps import policy_types as pl
from reconciler.kernel import bpf as bpfsys
from tests.kernel.rcl_bcc import (
    datapath_program,
    private_pin_dir,
    skip_unless_kernel,
    small_tables,
)
from tests.kernel.test_nat_prog import ACK, SYN, TCP, UDP, packet
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel

# cb[0]: the policy point (RCL_POL_FROM_POD 1, RCL_POL_TO_POD 0). The return
# value says what the datapath would do with the packet.
ENTRY = """
#include "lib/iface_types.h"
#include "lib/nat.h"
#define RCL_IFSTATE_SIZE 4
#include "lib/policy.h"
int rcl_test_pol(struct __sk_buff *skb)
{
	struct rcl_pol_scratch *ps = rcl_pol_scratch_get();
	if (!ps)
		return 9;
	int pol = rcl_pol_begin(skb, ETH_HLEN, skb->cb[0], ps);
	if (pol == RCL_POL_EST)
		return 1;
	if (pol == RCL_POL_NEW)
		return rcl_pol_admit(ps, 0) ? 2 : 0;
	return pol == RCL_POL_PASS ? 3 : 0;
}
"""
DROPPED, ESTABLISHED, ALLOWED_NEW = 0, 1, 2
PASSED = (ESTABLISHED, ALLOWED_NEW)
FROM_POD, TO_POD = 1, 0
EGRESS_PROG, INGRESS_PROG = 1, 2  # allow all; no verdict table (deny)
POL_FWD, POL_REV = 3, 4  # RCL_CT_POL_FWD / _REV
POL_SRC = 32  # RCL_CT_POL_SRC
BUCKETS = 64
POD, PEER = IPv4Address("10.65.0.1"), IPv4Address("10.65.0.2")
SECOND = 10**9


@dataclass(frozen=True)
class Point:
    prog: int
    ct: int
    nat_globals: int  # the conntrack timeouts (zeros: the datapath's defaults)


@pytest.fixture(scope="module")
def point() -> Iterator[Point]:
    skip_unless_kernel()
    from bcc import BPF

    with private_pin_dir() as root:
        maps = root / "maps"
        b = datapath_program(
            maps,
            "test_pol.c",
            ENTRY,
            *small_tables(ct_buckets=BUCKETS, affinity=64, backends=64),
            "-DRCL_POL_EXACT_SIZE=64",
            "-DRCL_POL_LPM_SIZE=64",
            "-DRCL_POL_VERDICT_SIZE=64",
        )
        fds: list[int] = []
        try:
            prog = b.load_func(b"rcl_test_pol", BPF.SCHED_CLS)
            names = (pl.MAP_EP, pl.MAP_VERDICT, nl.MAP_CT, nl.MAP_NAT_GLOBALS)
            fds = [bpfsys.obj_get(str(maps / m)) for m in names]
            ep, verdict, ct, nat_globals = fds
            # slot 0 (a test run's tc_classid) on lo, as a test run's skb is
            bpfsys.map_update(ep, struct.pack("=I", 0), pl.EP.pack(1, INGRESS_PROG, EGRESS_PROG))
            anything = pl.CELL_KEY.pack(EGRESS_PROG, 0xFFFFFFFF, 0xFFFF, 0xFFFF)
            bpfsys.map_update(verdict, anything, pl.VERDICT.pack(0, 1))  # RCL_POL_ALLOW
            yield Point(prog.fd, ct, nat_globals)
        finally:
            for fd in fds:
                bpfsys.close(fd)
            b.cleanup()


def _key(src: IPv4Address, dst: IPv4Address, sport: int, dport: int, proto: int) -> bytes:
    """A policy conntrack key (struct rcl_ct_key, pad[0] = RCL_CT_KEY_POLICY)."""
    return nl.CT_KEY.pack(
        src.packed, dst.packed, sport.to_bytes(2, "big"), dport.to_bytes(2, "big"), proto
    )[:13] + bytes((1, 0, 0))


def _entry(t: Point, key: bytes) -> tuple[int, int] | None:
    """(type, flags) of the live entry for key."""
    found = ct_table.entries(t.ct).get(key)
    return (found[2][nl.CT_TYPE_OFFSET], found[2][nl.CT_FLAGS_OFFSET]) if found else None


def _run(t: Point, where: int, frame: bytes) -> int:
    ctx = bytearray(68)  # struct __sk_buff up to cb[4]
    struct.pack_into("=I", ctx, 48, where)  # cb[0]
    return bpfsys.prog_test_run(t.prog, frame, ctx=bytes(ctx)).retval


def _age(t: Point, key: bytes, seconds: int) -> None:
    """Make key's entry last seen `seconds` earlier (nothing runs meanwhile)."""
    index, ver, value = ct_table.entries(t.ct)[key]
    bucket, way = divmod(index, ct_table.WAYS)
    (seen,) = nl.CT_VAL_LAST_SEEN.unpack_from(value)
    older = bytearray(value)
    nl.CT_VAL_LAST_SEEN.pack_into(older, 0, seen - seconds * SECOND)
    raw = bpfsys.map_lookup(t.ct, nl.U32.pack(bucket))
    assert isinstance(raw, bytes)
    raw = ct_table.with_entry(raw, way, ver, key, bytes(older))
    bpfsys.map_update(t.ct, nl.U32.pack(bucket), raw)


def _evict(t: Point, victim: bytes, keep: bytes, proto: int) -> None:
    """New flows from the pod whose forward entries share victim's bucket,
    until victim is gone (the bucket full, it the least recently seen)."""
    target = ct_table.bucket(victim, BUCKETS)
    assert ct_table.bucket(keep, BUCKETS) != target
    sent = 0
    for port in range(20000, 60000):
        if ct_table.bucket(_key(POD, PEER, port, 9, proto), BUCKETS) != target:
            continue
        assert _run(t, FROM_POD, packet(POD, PEER, port, 9, proto)) == ALLOWED_NEW
        sent += 1
        if _entry(t, victim) is None:
            return
        assert sent < 4 * ct_table.WAYS
    raise AssertionError("no key for the bucket")


@pytest.mark.parametrize("proto", [TCP, UDP])
def test_a_reply_whose_entry_was_evicted_passes_as_the_flows_reply(
    point: Point, proto: int
) -> None:
    sport = 40000 + proto
    fwd = _key(POD, PEER, sport, 80, proto)
    rev = _key(PEER, POD, 80, sport, proto)
    assert _run(point, FROM_POD, packet(POD, PEER, sport, 80, proto)) == ALLOWED_NEW
    assert _entry(point, rev) == (POL_REV, POL_SRC)
    reply_flags = SYN | ACK
    assert _run(point, TO_POD, packet(PEER, POD, 80, sport, proto, reply_flags)) == ESTABLISHED
    _evict(point, rev, fwd, proto)
    assert _entry(point, fwd) is not None  # the pair is split

    assert _run(point, TO_POD, packet(PEER, POD, 80, sport, proto, ACK)) in PASSED
    again = _entry(point, rev)
    assert again is not None and again[0] == POL_REV and again[1] & POL_SRC
    # the pair is whole again: the next reply passes on its own entry
    assert _run(point, TO_POD, packet(PEER, POD, 80, sport, proto, ACK)) == ESTABLISHED


def test_a_packet_of_no_live_allowed_flow_is_still_judged(point: Point) -> None:
    """The ingress policy judges (and denies) a packet from the peer that no
    flow of the pod's knows, and a reply whose flow's forward entry is gone
    too (idle past its timeout) once its own entry was evicted."""
    sport = 41000
    assert _run(point, FROM_POD, packet(POD, PEER, sport, 80, UDP)) == ALLOWED_NEW
    assert _run(point, TO_POD, packet(PEER, POD, 81, sport, UDP)) == DROPPED
    fwd = _key(POD, PEER, sport, 80, UDP)
    rev = _key(PEER, POD, 80, sport, UDP)
    _evict(point, rev, fwd, UDP)
    # idle past a UDP timeout of 5 s: an age the clock can go back by however
    # recently the machine booted (its clock may count from boot)
    zero = nl.U32.pack(0)
    bpfsys.map_update(point.nat_globals, zero, nr.NatGlobals(udp_s=5).encode())
    try:
        _age(point, fwd, 10)
        assert _run(point, TO_POD, packet(PEER, POD, 80, sport, UDP)) == DROPPED
    finally:
        bpfsys.map_update(point.nat_globals, zero, nr.NatGlobals().encode())
    assert _entry(point, rev) is None
