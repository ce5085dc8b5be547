"""The conntrack table as the reconciler sees it (bpf/lib/conntrack.h).

The datapath keeps conntrack in an array of 512-byte buckets: a header line
of RCL_CT_WAYS words (version, tag, state, coarse last-seen time), then one
64-byte slot per way. This module mirrors what the reconciler needs of that:
how many buckets a configured size becomes, where a key hashes to (to place
entries when a resize migrates them), which ways hold live entries, and how
to remove one safely (through the datapath's own claim, run in the kernel by
the rcl_ct_kill_slot program). An entry's index is bucket * WAYS + way.

A resize migrates the entries, also out of two other layouts a node may
hold: a 4-way table of 64-byte slots with a version word each, and a
kernel hash map of key -> value.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable, Iterator

from reconciler.datapath.maps import nat_types as nat
from reconciler.kernel import bpf as bpfsys

MAP = nat.MAP_CT
MMAPABLE = 1 << 10  # BPF_F_MMAPABLE
WAYS = nat.CT_WAYS
SEED = 0x52434C2D43540001  # RCL_CT_SEED
SEEN_SHIFT = 30  # RCL_CT_SEEN_SHIFT
BUCKET = nat.CT_BUCKET.size  # 512
HEADER = 64  # the header line: WAYS words and a spare one
_MASK64 = (1 << 64) - 1
_WORDS = struct.Struct("=QQ")
_KILL = struct.Struct("=14sIIQ")  # an Ethernet header's room, then struct rcl_ct_kill_req
_ST_USED, _ST_TCP, _ST_FLAGS = 0x80, 0x40, 0x0F  # RCL_CT_ST_*
_TCP = nat.Proto.TCP
KILL_PROGRAM = "rcl_ct_kill_slot"

# A slot of the 4-way layout: struct { __u64 ver, key_a, key_b; struct rcl_ct_val val; }
LEGACY_SLOT = struct.Struct("=QQQ40s")


buckets_for = nat.ct_buckets_for


def _fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def place_of(key: bytes, buckets: int) -> tuple[int, int]:
    """rcl_ct_place() of a 16-byte struct rcl_ct_key: (bucket, tag)."""
    a, b = _WORDS.unpack(key)
    h = _fmix64(_fmix64(a ^ SEED) ^ b)
    return ((h & 0xFFFFFFFF) * buckets) >> 32, h >> 56


def bucket(key: bytes, buckets: int) -> int:
    return place_of(key, buckets)[0]


def _state(key: bytes, value: bytes) -> int:
    """rcl_ct_state(): what the header says of an entry (0 for a dead one)."""
    if not value[nat.CT_TYPE_OFFSET]:
        return 0
    tcp = _ST_TCP if key[nat.CT_KEY_PROTO_OFFSET] == _TCP else 0
    return _ST_USED | tcp | (value[nat.CT_FLAGS_OFFSET] & _ST_FLAGS)


def with_entry(bucket_bytes: bytes, way: int, ver: int, key: bytes, value: bytes) -> bytes:
    """The bucket with `way` holding key -> value at version `ver`, its header
    word as the datapath would write it."""
    out = bytearray(bucket_bytes)
    (seen,) = nat.CT_VAL_LAST_SEEN.unpack_from(value)
    tag = place_of(key, 1)[1]  # the tag does not depend on the bucket count
    nat.CT_WAY.pack_into(
        out, way * nat.CT_WAY.size, ver, tag, _state(key, value), (seen >> SEEN_SHIFT) & 0xFFFF
    )
    nat.CT_ENTRY.pack_into(out, HEADER + way * nat.CT_ENTRY.size, *_WORDS.unpack(key), value)
    return bytes(out)


def _indexes_with(view: memoryview, offsets: Iterable[int], words: Iterable[bytes]) -> set[int]:
    """Indexes of the entries holding one of `words` (4 bytes each) at one
    of `offsets` (bytes into struct rcl_ct_entry, 4-aligned): a search of
    each such column at C speed (a table of 512,000 entries is 36 MB)."""
    line = nat.CT_ENTRY.size // 4  # 32-bit words per cache line
    lines_per_bucket = BUCKET // nat.CT_ENTRY.size
    wanted = set(words)
    found: set[int] = set()
    for offset in offsets:
        column = view.cast("I")[offset // 4 :: line].tobytes()  # that word of every line
        for pattern in wanted:
            at = column.find(pattern)
            while at >= 0:
                if at % 4 == 0:
                    b, within = divmod(at // 4, lines_per_bucket)
                    if within:  # line 0 is the header
                        found.add(b * WAYS + within - 1)
                at = column.find(pattern, at + 1)
    return found


# Where an entry names an address: its key's source and destination, and a
# NAT entry's backend (rcl_ct_val.be_ip).
_ADDRESS_OFFSETS = (0, 4, nat.CT_ENTRY_VAL_OFFSET + 28)


def live(
    values: bytes | memoryview,
    services: Iterable[int] | None = None,
    addresses: Iterable[bytes] | None = None,
) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(index, version, key, value) of every stable entry, from the table's
    buckets read in index order; with `services`, only the entries of those
    service ids; with `addresses` (4 bytes, network order), only entries
    that may name one (as key source or destination, or backend: the
    caller reads which)."""
    view = memoryview(values)
    indexes: Iterable[int]
    if services is not None:
        svc = nat.CT_ENTRY_VAL_OFFSET + nat.CT_VAL_SVC_OFFSET
        indexes = sorted(_indexes_with(view, (svc,), (nat.U32.pack(s) for s in services)))
    elif addresses is not None:
        indexes = sorted(_indexes_with(view, _ADDRESS_OFFSETS, addresses))
    else:
        words, per = view.cast("Q"), BUCKET // 8
        used = [
            b * WAYS + w
            for w in range(WAYS)
            for b, word in enumerate(words[w::per].tolist())
            if word & 0xFFFFFFFF
        ]
        indexes = sorted(used)
    for index in indexes:
        b, w = divmod(index, WAYS)
        base = b * BUCKET
        ver, _tag, state, _seen = nat.CT_WAY.unpack_from(view, base + w * nat.CT_WAY.size)
        a, k, value = nat.CT_ENTRY.unpack_from(view, base + HEADER + w * nat.CT_ENTRY.size)
        if ver and not ver & 1 and state and value[nat.CT_TYPE_OFFSET]:
            yield index, ver, _WORDS.pack(a, k), value


