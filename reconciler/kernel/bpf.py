"""A thin ctypes layer over libbpf (``libbpf.so.1``) for pinned maps and programs.

Why not bcc: importing bcc costs about a second and a plan must be fast; every
call here is one syscall through libbpf. Errors raise ``OSError`` carrying the
errno and naming the path or map involved.

libbpf >= 1.0 returns ``-errno`` directly (and also sets errno); both are
handled. Struct layouts below follow the kernel UAPI (``bpf_map_info``,
``bpf_prog_info``) and libbpf 1.1's opts structs; the kernel accepts a shorter
info buffer than its own struct, so only the leading fields we need are declared.
"""

from __future__ import annotations

import ctypes
import enum
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from reconciler.kernel.mounts import filesystem_of, mount_table

_U32 = ctypes.c_uint32
_U64 = ctypes.c_uint64

# Kernel constants (uapi/linux/bpf.h).
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_F_NO_PREALLOC = 1
_ENOTSUPP = 524  # kernel-internal "not supported" that leaks to userspace


class MapType(enum.IntEnum):
    """The subset of ``enum bpf_map_type`` this project uses."""

    HASH = 1
    ARRAY = 2
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11


PERCPU_TYPES = frozenset({MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH})
# Map types whose kernel implementation has lookup_batch (hashtab.c / arraymap.c).
_BATCH_TYPES = frozenset(
    {
        MapType.HASH,
        MapType.ARRAY,
        MapType.PERCPU_HASH,
        MapType.PERCPU_ARRAY,
        MapType.LRU_HASH,
        MapType.LRU_PERCPU_HASH,
    }
)


