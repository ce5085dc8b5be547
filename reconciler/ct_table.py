"""The conntrack table as the reconciler sees it (bpf/lib/conntrack.h).

The datapath keeps conntrack in an array of 64-byte slots, RCL_CT_WAYS to a
bucket, with a version word per slot. This module mirrors what the reconciler
needs of that: how many slots a configured size becomes, which bucket a key
hashes to (to place entries when a resize migrates them), which slots hold
live entries, and how to remove one safely (through the datapath's own claim,
run in the kernel by the rcl_ct_kill_slot program).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable, Iterator

from reconciler import bpfsys
from reconciler import nat_layout as nat

MAP = nat.MAP_CT
MMAPABLE = 1 << 10  # BPF_F_MMAPABLE
WAYS = 4  # RCL_CT_WAYS
SEED = 0x52434C2D43540001  # RCL_CT_SEED
_MASK64 = (1 << 64) - 1
_WORDS = struct.Struct("=QQ")
_SVC_WORD = (24 + 16) // 4  # rcl_ct_slot.val.svc_id, in 32-bit words
_KILL = struct.Struct("=14sIIQ")  # an Ethernet header's room, then struct rcl_ct_kill_req
KILL_PROGRAM = "rcl_ct_kill_slot"


def slots_for(requested: int) -> int:
    """bpfMapSizeConntrack as a table size: whole buckets, a power of two."""
    size = WAYS
    while size < requested:
        size *= 2
    return size


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def bucket(key: bytes, slots: int) -> int:
    """rcl_ct_bucket() of a 16-byte struct rcl_ct_key."""
    a, b = _WORDS.unpack(key)
    return _fmix64(_fmix64(a ^ SEED) ^ b) & (slots // WAYS - 1)


def slot_bytes(ver: int, key: bytes, value: bytes) -> bytes:
    return nat.CT_SLOT.pack(ver, *_WORDS.unpack(key), value)


def live(
    values: bytes | memoryview, services: Iterable[int] | None = None
) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(index, version, key, value) of every stable slot holding an entry,
    from the table's values read in index order; with `services`, only the
    entries of those service ids (found by searching the svc_id column, at C
    speed: a 524,288-slot table is 32 MB)."""
    size = nat.CT_SLOT.size
    view = memoryview(values)
    if services is None:
        versions = view.cast("Q")[:: size // 8].tolist()
        indexes: Iterable[int] = (i for i, ver in enumerate(versions) if ver)
    else:
        column = view.cast("I")[_SVC_WORD :: size // 4].tobytes()
        found: set[int] = set()
        for svc_id in set(services):
            pattern = nat.U32.pack(svc_id)
            at = column.find(pattern)
            while at >= 0:
                if at % 4 == 0:
                    found.add(at // 4)
                at = column.find(pattern, at + 1)
        indexes = sorted(found)
    for index in indexes:
        base = index * size
        ver, a, b, value = nat.CT_SLOT.unpack_from(view, base)
        if ver and not ver & 1 and value[nat.CT_TYPE_OFFSET]:  # type 0: a dead entry
            yield index, ver, _WORDS.pack(a, b), value


def place(entries: Iterable[tuple[bytes, bytes]], slots: int) -> dict[int, bytes]:
    """Where entries go in a table of `slots` (a resize's migration): the most
    recently seen first, each into a free way of its bucket; what finds its
    bucket full is dropped, as the datapath would have evicted it."""
    seen = nat.CT_VAL_LAST_SEEN
    out: dict[int, bytes] = {}
    for key, value in sorted(entries, key=lambda kv: -seen.unpack_from(kv[1])[0]):
        base = bucket(key, slots) * WAYS
        free = next((i for i in range(base, base + WAYS) if i not in out), None)
        if free is not None:
            out[free] = slot_bytes(2, key, value)
    return out


def current_layout(info: bpfsys.MapInfo) -> bool:
    """Is this map a slot table as today's programs build it?"""
    return info.value_size == nat.CT_SLOT.size and bool(info.flags & MMAPABLE)


def table(fd: int) -> memoryview:
    """The table's slots, mapped read-only in place: no copy of its 32 MB.
    (Removal goes through kill(), never through this view.)"""
    info = bpfsys.map_info(fd)
    if not current_layout(info):
        return memoryview(bpfsys.map_raw(fd).values)  # a slot table of an older build
    mapped = mmap.mmap(fd, info.max_entries * nat.CT_SLOT.size, mmap.MAP_SHARED, mmap.PROT_READ)
    return memoryview(mapped)


def migrate(fd: int, slots: int) -> list[tuple[bytes, bytes]]:
    """The (index, slot) writes that carry the entries of the conntrack map
    `fd` into a new table of `slots`: from a slot table, or from the kernel
    hash map of key -> value that held conntrack before."""
    if bpfsys.map_info(fd).value_size == nat.CT_SLOT.size:
        entries = [(key, value) for _, _, key, value in live(table(fd))]
    else:
        entries = [
            (key, value)
            for key, value in bpfsys.map_items(fd)
            if isinstance(value, bytes) and len(value) == nat.CT_VAL.size
        ]
    return [(nat.U32.pack(i), slot) for i, slot in sorted(place(entries, slots).items())]


def entries(fd: int) -> dict[bytes, tuple[int, int, bytes]]:
    """Every live entry of the table `fd`: key -> (index, version, value)."""
    return {key: (i, ver, value) for i, ver, key, value in live(table(fd))}


def kill(prog_fd: int, index: int, ver: int) -> bool:
    """Remove the entry in slot `index` if it is still at version `ver`."""
    return bpfsys.prog_test_run(prog_fd, _KILL.pack(bytes(14), index, 0, ver)).retval == 1