def held(values: bytes | memoryview) -> int:
    """How many ways hold an entry, from the headers' state bytes at C speed.
    Expiry is lazy, so this counts idle entries too: a new flow reuses an
    expired way of its bucket; only a bucket of live flows evicts one."""
    view = memoryview(values).cast("B")
    state = 5  # rcl_ct_way.state's offset in its header word
    columns = (view[w * nat.CT_WAY.size + state :: BUCKET] for w in range(WAYS))
    return sum(len(col) - col.tobytes().count(0) for col in columns)


def place(entries: Iterable[tuple[bytes, bytes]], buckets: int) -> dict[int, bytes]:
    """Where entries go in a table of `buckets` (a resize's migration): the
    most recently seen first, each into a free way of its bucket; what finds
    its bucket full is dropped, as the datapath would have evicted it.
    Returns the contents of every bucket that holds one."""
    seen = nat.CT_VAL_LAST_SEEN
    out: dict[int, bytes] = {}
    used: dict[int, int] = {}
    for key, value in sorted(entries, key=lambda kv: -seen.unpack_from(kv[1])[0]):
        b = bucket(key, buckets)
        way = used.get(b, 0)
        if way < WAYS:
            out[b] = with_entry(out.get(b, bytes(BUCKET)), way, 2, key, value)
            used[b] = way + 1
    return out


def current_layout(info: bpfsys.MapInfo) -> bool:
    """Is this map a bucket table as today's programs build it?"""
    return info.value_size == BUCKET and bool(info.flags & MMAPABLE)


def table(fd: int) -> memoryview:
    """The table's buckets, mapped read-only in place: no copy of its 36 MB.
    (Removal goes through kill(), never through this view.)"""
    info = bpfsys.map_info(fd)
    mapped = mmap.mmap(fd, info.max_entries * BUCKET, mmap.MAP_SHARED, mmap.PROT_READ)
    return memoryview(mapped)


def _legacy_slots(values: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Key and value of every stable entry of a 4-way table of 64-byte slots."""
    for ver, a, b, value in LEGACY_SLOT.iter_unpack(values):
        if ver and not ver & 1 and value[nat.CT_TYPE_OFFSET]:
            yield _WORDS.pack(a, b), value


def migrate(fd: int, buckets: int) -> list[tuple[bytes, bytes]]:
    """The (index, bucket) writes that carry the entries of the conntrack map
    `fd` into a new table of `buckets`: from a bucket table, a 4-way slot
    table or a kernel hash map."""
    info = bpfsys.map_info(fd)
    if current_layout(info):
        entries = [(key, value) for _, _, key, value in live(table(fd))]
    elif info.value_size == LEGACY_SLOT.size:
        entries = list(_legacy_slots(bpfsys.map_raw(fd).values))
    else:
        entries = [
            (key, value)
            for key, value in bpfsys.map_items(fd)
            if isinstance(value, bytes) and len(value) == nat.CT_VAL.size
        ]
    return [(nat.U32.pack(b), raw) for b, raw in sorted(place(entries, buckets).items())]


def entries(fd: int) -> dict[bytes, tuple[int, int, bytes]]:
    """Every live entry of the table `fd`: key -> (index, version, value)."""
    return {key: (i, ver, value) for i, ver, key, value in live(table(fd))}


def kill_request(index: int, ver: int) -> bytes:
    """The test-run input naming the entry at `index`, at version `ver`."""
    return _KILL.pack(bytes(14), index, 0, ver)


def kill(prog_fd: int, index: int, ver: int) -> bool:
    """Remove the entry at `index` if it is still at version `ver`."""
    return bpfsys.prog_test_run(prog_fd, kill_request(index, ver)).retval == 1