@dataclass(frozen=True, slots=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    name: str
    flags: int = 0


@dataclass(frozen=True, slots=True)
class ProgInfo:
    id: int
    type: int
    name: str
    tag: str  # hex, as bpftool shows it
    verified_insns: int = 0  # instructions the verifier examined (its limit: 1,000,000)


@dataclass(frozen=True, slots=True)
class TestRunResult:
    __test__ = False  # not a pytest test class despite the name
    retval: int
    duration_ns: int  # average per run, as the kernel reports it
    data_out: bytes


class _MapInfoC(ctypes.Structure):
    # struct bpf_map_info (uapi), leading fields only
    _fields_ = [
        ("type", _U32),
        ("id", _U32),
        ("key_size", _U32),
        ("value_size", _U32),
        ("max_entries", _U32),
        ("map_flags", _U32),
        ("name", ctypes.c_char * 16),
    ]


class _ProgInfoC(ctypes.Structure):
    # struct bpf_prog_info (uapi), leading fields only; pointers left 0 = "don't copy"
    _fields_ = [
        ("type", _U32),
        ("id", _U32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", _U32),
        ("xlated_prog_len", _U32),
        ("jited_prog_insns", _U64),
        ("xlated_prog_insns", _U64),
        ("load_time", _U64),
        ("created_by_uid", _U32),
        ("nr_map_ids", _U32),
        ("map_ids", _U64),
        ("name", ctypes.c_char * 16),
        ("ifindex", _U32),
        ("gpl_compatible", _U32),  # a 1-bit field and padding
        ("netns_dev", _U64),
        ("netns_ino", _U64),
        ("nr_jited_ksyms", _U32),
        ("nr_jited_func_lens", _U32),
        ("jited_ksyms", _U64),
        ("jited_func_lens", _U64),
        ("btf_id", _U32),
        ("func_info_rec_size", _U32),
        ("func_info", _U64),
        ("nr_func_info", _U32),
        ("nr_line_info", _U32),
        ("line_info", _U64),
        ("jited_line_info", _U64),
        ("nr_jited_line_info", _U32),
        ("line_info_rec_size", _U32),
        ("jited_line_info_rec_size", _U32),
        ("nr_prog_tags", _U32),
        ("prog_tags", _U64),
        ("run_time_ns", _U64),
        ("run_cnt", _U64),
        ("recursion_misses", _U64),
        ("verified_insns", _U32),
    ]


class _MapCreateOpts(ctypes.Structure):
    # struct bpf_map_create_opts (libbpf 1.1 bpf.h)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("btf_fd", _U32),
        ("btf_key_type_id", _U32),
        ("btf_value_type_id", _U32),
        ("btf_vmlinux_value_type_id", _U32),
        ("inner_map_fd", _U32),
        ("map_flags", _U32),
        ("map_extra", _U64),
        ("numa_node", _U32),
        ("map_ifindex", _U32),
    ]


class _BatchOpts(ctypes.Structure):
    # struct bpf_map_batch_opts (libbpf 1.1 bpf.h)
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", _U64), ("flags", _U64)]


class _TestRunOpts(ctypes.Structure):
    # struct bpf_test_run_opts (libbpf 1.1 bpf.h)
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", _U32),
        ("data_size_out", _U32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", _U32),
        ("ctx_size_out", _U32),
        ("retval", _U32),
        ("repeat", ctypes.c_int),
        ("duration", _U32),
        ("flags", _U32),
        ("cpu", _U32),
        ("batch_size", _U32),
    ]


@cache
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    vp, cp, i, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, _U32
    sigs: dict[str, list[object]] = {
        "bpf_obj_get": [cp],
        "bpf_obj_pin": [i, cp],
        "bpf_obj_get_info_by_fd": [i, vp, ctypes.POINTER(u32)],
        "bpf_map_lookup_elem": [i, vp, vp],
        "bpf_map_update_elem": [i, vp, vp, _U64],
        "bpf_map_delete_elem": [i, vp],
        "bpf_map_get_next_key": [i, vp, vp],
        "bpf_map_lookup_batch": [i, vp, vp, vp, vp, ctypes.POINTER(u32), vp],
        "bpf_map_create": [i, cp, u32, u32, u32, vp],
        "bpf_prog_test_run_opts": [i, vp],
        "bpf_prog_get_fd_by_id": [u32],
        "bpf_map_get_fd_by_id": [u32],
    }
    for name, args in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes = args
        fn.restype = ctypes.c_int
    return lib


def _check(rc: int, what: str) -> int:
    if rc >= 0:
        return rc
    err = -rc if rc < -1 else ctypes.get_errno()  # libbpf 1.x returns -errno
    raise OSError(err, f"{what}: {os.strerror(err)}")


@cache
def possible_cpus() -> int:
    """Number of possible CPUs: the stride of per-CPU map values."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += (int(hi) if hi else int(lo)) - int(lo) + 1
    return count


def obj_get(path: str) -> int:
    """Open a pinned map or program; returns a new fd the caller must close."""
    return _check(_lib().bpf_obj_get(os.fsencode(path)), f"bpf_obj_get {path}")


def obj_pin(fd: int, path: str) -> None:
    _check(_lib().bpf_obj_pin(fd, os.fsencode(path)), f"bpf_obj_pin fd {fd} at {path}")


def close(fd: int) -> None:
    os.close(fd)


def obj_info(fd: int, info: ctypes.Structure, what: str) -> None:
    """Fill `info` (a struct bpf_{map,prog,link}_info) for the object behind fd."""
    size = _U32(ctypes.sizeof(info))
    _check(
        _lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size)),
        f"{what} info of fd {fd}",
    )


def map_info(fd: int) -> MapInfo:
    info = _MapInfoC()
    obj_info(fd, info, "map")
    return MapInfo(
        info.type,
        info.id,
        info.key_size,
        info.value_size,
        info.max_entries,
        info.name.decode(errors="replace"),
        info.map_flags,
    )


def prog_fd_by_id(prog_id: int) -> int:
    """A new fd of the loaded program with this id (the caller closes it)."""
    return _check(_lib().bpf_prog_get_fd_by_id(prog_id), f"bpf_prog_get_fd_by_id {prog_id}")


def map_fd_by_id(map_id: int) -> int:
    """A new fd of the map with this id (the caller closes it)."""
    return _check(_lib().bpf_map_get_fd_by_id(map_id), f"bpf_map_get_fd_by_id {map_id}")


def prog_info(fd: int) -> ProgInfo:
    info = _ProgInfoC()
    obj_info(fd, info, "prog")
    return ProgInfo(
        info.id,
        info.type,
        info.name.decode(errors="replace"),
        bytes(info.tag).hex(),
        info.verified_insns,
    )


def map_create(
    map_type: int,
    name: str,
    key_size: int,
    value_size: int,
    max_entries: int,
    flags: int = 0,
    inner_map_fd: int = 0,
) -> int:
    """Create an (unpinned) map; returns its fd. LPM tries need ``BPF_F_NO_PREALLOC``;
    a map of maps needs a map its inner maps must match (`inner_map_fd`)."""
    opts = _MapCreateOpts(
        sz=ctypes.sizeof(_MapCreateOpts), map_flags=flags, inner_map_fd=inner_map_fd
    )
    rc = _lib().bpf_map_create(
        map_type, name.encode()[:15], key_size, value_size, max_entries, ctypes.byref(opts)
    )
    return _check(rc, f"bpf_map_create {name}")


@dataclass(frozen=True, slots=True)
class _Shape:
    key_size: int
    value_size: int  # bytes the kernel copies per element (all CPUs for per-CPU maps)
    chunk: int  # per-CPU stride, 0 for ordinary maps
    batch: bool
    max_entries: int


def _shape(fd: int) -> _Shape:
    info = map_info(fd)
    if info.type in PERCPU_TYPES:
        chunk = (info.value_size + 7) // 8 * 8
        return _Shape(info.key_size, chunk * possible_cpus(), chunk, True, info.max_entries)
    return _Shape(info.key_size, info.value_size, 0, info.type in _BATCH_TYPES, info.max_entries)


def _split(raw: bytes, shape: _Shape) -> bytes | list[bytes]:
    if not shape.chunk:
        return raw
    return [raw[i : i + shape.chunk] for i in range(0, len(raw), shape.chunk)]


def _join(value: bytes | list[bytes], shape: _Shape) -> bytes:
    if isinstance(value, bytes):
        if shape.chunk and len(value) <= shape.chunk:
            # one value for every CPU: the common way to (re)set a per-CPU slot
            return value.ljust(shape.chunk, b"\0") * (shape.value_size // shape.chunk)
        return value.ljust(shape.value_size, b"\0")
    return b"".join(v.ljust(shape.chunk, b"\0") for v in value)


def map_lookup(fd: int, key: bytes) -> bytes | list[bytes] | None:
    """Value for key, None when absent; per-CPU maps give one chunk per possible CPU."""
    return _lookup(fd, key, _shape(fd))


def _lookup(fd: int, key: bytes, shape: _Shape) -> bytes | list[bytes] | None:
    buf = ctypes.create_string_buffer(shape.value_size)
    rc = _lib().bpf_map_lookup_elem(fd, key, buf)
    if rc < 0:
        err = -rc if rc < -1 else ctypes.get_errno()
        if err == 2:  # ENOENT
            return None
        _check(rc, f"lookup in map fd {fd}")
    return _split(buf.raw, shape)


def map_update(fd: int, key: bytes, value: bytes | list[bytes], flags: int = BPF_ANY) -> None:
    shape = _shape(fd)
    raw = _join(value, shape)
    _check(_lib().bpf_map_update_elem(fd, key, raw, flags), f"update in map fd {fd}")


def map_update_many(
    fd: int, items: list[tuple[bytes, bytes | list[bytes]]], flags: int = BPF_ANY
) -> None:
    """map_update for many entries, asking the map's shape once (a bulk fill)."""
    shape = _shape(fd)
    update = _lib().bpf_map_update_elem
    for key, value in items:
        _check(update(fd, key, _join(value, shape), flags), f"update in map fd {fd}")


def map_delete(fd: int, key: bytes) -> bool:
    """Delete key; False when it was not there."""
    rc = _lib().bpf_map_delete_elem(fd, key)
    if rc < 0:
        err = -rc if rc < -1 else ctypes.get_errno()
        if err == 2:
            return False
        _check(rc, f"delete in map fd {fd}")
    return True


def map_keys(fd: int) -> list[bytes]:
    shape = _shape(fd)
    return _keys(fd, shape)


def _keys(fd: int, shape: _Shape) -> list[bytes]:
    lib = _lib()
    keys: list[bytes] = []
    cur = ctypes.create_string_buffer(shape.key_size)
    nxt = ctypes.create_string_buffer(shape.key_size)
    prev: ctypes.Array[ctypes.c_char] | None = None
    # get_next_key(NULL) gives the first key; bounded by max_entries against races
    for _ in range(shape.max_entries + 1):
        rc = lib.bpf_map_get_next_key(fd, prev, nxt)
        if rc < 0:
            err = -rc if rc < -1 else ctypes.get_errno()
            if err == 2:
                break
            _check(rc, f"get_next_key in map fd {fd}")
        keys.append(nxt.raw)
        ctypes.memmove(cur, nxt, shape.key_size)
        prev = cur
    return keys


def map_items(fd: int) -> list[tuple[bytes, bytes | list[bytes]]]:
    """All entries. Batched (few syscalls) where the map type supports it."""
    shape = _shape(fd)
    if shape.batch:
        try:
            return _items_batch(fd, shape)
        except OSError as exc:
            if exc.errno not in (22, 95, _ENOTSUPP):  # EINVAL, EOPNOTSUPP
                raise
    items: list[tuple[bytes, bytes | list[bytes]]] = []
    for key in _keys(fd, shape):
        value = _lookup(fd, key, shape)
        if value is not None:  # deleted between the two calls
            items.append((key, value))
    return items


def _batches(fd: int, shape: _Shape) -> Iterator[tuple[bytes, bytes, int]]:
    """(keys, values, count) per BPF_MAP_LOOKUP_BATCH call, as raw buffers."""
    lib = _lib()
    per_call = max(1, min(shape.max_entries, 16384))
    keys = ctypes.create_string_buffer(shape.key_size * per_call)
    values = ctypes.create_string_buffer(shape.value_size * per_call)
    # The batch cursor is opaque: a bucket index for hash maps, a key for arrays.
    token = max(shape.key_size, 8)
    in_batch = ctypes.create_string_buffer(token)
    out_batch = ctypes.create_string_buffer(token)
    opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
    first = True
    while True:
        count = _U32(per_call)
        rc = lib.bpf_map_lookup_batch(
            fd,
            None if first else in_batch,
            out_batch,
            keys,
            values,
            ctypes.byref(count),
            ctypes.byref(opts),
        )
        err = 0
        if rc < 0:
            err = -rc if rc < -1 else ctypes.get_errno()
            if err != 2:  # ENOENT = no more entries (count may still be > 0)
                _check(-err, f"lookup_batch in map fd {fd}")
        n = count.value
        yield (
            ctypes.string_at(keys, n * shape.key_size),
            ctypes.string_at(values, n * shape.value_size),
            n,
        )
        if err == 2:
            return
        ctypes.memmove(in_batch, out_batch, token)
        first = False


def _items_batch(fd: int, shape: _Shape) -> list[tuple[bytes, bytes | list[bytes]]]:
    items: list[tuple[bytes, bytes | list[bytes]]] = []
    ks, vs = shape.key_size, shape.value_size
    for kraw, vraw, n in _batches(fd, shape):
        # Slice the two buffers in comprehensions: 100k+ entries per map at scale.
        vals: list[bytes] = [vraw[i : i + vs] for i in range(0, n * vs, vs)]
        items += zip(
            [kraw[i : i + ks] for i in range(0, n * ks, ks)],
            vals if not shape.chunk else [_split(v, shape) for v in vals],
            strict=True,
        )
    return items


@dataclass(frozen=True, slots=True)
class RawDump:
    """A map's entries as two buffers (keys, values), in the kernel's order."""

    keys: bytes
    values: bytes
    key_size: int
    value_size: int


def map_raw(fd: int) -> RawDump:
    """All entries of an ordinary (not per-CPU) map, unsliced: a 100k-entry
    table is two buffers, not 200k objects."""
    shape = _shape(fd)
    if shape.chunk:
        raise ValueError(f"map fd {fd} is per-CPU: use map_items")
    if shape.batch:
        try:
            parts = list(_batches(fd, shape))
            return RawDump(
                b"".join(k for k, _, _ in parts),
                b"".join(v for _, v, _ in parts),
                shape.key_size,
                shape.value_size,
            )
        except OSError as exc:
            if exc.errno not in (22, 95, _ENOTSUPP):
                raise
    items = map_items(fd)
    return RawDump(
        b"".join(k for k, _ in items),
        b"".join(v for _, v in items if isinstance(v, bytes)),
        shape.key_size,
        shape.value_size,
    )


def prog_test_run(
    prog_fd: int, data: bytes, repeat: int = 1, ctx: bytes | None = None
) -> TestRunResult:
    """Run a program on one packet with BPF_PROG_TEST_RUN; the packet may grow
    by 256 B. `ctx`: the start of a struct __sk_buff to run with (cb[], mark)."""
    out = ctypes.create_string_buffer(len(data) + 256)
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p),
        data_out=ctypes.cast(out, ctypes.c_void_p),
        data_size_in=len(data),
        data_size_out=len(out),
        repeat=repeat,
    )
    if ctx is not None:
        opts.ctx_in = ctypes.cast(ctypes.c_char_p(ctx), ctypes.c_void_p)
        opts.ctx_size_in = len(ctx)
    _check(
        _lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), f"test_run of prog fd {prog_fd}"
    )
    return TestRunResult(opts.retval, opts.duration, out.raw[: opts.data_size_out])


