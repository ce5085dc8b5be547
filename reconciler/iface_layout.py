"""Python mirrors of bpf/lib/iface_types.h (keep in step; a test checks sizes).

Keys and values are in host byte order (ifindex, flags, counters).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# __u32 ifindex (key of rcl_ifstate and rcl_counters, and of rcl_globals' index)
U32 = struct.Struct("=I")
# struct rcl_ifstate { __u32 flags; __u32 reserved; }
IFSTATE = struct.Struct("=II")
# struct rcl_globals { __u32 log_level; __u32 flags; }
GLOBALS = struct.Struct("=II")
# struct rcl_counters { __u64 rx_packets, rx_bytes, tx_packets, tx_bytes, dropped, nat; }
COUNTERS = struct.Struct("=6Q")


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


# C struct -> (Python codec, field names in C order); every field here is of
# one width per struct, so a field's offset is its index times that width.
LAYOUTS: dict[str, tuple[struct.Struct, tuple[str, ...]]] = {
    "rcl_ifstate": (IFSTATE, ("flags", "reserved")),
    "rcl_globals": (GLOBALS, ("log_level", "flags")),
    "rcl_counters": (
        COUNTERS,
        ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "dropped", "nat"),
    ),
}


def field_offsets(name: str) -> dict[str, int]:
    codec, fields = LAYOUTS[name]
    width = codec.size // len(fields)
    return {f: i * width for i, f in enumerate(fields)}
