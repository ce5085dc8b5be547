"""BPF links for cgroup hooks: created, pinned under <root>/links, swapped atomically.

A pinned link is ours by its pin path, survives our process, and detaches when
its pin is removed; `bpf_link_update` replaces the program without a gap.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from functools import cache

from reconciler.kernel.bpf import _check, _lib, obj_info


class _LinkInfoC(ctypes.Structure):
    # struct bpf_link_info, cgroup member of its union (8-byte aligned at 16).
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("cgroup_id", ctypes.c_uint64),
        ("attach_type", ctypes.c_uint32),
        ("rest", ctypes.c_uint8 * 100),
    ]


@dataclass(frozen=True, slots=True)
class LinkInfo:
    id: int
    prog_id: int
    cgroup_id: int
    attach_type: int


@cache
def _setup() -> ctypes.CDLL:
    lib = _lib()
    lib.bpf_link_create.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.bpf_link_create.restype = ctypes.c_int
    lib.bpf_link_update.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    lib.bpf_link_update.restype = ctypes.c_int
    return lib


def link_create(prog_fd: int, cgroup_path: str, attach_type: int) -> int:
    cg = os.open(cgroup_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _check(
            _setup().bpf_link_create(prog_fd, cg, attach_type, None),
            f"bpf_link_create (attach type {attach_type}) on {cgroup_path}",
        )
    finally:
        os.close(cg)


def link_update(link_fd: int, prog_fd: int) -> None:
    _check(_setup().bpf_link_update(link_fd, prog_fd, None), f"bpf_link_update fd {link_fd}")


def link_info(fd: int) -> LinkInfo:
    info = _LinkInfoC()
    obj_info(fd, info, "link")
    return LinkInfo(info.id, info.prog_id, info.cgroup_id, info.attach_type)
