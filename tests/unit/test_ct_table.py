"""reconciler/datapath/conntrack.py: the conntrack table's shape as the reconciler sees it.
(That the datapath hashes the same way is tested in tests/kernel/test_nat_prog.py.)"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nl
from tests.support import nat_records as nr

CLIENT, VIP, BACKEND = IPv4Address("10.1.0.1"), IPv4Address("10.96.0.10"), IPv4Address("10.2.0.1")


def entry(port: int, seen: int, svc_id: int = 7) -> tuple[bytes, bytes]:
    key = nr.CtKey(CLIENT, VIP, port, 80, nl.Proto.TCP).encode()
    value = nr.CtEntry(
        1, seen, svc_id, 0, VIP, BACKEND, 80, 8080, nl.CtType.FORWARD, nl.CtFlag.SYN
    ).encode()
    return key, value


def test_sizes_are_enough_whole_buckets():
    assert ct_table.buckets_for(512000) == 73143  # 512,001 entries
    assert ct_table.buckets_for(65536) == 9363
    assert ct_table.buckets_for(7) == 1
    assert ct_table.buckets_for(8) == 2
    assert ct_table.buckets_for(0) == 1


def _table(buckets: int, placed: dict[int, bytes]) -> bytes:
    table = bytearray(buckets * ct_table.BUCKET)
    for b, raw in placed.items():
        table[b * ct_table.BUCKET : (b + 1) * ct_table.BUCKET] = raw
    return bytes(table)


def test_migration_places_entries_in_their_buckets_freshest_first():
    buckets = 9
    entries = [entry(port, seen=port << 30) for port in range(30000, 30100)]  # more than fit
    placed = ct_table.place(entries, buckets)
    assert len(placed) <= buckets
    found = {key: (i, v) for i, _, key, v in ct_table.live(_table(buckets, placed))}
    assert 9 * 5 <= len(found) < len(entries)
    for key, (index, _) in found.items():
        assert index // ct_table.WAYS == ct_table.bucket(key, buckets)
    # a bucket that overflowed kept its most recently seen entries
    by_bucket: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in entries:
        by_bucket.setdefault(ct_table.bucket(key, buckets), []).append((key, value))
    for members in by_bucket.values():
        kept = {k for k, _ in members if k in found}
        freshest = sorted(members, key=lambda kv: -nl.CT_VAL_LAST_SEEN.unpack_from(kv[1])[0])
        assert kept == {k for k, _ in freshest[: ct_table.WAYS]}


def test_a_placed_entry_has_the_header_the_datapath_writes():
    key, value = entry(30000, seen=5 << 30)
    raw = ct_table.place([(key, value)], 1)[0]
    ver, tag, state, seen = nl.CT_WAY.unpack_from(raw, 0)
    assert (ver, tag, seen) == (2, ct_table.place_of(key, 1)[1], 5)
    assert state == 0x80 | 0x40 | int(nl.CtFlag.SYN)  # used, TCP, timeout flags
    assert raw[ct_table.HEADER :][:16] == key


def test_only_stable_live_ways_are_entries():
    key, value = entry(30000, seen=5)
    dead = bytearray(value)
    dead[nl.CT_TYPE_OFFSET] = 0
    raw = bytes(ct_table.BUCKET)
    raw = ct_table.with_entry(raw, 0, 2, key, value)  # live
    raw = ct_table.with_entry(raw, 1, 3, key, value)  # being written
    raw = ct_table.with_entry(raw, 2, 4, key, bytes(dead))  # removed
    raw = ct_table.with_entry(raw, 4, 6, key, value)  # live, in a later way
    # way 3 and the rest: never used
    got = [(i, ver, k) for i, ver, k, _ in ct_table.live(raw + bytes(ct_table.BUCKET))]
    assert got == [(0, 2, key), (4, 6, key)]


def test_the_entries_of_some_services_are_found_without_a_scan():
    buckets = 600
    entries = [entry(30000 + i, seen=i, svc_id=(7, 8, 0x07000000)[i % 3]) for i in range(300)]
    table = _table(buckets, ct_table.place(entries, buckets))
    every = list(ct_table.live(table))
    for wanted in ({7}, {8, 0x07000000}, set()):
        got = list(ct_table.live(table, wanted))
        assert got == [e for e in every if nr.CtEntry.decode(e[3]).svc_id in wanted]
    assert len(every) == 300


def test_a_legacy_slot_table_is_read_for_migration():
    key, value = entry(30000, seen=5)
    legacy = ct_table.LEGACY_SLOT
    raw = b"".join(
        [
            legacy.pack(2, *struct.unpack("=QQ", key), value),
            legacy.pack(3, *struct.unpack("=QQ", key), value),  # being written
            bytes(legacy.size),
        ]
    )
    assert list(ct_table._legacy_slots(raw)) == [(key, value)]


def test_held_counts_the_ways_that_hold_an_entry_in_every_bucket():
    buckets = 5
    placed = ct_table.place([entry(port, seen=port) for port in range(1000, 1040)], buckets)
    table = _table(buckets, placed)
    live = [index for index, *_ in ct_table.live(table)]
    assert ct_table.held(table) == len(live) > 20
    # a dead way (state 0: removed through the datapath's claim) is not held
    b, w = divmod(live[-1], ct_table.WAYS)
    dead = bytearray(table)
    dead[b * ct_table.BUCKET + w * 8 + 5] = 0  # that way's header state byte
    assert ct_table.held(bytes(dead)) == len(live) - 1
    assert ct_table.held(bytes(buckets * ct_table.BUCKET)) == 0
