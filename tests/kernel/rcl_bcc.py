"""Shared helpers for the NAT kernel tests: skip rules, private pin dirs, bcc sources.

bcc 0.26 rewrites map calls (``m.lookup(&k)``) only in the main source file, not
in ``#include``d headers, so sources are flattened (local includes inlined,
with ``#line`` markers for readable errors) before compiling.
"""

from __future__ import annotations

import os
import shutil
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler.datapath.sources import flatten  # noqa: F401 - re-exported for the tests

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"


def skip_unless_kernel() -> None:
    """Skip (with a reason) unless root with bcc available."""
    if os.geteuid() != 0:
        pytest.skip("needs root (BPF syscalls, bpffs)")
    try:
        import bcc  # noqa: F401
    except ImportError:
        pytest.skip("bcc is not importable")


def inet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement checksum (IPv4 header, ICMP, TCP/UDP with pseudo header)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@contextmanager
def private_pin_dir() -> Iterator[Path]:
    """A fresh directory on bpffs, removed (with every pin in it) afterwards.
    Its maps/ holds the empty map of maps that sources with the conntrack
    table bind as rcl_ct_prev (the loader stages it so for a build)."""
    from reconciler.datapath import ct_handover
    from reconciler.kernel import bpf as bpfsys

    root = Path(f"/sys/fs/bpf/rcl-test-{uuid.uuid4().hex[:8]}")
    bpfsys.ensure_bpffs(str(root))
    try:
        (root / "maps").mkdir()
        ct_handover.stage(root / "maps", None)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cflags(maps_dir: Path, *extra: str) -> list[str]:
    return [f'-DRCL_MAPS_DIR="{maps_dir}"', f"-I{BPF_DIR}", *extra]


def datapath_program(maps_dir: Path, source: str, entry: str, *extra: str) -> Any:
    """A bcc module of the datapath for a test: `entry` (the test's own
    functions, calling into bpf/lib) in place of bpf/`source`'s body, its
    maps pinned under `maps_dir`, built with the clock nodes run with and
    the `extra` flags (table sizes: small_tables)."""
    from bcc import BPF

    from reconciler.compile.programs import tick_flags
    from reconciler.datapath import loader

    flags = cflags(maps_dir, *extra, *tick_flags(loader.kernel_hz()))
    return BPF(text=flatten(BPF_DIR / source, text=entry).encode(), cflags=flags)


def small_tables(ct_buckets: int = 586, affinity: int = 1024, backends: int = 256) -> list[str]:
    """Table sizes for a test program of the NAT datapath: small enough to
    read back whole, with every table the programs declare sized."""
    return [
        f"-DRCL_CT_BUCKETS={ct_buckets}",
        f"-DRCL_NAT_AFF_SIZE={affinity}",
        "-DRCL_NAT_FE_SIZE=64",
        f"-DRCL_NAT_BE_SIZE={backends}",
        "-DRCL_CTLB_UDP_REV_SIZE=64",
    ]
