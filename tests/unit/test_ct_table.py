"""reconciler/ct_table.py: the conntrack table's shape as the reconciler sees it.
(That the datapath hashes the same way is tested in tests/kernel/test_nat_prog.py.)"""

from __future__ import annotations

from ipaddress import IPv4Address

from reconciler import ct_table
from reconciler import nat_layout as nl

CLIENT, VIP, BACKEND = IPv4Address("10.1.0.1"), IPv4Address("10.96.0.10"), IPv4Address("10.2.0.1")


def entry(port: int, seen: int, svc_id: int = 7) -> tuple[bytes, bytes]:
    key = nl.CtKey(CLIENT, VIP, port, 80, nl.Proto.TCP).encode()
    value = nl.CtEntry(
        1, seen, svc_id, 0, VIP, BACKEND, 80, 8080, nl.CtType.FORWARD, nl.CtFlag.SYN
    ).encode()
    return key, value


def test_sizes_are_whole_buckets_in_a_power_of_two():
    assert ct_table.slots_for(512000) == 524288
    assert ct_table.slots_for(65536) == 65536
    assert ct_table.slots_for(1) == ct_table.WAYS
    assert ct_table.slots_for(5) == 8


def test_migration_places_entries_in_their_buckets_freshest_first():
    slots = 64
    entries = [entry(port, seen=port) for port in range(30000, 30100)]  # more than fit
    placed = ct_table.place(entries, slots)
    assert len(placed) <= slots
    table = bytearray(slots * nl.CT_SLOT.size)
    for index, slot in placed.items():
        table[index * nl.CT_SLOT.size : (index + 1) * nl.CT_SLOT.size] = slot
    found = {key: (index, value) for index, _, key, value in ct_table.live(bytes(table))}
    assert len(found) == len(placed)
    for key, (index, _) in found.items():
        assert index // ct_table.WAYS == ct_table.bucket(key, slots)
    # a bucket that overflowed kept its most recently seen entries
    by_bucket: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in entries:
        by_bucket.setdefault(ct_table.bucket(key, slots), []).append((key, value))
    for members in by_bucket.values():
        kept = {k for k, _ in members if k in found}
        freshest = sorted(members, key=lambda kv: -nl.CT_VAL_LAST_SEEN.unpack_from(kv[1])[0])
        assert kept == {k for k, _ in freshest[: ct_table.WAYS]}


def test_only_stable_live_slots_are_entries():
    key, value = entry(30000, seen=5)
    dead = bytearray(value)
    dead[nl.CT_TYPE_OFFSET] = 0
    table = b"".join(
        [
            ct_table.slot_bytes(2, key, value),  # live
            ct_table.slot_bytes(3, key, value),  # being written
            ct_table.slot_bytes(4, key, bytes(dead)),  # removed
            bytes(nl.CT_SLOT.size),  # never used
        ]
    )
    assert [(i, ver, k) for i, ver, k, _ in ct_table.live(table)] == [(0, 2, key)]


def test_the_entries_of_some_services_are_found_without_a_scan():
    slots = 4096
    entries = [entry(30000 + i, seen=i, svc_id=(7, 8, 0x07000000)[i % 3]) for i in range(300)]
    table = bytearray(slots * nl.CT_SLOT.size)
    for index, slot in ct_table.place(entries, slots).items():
        table[index * nl.CT_SLOT.size : (index + 1) * nl.CT_SLOT.size] = slot
    every = list(ct_table.live(bytes(table)))
    for wanted in ({7}, {8, 0x07000000}, set()):
        got = list(ct_table.live(bytes(table), wanted))
        assert got == [e for e in every if nl.CtEntry.decode(e[3]).svc_id in wanted]
    assert len(every) == 300
