"""Python mirrors of bpf/lib/iface_types.h (keep in step; a test checks sizes).

Keys and values are in host byte order (slot, flags, ifindex, counters).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reconciler.datapath.maps.nat_types import struct_offsets

if TYPE_CHECKING:
    from reconciler.kernel.bpf import MapInfo

MAP_IFSTATE = "rcl_ifstate"  # per-CPU array of struct rcl_ifstate, by slot
MAP_GLOBALS = "rcl_globals"  # one struct rcl_globals
MAP_REJECT_TAT = "rcl_reject_tat"  # per-CPU __u64: the ICMP reject limit (bpf/lib/tc_path.h)
MAP_WEP_SRC = "rcl_wep_src"  # array, by slot: the networks a workload may send from

# __u32: rcl_ifstate's key (an interface's slot) and rcl_globals' index
U32 = struct.Struct("=I")
# struct rcl_ifstate { __u32 flags, ifindex; __u64 rx_packets, rx_bytes, tx_packets,
#                      tx_bytes, dropped, nat; }, per CPU
IFSTATE = struct.Struct("=II6Q")
IFSTATE_HEAD = struct.Struct("=II")  # rcl_ifstate.flags and .ifindex: what the reconciler owns
COUNTERS = struct.Struct("=8x6Q")  # the counters within struct rcl_ifstate
# A tc filter's classid reaches the program as skb->tc_classid, 16 bits: the
# highest slot a filter can name.
MAX_SLOT = 0xFFFF
# rcl_ifstate.flags beyond the interface's role bits: RCL_IF_POLICY, set on
# every workload interface (its policy is in rcl_pol_ep)
IF_POLICY = 16
# struct rcl_globals { __u32 log_level; __u32 flags; }
GLOBALS = struct.Struct("=II")
# struct rcl_wep_src { __u32 ifindex, count; struct rcl_wep_net { __u32 addr_be, mask_be; }
#                      net[RCL_WEP_NETS]; }
WEP_NETS = 8
WEP_SRC = struct.Struct(f"=II{8 * WEP_NETS}s")


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


def with_head(per_cpu: list[bytes], flags: int, ifindex: int) -> list[bytes]:
    """An interface's per-CPU entry with new flags and its counters kept."""
    return [IFSTATE_HEAD.pack(flags, ifindex) + chunk[IFSTATE_HEAD.size :] for chunk in per_cpu]


def current_layout(info: MapInfo) -> bool:
    """Is this rcl_ifstate map of the layout the programs use (a per-CPU array
    of struct rcl_ifstate, by slot)? Any other (a per-CPU hash by ifindex;
    flags in a plain hash) is replaced, its entries planned afresh."""
    return info.type == PERCPU_ARRAY and info.value_size == IFSTATE.size


PERCPU_HASH = 5  # BPF_MAP_TYPE_PERCPU_HASH
PERCPU_ARRAY = 6  # BPF_MAP_TYPE_PERCPU_ARRAY

# C struct -> (Python codec, field names in C order; pad fields omitted).
LAYOUTS: dict[str, tuple[struct.Struct, tuple[str, ...]]] = {
    MAP_IFSTATE: (
        IFSTATE,
        (
            "flags",
            "ifindex",
            "rx_packets",
            "rx_bytes",
            "tx_packets",
            "tx_bytes",
            "dropped",
            "nat",
        ),
    ),
    MAP_GLOBALS: (GLOBALS, ("log_level", "flags")),
    MAP_WEP_SRC: (WEP_SRC, ("ifindex", "count", "net")),
}


def field_offsets(name: str) -> dict[str, int]:
    return struct_offsets(*LAYOUTS[name])
