"""reconciler.kernel.bpf on real maps: needs root (BPF syscalls), not bcc."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.kernel import bpf as bpfsys

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for BPF syscalls"),
]

U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    from tests.kernel.rcl_bcc import private_pin_dir

    with private_pin_dir() as root:
        yield root


@pytest.fixture
def fds() -> Iterator[list[int]]:
    opened: list[int] = []
    yield opened
    for fd in opened:
        bpfsys.close(fd)


def test_hash_crud_and_info(fds: list[int]) -> None:
    fd = bpfsys.map_create(bpfsys.MapType.HASH, "rcl_t_hash", 4, 8, 16)
    fds.append(fd)
    info = bpfsys.map_info(fd)
    assert (info.type, info.key_size, info.value_size, info.max_entries, info.name) == (
        bpfsys.MapType.HASH,
        4,
        8,
        16,
        "rcl_t_hash",
    )
    assert bpfsys.map_lookup(fd, U32.pack(1)) is None
    bpfsys.map_update(fd, U32.pack(1), U64.pack(11))
    bpfsys.map_update(fd, U32.pack(2), U64.pack(22))
    assert bpfsys.map_lookup(fd, U32.pack(1)) == U64.pack(11)
    assert sorted(bpfsys.map_items(fd)) == [
        (U32.pack(1), U64.pack(11)),
        (U32.pack(2), U64.pack(22)),
    ]
    assert sorted(bpfsys.map_keys(fd)) == [U32.pack(1), U32.pack(2)]
    with pytest.raises(FileExistsError):
        bpfsys.map_update(fd, U32.pack(1), U64.pack(0), bpfsys.BPF_NOEXIST)
    assert bpfsys.map_delete(fd, U32.pack(1)) is True
    assert bpfsys.map_delete(fd, U32.pack(1)) is False
    assert bpfsys.map_items(fd) == [(U32.pack(2), U64.pack(22))]


def test_items_is_fast_on_100k(fds: list[int]) -> None:
    fd = bpfsys.map_create(bpfsys.MapType.HASH, "rcl_t_big", 4, 8, 100_000)
    fds.append(fd)
    bpfsys.map_update_many(fd, [(U32.pack(i), U64.pack(i * 3)) for i in range(100_000)])
    start = time.perf_counter()
    items = bpfsys.map_items(fd)
    elapsed = time.perf_counter() - start
    assert len(items) == 100_000
    assert dict(items)[U32.pack(777)] == U64.pack(2331)
    assert elapsed < 0.5, f"map_items took {elapsed:.3f}s"


@pytest.mark.parametrize("map_type", [bpfsys.MapType.ARRAY, bpfsys.MapType.LRU_HASH])
def test_batch_types(fds: list[int], map_type: bpfsys.MapType) -> None:
    fd = bpfsys.map_create(map_type, "rcl_t_b", 4, 4, 64)
    fds.append(fd)
    for i in range(10):
        bpfsys.map_update(fd, U32.pack(i), U32.pack(i + 100))
    items = dict(bpfsys.map_items(fd))
    assert all(items[U32.pack(i)] == U32.pack(i + 100) for i in range(10))
    assert len(items) == (64 if map_type == bpfsys.MapType.ARRAY else 10)


def test_lpm_trie_falls_back_to_next_key(fds: list[int]) -> None:
    fd = bpfsys.map_create(bpfsys.MapType.LPM_TRIE, "rcl_t_lpm", 8, 4, 16, bpfsys.BPF_F_NO_PREALLOC)
    fds.append(fd)
    key = struct.pack("=I4s", 24, bytes([10, 1, 2, 0]))
    bpfsys.map_update(fd, key, U32.pack(7))
    assert bpfsys.map_items(fd) == [(key, U32.pack(7))]


@pytest.mark.parametrize("map_type", [bpfsys.MapType.PERCPU_ARRAY, bpfsys.MapType.PERCPU_HASH])
def test_percpu_values_are_per_cpu_chunks(fds: list[int], map_type: bpfsys.MapType) -> None:
    ncpu = bpfsys.possible_cpus()
    fd = bpfsys.map_create(map_type, "rcl_t_pc", 4, 4, 8)  # value 4 B: stride rounds to 8
    fds.append(fd)
    chunks = [U32.pack(i + 1) for i in range(ncpu)]
    bpfsys.map_update(fd, U32.pack(3), chunks)
    got = bpfsys.map_lookup(fd, U32.pack(3))
    assert isinstance(got, list) and len(got) == ncpu
    assert [c[:4] for c in got] == chunks and all(len(c) == 8 for c in got)
    items = dict(bpfsys.map_items(fd))
    assert items[U32.pack(3)] == got
    bpfsys.map_update(fd, U32.pack(3), U32.pack(9))  # one value: every CPU
    assert bpfsys.map_lookup(fd, U32.pack(3)) == [U64.pack(9)] * ncpu


def test_pin_and_obj_get(pin_dir: Path, fds: list[int]) -> None:
    fd = bpfsys.map_create(bpfsys.MapType.HASH, "rcl_t_pin", 4, 4, 4)
    fds.append(fd)
    bpfsys.map_update(fd, U32.pack(1), U32.pack(5))
    path = str(pin_dir / "rcl_t_pin")
    bpfsys.obj_pin(fd, path)
    again = bpfsys.obj_get(path)
    fds.append(again)
    assert bpfsys.map_info(again).id == bpfsys.map_info(fd).id
    assert bpfsys.map_lookup(again, U32.pack(1)) == U32.pack(5)
    with pytest.raises(OSError) as exc:
        bpfsys.obj_get(str(pin_dir / "missing"))
    assert "missing" in str(exc.value) and exc.value.errno == 2
    with pytest.raises(OSError):
        bpfsys.obj_pin(fd, path)  # EEXIST


def test_prog_info_and_test_run(fds: list[int]) -> None:
    """A two-instruction socket filter loaded via raw bpf(2): r0 = 7; exit."""
    import ctypes

    insns = struct.pack("=BBhi", 0xB7, 0, 0, 7) + struct.pack("=BBhi", 0x95, 0, 0, 0)
    lic = ctypes.create_string_buffer(b"GPL")
    buf = ctypes.create_string_buffer(insns)
    attr = struct.pack(
        "=IIQQIIQI", 1, 2, ctypes.addressof(buf), ctypes.addressof(lic), 0, 0, 0, 0
    ).ljust(128, b"\0")
    attr = attr[:48] + b"rcl_t_prog".ljust(16, b"\0") + attr[64:]
    abuf = ctypes.create_string_buffer(attr, 128)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(321, 5, abuf, 128)  # SYS_bpf, BPF_PROG_LOAD
    assert fd >= 0, os.strerror(ctypes.get_errno())
    fds.append(fd)
    info = bpfsys.prog_info(fd)
    assert info.type == 1 and info.name == "rcl_t_prog" and len(info.tag) == 16
    res = bpfsys.prog_test_run(fd, bytes(64), repeat=10)
    assert res.retval == 7 and res.data_out == bytes(64)


def test_ensure_bpffs_is_idempotent(pin_dir: Path) -> None:
    bpfsys.ensure_bpffs(str(pin_dir / "sub"))
    assert (pin_dir / "sub").is_dir()


def test_bpffs_root_is_created_0700_and_refused_when_squatted(pin_dir: Path) -> None:
    import os

    mine = pin_dir / "mine"
    bpfsys.ensure_bpffs(str(mine))
    assert os.stat(mine).st_mode & 0o777 == 0o700
    squatted = pin_dir / "squatted"
    squatted.mkdir()
    os.chown(squatted, 65534, 65534)  # as if an unprivileged user made it first
    with pytest.raises(bpfsys.UnsafeRoot, match="owned by uid 65534"):
        bpfsys.ensure_bpffs(str(squatted))
    open_root = pin_dir / "open"
    open_root.mkdir()
    os.chmod(open_root, 0o1777)
    with pytest.raises(bpfsys.UnsafeRoot, match="another user could unpin"):
        bpfsys.ensure_bpffs(str(open_root))