class UnsafeRoot(Exception):
    """The bpffs root exists but another user could change what is pinned there."""


def check_root(path: str) -> None:
    """Refuse a bpffs root that is a symlink, not a directory, not owned by
    us, or writable by others: bpffs is mounted 1777, so any user may create
    our root first and later unpin our links and maps from it."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise UnsafeRoot(f"bpffs root {path} is not a directory; refusing to use it")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise UnsafeRoot(
            f"bpffs root {path} is owned by uid {st.st_uid} with mode {st.st_mode & 0o7777:o}: "
            f"another user could unpin what we pin there; remove it (it must be created by "
            f"uid {os.geteuid()}, mode 0700)"
        )
    check_parents(path)


def check_parents(path: str) -> None:
    """Refuse a bpffs root under a directory another user owns, or may write
    without the sticky bit (they could rename our root away). Directories
    that do not exist yet are not judged: whoever creates them owns them."""
    for parent in Path(path).parents:
        try:
            pst = os.stat(parent)
        except FileNotFoundError:
            continue
        if pst.st_uid not in (0, os.geteuid()) or (
            pst.st_mode & 0o022 and not pst.st_mode & stat.S_ISVTX
        ):
            raise UnsafeRoot(f"{parent}, above bpffs root {path}, can be changed by other users")


class BpffsError(OSError):
    """bpffs is not mounted and could not be (no privilege, no kernel support)."""


def is_under(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or lies below it (lexically, as given)."""
    return os.path.commonpath([os.path.abspath(path), os.path.abspath(directory)]) == (
        os.path.abspath(directory)
    )


