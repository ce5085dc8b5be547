"""The end of a conntrack handover (bpf/lib/conntrack.h rcl_ct_adopt_request,
reconciler/datapath/ct_handover.py): what the old table alone holds is
carried into the new one, but never in place of an entry seen more recently
than itself. Run with BPF_PROG_TEST_RUN against a real pair of tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath import ct_handover
from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from tests.kernel.rcl_bcc import (
    datapath_program,
    private_pin_dir,
    skip_unless_kernel,
    small_tables,
)
from tests.kernel.test_nat_prog import BACKENDS, CLIENT, DNAT, TCP, UDP, VIP, packet
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel

ENTRY = """
#include "lib/nat.h"
int rcl_test_nat(struct __sk_buff *skb)
{
	return rcl_nat_ingress(skb, ETH_HLEN, 0);
}
int rcl_test_ct_adopt(struct __sk_buff *skb)
{
	return rcl_ct_adopt_request(skb);
}
"""
NEW_BUCKETS, OLD_BUCKETS = 293, 586
SECOND = 10**9


@dataclass(frozen=True)
class Tables:
    nat: int
    adopt: int
    new: int
    old: int


@contextmanager
def open_tables() -> Iterator[Tables]:
    """A new table bound as this program's, an old one as its previous table
    (a resize under way), and a service of BACKENDS at VIP:80 (TCP) and
    VIP:53 (UDP)."""
    skip_unless_kernel()
    from bcc import BPF

    with private_pin_dir() as root:
        maps = root / "maps"
        old = bpfsys.map_create(
            2, "rcl_ct_old", 4, ct_table.BUCKET, OLD_BUCKETS, ct_table.MMAPABLE
        )  # BPF_MAP_TYPE_ARRAY
        (root / "set").mkdir()
        ct_handover.stage(root / "set", old)
        b = datapath_program(
            maps,
            "test_ct_adopt.c",
            ENTRY,
            *small_tables(ct_buckets=NEW_BUCKETS, affinity=64, backends=64),
            f'-DRCL_CT_PREV_PIN="{root / "set" / "rcl_ct_prev"}"',
        )
        try:
            nat = b.load_func(b"rcl_test_nat", BPF.SCHED_CLS)
            adopt = b.load_func(b"rcl_test_ct_adopt", BPF.SCHED_CLS)
            ct_handover.bind(root / "set", b[b"rcl_ct_prev_n"].map_fd, old)
            new = bpfsys.obj_get(str(maps / nl.MAP_CT))
            fe, be = (bpfsys.obj_get(str(maps / m)) for m in (nl.MAP_NAT_FE, nl.MAP_NAT_BE))
            try:
                for i, ip in enumerate(BACKENDS):
                    bpfsys.map_update(
                        be, nr.BackendKey(1, i).encode(), nr.Backend(ip, 8080).encode()
                    )
                # every backend on this node: plain DNAT (no masquerade)
                frontend = nr.Frontend(1, len(BACKENDS), len(BACKENDS), nl.FeFlag(0), 0)
                bpfsys.map_update(fe, nr.FrontendKey(VIP, 80, TCP).encode(), frontend.encode())
                bpfsys.map_update(fe, nr.FrontendKey(VIP, 53, UDP).encode(), frontend.encode())
                yield Tables(nat.fd, adopt.fd, new, old)
            finally:
                for fd in (new, fe, be):
                    bpfsys.close(fd)
        finally:
            b.cleanup()
            bpfsys.close(old)


@pytest.fixture(scope="module")
def tables() -> Iterator[Tables]:
    with open_tables() as t:
        yield t


def _flow_keys(count: int) -> list[nr.CtKey]:
    """Forward keys of `count` client ports that share one bucket of the new
    table."""
    by_bucket: dict[int, list[nr.CtKey]] = {}
    for port in range(20000, 60000):
        key = nr.CtKey(CLIENT, VIP, port, 80, TCP)
        keys = by_bucket.setdefault(ct_table.bucket(key.encode(), NEW_BUCKETS), [])
        keys.append(key)
        if len(keys) == count:
            return keys
    raise AssertionError("no bucket filled")


def _entry(fd: int, key: nr.CtKey) -> tuple[int, int, nr.CtEntry] | None:
    found = ct_table.entries(fd).get(key.encode())
    return (found[0], found[1], nr.CtEntry.decode(found[2])) if found else None


def _write(fd: int, index: int, ver: int, key: nr.CtKey, entry: nr.CtEntry) -> None:
    bucket, way = divmod(index, ct_table.WAYS)
    raw = bpfsys.map_lookup(fd, nl.U32.pack(bucket))
    assert isinstance(raw, bytes)
    raw = ct_table.with_entry(raw, way, ver, key.encode(), entry.encode())
    bpfsys.map_update(fd, nl.U32.pack(bucket), raw)


def _in_old(t: Tables, key: nr.CtKey, entry: nr.CtEntry) -> int:
    """Put key -> entry in the old table's first way of its bucket; its index."""
    index = ct_table.bucket(key.encode(), OLD_BUCKETS) * ct_table.WAYS
    _write(t.old, index, 2, key, entry)
    return index


