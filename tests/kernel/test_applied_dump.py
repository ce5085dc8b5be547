"""The kernel behaviour AppliedDump relies on, checked on real hash maps: an
update, insert or delete changes where the written keys appear in a batched
dump, and nothing else about it."""

from __future__ import annotations

import random
import struct

import pytest

from reconciler.kernel import bpf as bpfsys
from reconciler.plan.state import AppliedDump, RawTable
from tests.kernel.rcl_bcc import skip_unless_kernel

pytestmark = pytest.mark.kernel
BPF_MAP_TYPE_HASH = 1
ENTRY = struct.Struct("=Q")


def dump(fd: int) -> RawTable:
    raw = bpfsys.map_raw(fd)
    return RawTable(raw.keys, raw.values, raw.key_size, raw.value_size)


@pytest.mark.parametrize("seed", range(4))
def test_writes_move_only_the_written_keys_in_a_dump(seed: int) -> None:
    skip_unless_kernel()
    rng = random.Random(seed)
    fd = bpfsys.map_create(BPF_MAP_TYPE_HASH, "rcl_dump_test", 8, 8, 4096)
    try:
        table = {ENTRY.pack(rng.getrandbits(64)): ENTRY.pack(i) for i in range(2500)}
        bpfsys.map_update_many(fd, list(table.items()))
        before = dump(fd)
        keys = list(table)
        updated, deleted = rng.sample(keys, 20), rng.sample(keys, 10)
        added = [ENTRY.pack(rng.getrandbits(64)) for _ in range(10)]
        after = dict(table)
        for key in updated:
            after[key] = ENTRY.pack(rng.getrandbits(64))
            bpfsys.map_update(fd, key, after[key])
        for key in deleted:
            if key not in updated:
                del after[key]
                assert bpfsys.map_delete(fd, key)
        for key in added:
            after[key] = ENTRY.pack(7)
            bpfsys.map_update(fd, key, after[key])
        now = dump(fd)
        written = frozenset(updated) | frozenset(deleted) | frozenset(added)
        assert now.digest != before.digest
        assert AppliedDump.of(before, written).matches(now, after)
        # one more write the record does not know of: not recognised
        other = next(k for k in keys if k not in written)
        bpfsys.map_update(fd, other, ENTRY.pack(1 << 40))
        assert not AppliedDump.of(before, written).matches(dump(fd), after)
    finally:
        bpfsys.close(fd)
