"""Python mirrors of bpf/lib/policy_types.h (keep in step; a kernel test checks
sizes and offsets against what bcc compiles). Ports and addresses are raw
network-order bytes ("_be" fields); everything else is host order."""

from __future__ import annotations

import struct

# Constants of bpf/lib/policy_types.h.
KIND_ADDR, KIND_DPORT, KIND_SPORT = 0, 1, 2  # RCL_POL_K_*: what a class entry classifies
KIND_NET = 3  # RCL_POL_K_NET: an address prefix as an exact entry (proto: its length)
ACTION_ALLOW, ACTION_DENY, ACTION_NOMATCH = 1, 2, 3  # RCL_POL_ALLOW / _DENY / _NOMATCH
ACTIONS = {"Allow": ACTION_ALLOW, "Deny": ACTION_DENY, "NoMatch": ACTION_NOMATCH}
ACTION_NAMES = {v: k for k, v in ACTIONS.items()}
ANY_CLASS = 0xFFFFFFFF  # the default cell's key: address class
ANY_PORT = 0xFFFF  # and port classes
FLAG_SPORT = 1  # a port class entry's flag: this program classifies source ports too

MAP_EP = "rcl_pol_ep"
MAP_EXACT = "rcl_pol_exact"
MAP_LPM = "rcl_pol_lpm"
MAP_VERDICT = "rcl_pol_verdict"
SIZES = {MAP_EXACT: 262144, MAP_LPM: 65536, MAP_VERDICT: 262144}  # -DRCL_POL_*_SIZE defaults
MAP_FRAG = "rcl_frag"  # LRU: a fragmented datagram's ports, the datapath's own (policy.h)
FRAG_SIZE = 8192  # RCL_FRAG_SIZE

# struct rcl_pol_ep { __u32 ifindex; __u32 prog[2]; __u32 pad; }
EP = struct.Struct("=III4x")
# struct rcl_pol_cls_key { __u32 prog; __u8 kind, proto; __u16 port_be; __u32 addr_be; }
CLS_KEY = struct.Struct("=IBB2s4s")
# struct rcl_pol_lpm_key { __u32 prefixlen; struct rcl_pol_cls_key k; }
LPM_KEY = struct.Struct("=IIBB2s4s")
# struct rcl_pol_cls { __u32 cls; __u32 flags; }
CLS = struct.Struct("=II")
# struct rcl_pol_cell_key { __u32 prog, aclass; __u16 pclass, sclass; }
CELL_KEY = struct.Struct("=IIHH")
# struct rcl_pol_verdict { __u32 rule; __u8 action; __u8 pad[3]; }
VERDICT = struct.Struct("=IB3x")

LPM_FULL = 96  # bits of struct rcl_pol_cls_key
LPM_ADDR_BASE = 64  # prog, kind, proto, port: an address prefix /n is 64 + n
LPM_PORT_BASE = 48  # prog, kind, proto: a port prefix /n is 48 + n
LPM_ANY_PROTO = 40  # prog, kind

# struct rcl_frag_key { __u32 src_be, dst_be; __u16 id_be; __u8 proto, pad; }
FRAG_KEY = struct.Struct("=4s4s2sBx")
# struct rcl_frag_ports { __u16 sport_be, dport_be; }
FRAG_PORTS = struct.Struct("=2s2s")

# C struct -> (codec, field names in C order; pad fields omitted).
LAYOUTS: dict[str, tuple[struct.Struct, tuple[str, ...]]] = {
    "rcl_pol_ep": (EP, ("ifindex", "prog[0]", "prog[1]")),
    "rcl_pol_cls_key": (CLS_KEY, ("prog", "kind", "proto", "port", "addr")),
    "rcl_pol_lpm_key": (LPM_KEY, ("prefixlen", "k.prog", "k.kind", "k.proto", "k.port", "k.addr")),
    "rcl_pol_cls": (CLS, ("cls", "flags")),
    "rcl_pol_cell_key": (CELL_KEY, ("prog", "aclass", "pclass", "sclass")),
    "rcl_pol_verdict": (VERDICT, ("rule", "action")),
    "rcl_frag_key": (FRAG_KEY, ("src", "dst", "id", "proto")),
    "rcl_frag_ports": (FRAG_PORTS, ("sport", "dport")),
}


def field_offsets(name: str) -> dict[str, int]:
    from reconciler.datapath.maps.nat_types import struct_offsets

    return struct_offsets(*LAYOUTS[name])