def ensure_bpffs(path: str, mountpoint: str = "/sys/fs/bpf", create: bool = True) -> bool:
    """Make sure bpffs is mounted at ``mountpoint`` and ``path`` is on a bpf
    filesystem, ours alone (check_root; UnsafeRoot otherwise: also for a
    path elsewhere, where nothing can be pinned). ``create``: mount bpffs and
    make the root, 0700, when missing (an apply). Without it (a plan, a
    status) nothing is mounted or made: a root under an unmounted
    ``mountpoint`` holds nothing yet, which is what observing it finds.
    Returns whether bpffs is still to be mounted (only ever without ``create``)."""
    table = mount_table()
    mounted = (mountpoint, "bpf") in table
    if not mounted and create:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
        if libc.mount(b"bpf", mountpoint.encode(), b"bpf", 0, None) != 0:
            err = ctypes.get_errno()
            raise BpffsError(err, f"bpffs is not mounted at {mountpoint} and mounting it failed")
        table = mount_table()  # with the mount just made
    check_parents(path)  # before creating anything under them
    fstype, point = filesystem_of(path, table)
    if fstype != "bpf" and not mounted and is_under(path, mountpoint):
        return True  # not created: the apply mounts bpffs first
    if fstype != "bpf":
        raise UnsafeRoot(
            f"bpffs root {path} would be on {fstype or 'an unknown filesystem'} (mounted at "
            f"{point}), where nothing can be pinned; use a directory under {mountpoint}; "
            "nothing was changed"
        )
    if create:
        Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)
    elif not os.path.lexists(path):
        return not mounted
    check_root(path)
    return not mounted


def map_entries(fd: int) -> list[tuple[bytes, bytes]]:
    """Items of a map with one value per key (not per-CPU), typed as such."""
    out = []
    for key, value in map_items(fd):
        if isinstance(value, list):
            raise TypeError(f"map fd {fd} is per-CPU: use map_items")
        out.append((key, value))
    return out


def pinned_items(path: str) -> list[tuple[bytes, bytes | list[bytes]]]:
    """All entries of a pinned map ([] when nothing is pinned there)."""
    if not os.path.exists(path):
        return []
    fd = obj_get(path)
    try:
        return map_items(fd)
    finally:
        close(fd)
