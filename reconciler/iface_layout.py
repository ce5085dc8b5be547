"""Python mirrors of bpf/lib/iface_types.h (keep in step; a test checks sizes).

Keys and values are in host byte order (ifindex, flags, counters).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.bpfsys import MapInfo

# __u32 ifindex (key of rcl_ifstate, and of rcl_globals' index)
U32 = struct.Struct("=I")
# struct rcl_ifstate { __u32 flags, reserved; __u64 rx_packets, rx_bytes, tx_packets,
#                      tx_bytes, dropped, nat; }, per CPU
IFSTATE = struct.Struct("=II6Q")
IFSTATE_FLAGS = struct.Struct("=I")  # rcl_ifstate.flags (also the first word of older layouts)
COUNTERS = struct.Struct("=8x6Q")  # the counters within struct rcl_ifstate
# struct rcl_globals { __u32 log_level; __u32 flags; }
GLOBALS = struct.Struct("=II")


@dataclass(frozen=True, slots=True)
class Counters:
    rx_packets: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    dropped: int = 0
    nat: int = 0

    @classmethod
    def sum_per_cpu(cls, chunks: list[bytes]) -> Counters:
        totals = [0] * 6
        for chunk in chunks:
            for i, value in enumerate(COUNTERS.unpack_from(chunk)):
                totals[i] += value
        return cls(*totals)


def with_flags(per_cpu: list[bytes], flags: int) -> list[bytes]:
    """An interface's per-CPU entry with new flags and its counters kept."""
    return [IFSTATE_FLAGS.pack(flags) + chunk[IFSTATE_FLAGS.size :] for chunk in per_cpu]


def current_layout(info: MapInfo) -> bool:
    """Is this rcl_ifstate map today's (a per-CPU hash of struct rcl_ifstate)?
    Earlier builds kept flags in a plain hash and the counters in a map of
    their own."""
    return info.type == PERCPU_HASH and info.value_size == IFSTATE.size


PERCPU_HASH = 5  # BPF_MAP_TYPE_PERCPU_HASH

# C struct -> (Python codec, field names in C order; pad fields omitted).
LAYOUTS: dict[str, tuple[struct.Struct, tuple[str, ...]]] = {
    "rcl_ifstate": (
        IFSTATE,
        (
            "flags",
            "reserved",
            "rx_packets",
            "rx_bytes",
            "tx_packets",
            "tx_bytes",
            "dropped",
            "nat",
        ),
    ),
    "rcl_globals": (GLOBALS, ("log_level", "flags")),
}


def field_offsets(name: str) -> dict[str, int]:
    from reconciler.nat_layout import struct_offsets

    return struct_offsets(*LAYOUTS[name])