def test_an_entry_is_carried_into_a_bucket_with_room(tables: Tables) -> None:
    key = nr.CtKey(CLIENT, VIP, 19000, 80, TCP)
    assert _entry(tables.new, key) is None
    assert bpfsys.prog_test_run(tables.nat, packet(CLIENT, VIP, 18999, 80, TCP)).retval == DNAT
    found = _entry(tables.new, nr.CtKey(CLIENT, VIP, 18999, 80, TCP))
    assert found is not None
    entry = replace(found[2], last_seen_ns=found[2].last_seen_ns - 5 * SECOND)
    assert ct_handover.adopt(tables.adopt, _in_old(tables, key, entry), 2)
    carried = _entry(tables.new, key)
    assert carried is not None and carried[2] == entry


def test_a_carried_entry_never_replaces_a_more_recent_one(tables: Tables) -> None:
    keys = _flow_keys(ct_table.WAYS + 1)
    residents, late = keys[:-1], keys[-1]
    for key in residents:  # a full bucket of flows seen just now
        assert (
            bpfsys.prog_test_run(tables.nat, packet(CLIENT, VIP, key.sport, 80, TCP)).retval == DNAT
        )
    found = [_entry(tables.new, key) for key in residents]
    assert all(found)
    now = max(f[2].last_seen_ns for f in found if f)
    older = replace(found[0][2], last_seen_ns=now - 10 * SECOND)  # type: ignore[index]
    index = _in_old(tables, late, older)
    assert not ct_handover.adopt(tables.adopt, index, 2)
    assert _entry(tables.new, late) is None
    assert all(_entry(tables.new, key) for key in residents)

    # one resident was last seen before it: that one makes way
    idle = residents[2]
    i, ver, entry = _entry(tables.new, idle)  # type: ignore[misc]
    _write(tables.new, i, ver, idle, replace(entry, last_seen_ns=now - 20 * SECOND))
    assert ct_handover.adopt(tables.adopt, index, 2)
    assert _entry(tables.new, late) is not None and _entry(tables.new, idle) is None
    assert all(_entry(tables.new, key) for key in residents if key != idle)


def test_the_same_flows_entry_takes_the_state_the_old_programs_recorded(tables: Tables) -> None:
    """The old programs marked the flow established (its first reply met
    them) after the new table got its copy, which has been seen since: the
    mark is added, the more recent clock kept. An earlier flow of the same
    tuple (created at another time) adds nothing."""
    key = nr.CtKey(CLIENT, VIP, 19100, 80, TCP)
    assert bpfsys.prog_test_run(tables.nat, packet(CLIENT, VIP, 19100, 80, TCP)).retval == DNAT
    found = _entry(tables.new, key)
    assert found is not None
    here = found[2]
    assert nl.CtFlag.EST not in here.flags
    earlier = replace(
        here,
        created_ns=here.created_ns - 60 * SECOND,
        last_seen_ns=here.last_seen_ns - SECOND,
        flags=here.flags | nl.CtFlag.FIN,
    )
    assert not ct_handover.adopt(tables.adopt, _in_old(tables, key, earlier), 2)
    assert _entry(tables.new, key) == found
    marked = replace(
        here, last_seen_ns=here.last_seen_ns - SECOND, flags=here.flags | nl.CtFlag.EST
    )
    assert ct_handover.adopt(tables.adopt, _in_old(tables, key, marked), 2)
    after = _entry(tables.new, key)
    assert after is not None
    assert after[2] == replace(here, flags=here.flags | nl.CtFlag.EST)
