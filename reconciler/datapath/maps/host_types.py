"""Python mirrors of the host endpoint structs of bpf/lib/policy_types.h (keep
in step; a kernel test checks sizes and offsets against what bcc compiles).
Addresses and ports are raw network-order bytes; everything else host order."""

from __future__ import annotations

import struct

MAP_HEP = "rcl_pol_hep"
MAP_FAILSAFE = "rcl_failsafe"
MAP_HOST_IP = "rcl_host_ip"
MAP_XDP_EP = "rcl_xdp_ep"
MAP_XDP_STATS = "rcl_xdp_stats"
MAP_UNTRACKED_DROPS = "rcl_untracked_drops"
# -DRCL_*_SIZE defaults of bpf/lib/policy_lookup.h (rcl_pol_hep and
# rcl_xdp_stats are sized as rcl_ifstate, by slot)
SIZES = {MAP_FAILSAFE: 1024, MAP_HOST_IP: 1024, MAP_XDP_EP: 1024, MAP_UNTRACKED_DROPS: 16384}

# RCL_HEP_*: a host endpoint's programs, by where they apply (model chain names)
HEP_CHAINS = (
    "ingress",
    "egress",
    "forward-ingress",
    "forward-egress",
    "prednat",
    "untracked-egress",
)
FS_IN, FS_OUT = 1, 2  # RCL_FS_*
FS_DIRS = {"in": FS_IN, "out": FS_OUT}

# struct rcl_pol_hep { __u32 ifindex; __u32 prog[6]; __u32 untracked_out_nets; }
HEP = struct.Struct("=I6II")
HEP_NETS = "untracked-egress-nets"  # its attribute: rcl_pol_hep.untracked_out_nets
# struct rcl_failsafe_key { __u32 prefixlen; __u8 dir, proto; __u16 port_be; __u32 addr_be; }
FAILSAFE_KEY = struct.Struct("=IBB2s4s")
FAILSAFE_BASE = 32  # prefix bits of dir, proto and port: a net /n is 32 + n
U32 = struct.Struct("=I")
# struct rcl_xdp_ep { __u32 slot; __u32 prog; __u32 nets; __u32 pad; }
XDP_EP = struct.Struct("=III4x")
# struct rcl_untracked_key { __u32 slot, prog, rule; __u8 dir; __u8 pad[3]; } -> __u64 per CPU
UNTRACKED_KEY = struct.Struct("=IIIB3x")
UNTRACKED_DIRS = {1: "in", 2: "out"}  # RCL_UNTRACKED_IN (XDP) / _OUT (tc egress)
# struct rcl_xdp_stats { __u64 dropped, allowed, failsafe, passed; } per CPU
XDP_STATS = struct.Struct("=4Q")
XDP_META_UNTRACKED = 0x72636C75  # RCL_XDP_META_UNTRACKED

LAYOUTS: dict[str, tuple[struct.Struct, tuple[str, ...]]] = {
    "rcl_pol_hep": (
        HEP,
        ("ifindex", "prog[0]", "prog[1]", "prog[2]", "prog[3]", "prog[4]", "prog[5]",
         "untracked_out_nets"),  # fmt: skip
    ),
    "rcl_failsafe_key": (FAILSAFE_KEY, ("prefixlen", "dir", "proto", "port", "addr")),
    "rcl_xdp_ep": (XDP_EP, ("slot", "prog", "nets")),
    "rcl_untracked_key": (UNTRACKED_KEY, ("slot", "prog", "rule", "dir")),
    "rcl_xdp_stats": (XDP_STATS, ("dropped", "allowed", "failsafe", "passed")),
}


def nets_text(mask: int) -> str:
    """A prefix-length mask (rcl_xdp_ep.nets, rcl_pol_hep.untracked_out_nets)
    as plans show it: the lengths, longest first; "-" for none."""
    return ",".join(str(n) for n in range(31, -1, -1) if mask >> n & 1) or "-"


def nets_mask(text: str) -> int:
    return sum(1 << int(n) for n in text.split(",") if n and n != "-")


def field_offsets(name: str) -> dict[str, int]:
    from reconciler.datapath.maps.nat_types import struct_offsets

    return struct_offsets(*LAYOUTS[name])


def xdp_stats_sum(per_cpu: list[bytes]) -> dict[str, int]:
    totals = [0] * 4
    for chunk in per_cpu:
        for i, value in enumerate(XDP_STATS.unpack_from(chunk)):
            totals[i] += value
    return dict(zip(LAYOUTS["rcl_xdp_stats"][1], totals, strict=True))
