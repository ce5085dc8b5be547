"""Python mirrors of bpf/lib/nat_types.h (service NAT maps). Keep both in step.

Each codec names its C struct; tests/kernel/test_nat_layout.py proves sizes and
offsets match what bcc compiles. Fields ending in ``_be`` are network byte order
in the kernel; the dataclasses here hold ``IPv4Address`` and host-order ports and
do the conversion in ``encode``/``decode``.
"""

from __future__ import annotations

import enum
import socket
import struct

# Map names and pin names (files under <bpffs root>/maps/).
MAP_NAT_FE = "rcl_nat_fe"
MAP_NAT_BE = "rcl_nat_be"
MAP_NAT_SRC = "rcl_nat_src"
MAP_NAT_AFF = "rcl_nat_aff"
MAP_CT = "rcl_ct"
MAP_NAT_GLOBALS = "rcl_nat_globals"
MAP_NAT_STATS = "rcl_nat_stats"
MAP_CTLB_UDP_REV = "rcl_ctlb_udp_rev"

# Default max_entries (Calico's bpfMapSize* defaults); -DRCL_*_SIZE overrides.
DEFAULT_SIZES = {
    MAP_NAT_FE: 65536,
    MAP_NAT_BE: 262144,
    MAP_NAT_SRC: 65536,
    MAP_NAT_AFF: 65536,
    MAP_CT: 524288,  # slots: Calico's 512000, rounded up to a power of two
    MAP_CTLB_UDP_REV: 65536,
}

# Field order is the C order; "4s"/"2s" are raw network-order bytes (the _be fields).
# struct rcl_nat_fe_key { __u32 vip_be; __u16 port_be; __u8 proto; __u8 pad; }
FE_KEY = struct.Struct("=4s2sBx")
# struct rcl_nat_fe_val { __u32 svc_id, count, local_count, flags, affinity_timeout_s; }
FE_VAL = struct.Struct("=5I")
# struct rcl_nat_be_key { __u32 svc_id; __u32 ordinal; }
BE_KEY = struct.Struct("=II")
# struct rcl_nat_be_val { __u32 ip_be; __u16 port_be; __u16 flags; }
BE_VAL = struct.Struct("=4s2sH")
# struct rcl_nat_src_key { __u32 prefixlen; __u32 svc_id; __u32 src_be; } (an LPM trie key)
SRC_KEY = struct.Struct("=II4s")
SRC_KEY_BASE = 32  # prefixlen of the svc_id, matched whole, before the source's own bits
# struct rcl_nat_src_val { __u32 reserved; } (0)
SRC_VAL = struct.Struct("=I")
# struct rcl_nat_aff_key { __u32 client_ip_be; __u32 svc_id; }
AFF_KEY = struct.Struct("=4sI")
# struct rcl_nat_aff_val { __u64 ts_ns; __u32 ip_be; __u16 port_be; __u16 pad; __u32 ordinal;
#                          __u32 pad2; }
AFF_VAL = struct.Struct("=Q4s2s2xI4x")
# struct rcl_ct_key { __u32 src_be, dst_be; __u16 sport_be, dport_be; __u8 proto; __u8 pad[3]; }
CT_KEY = struct.Struct("=4s4s2s2sB3x")
# struct rcl_ct_val { __u64 created_ns, last_seen_ns; __u32 svc_id, be_ordinal, orig_ip_be,
#                     be_ip_be; __u16 orig_port_be, be_port_be; __u8 type, flags; __u16 pad; }
CT_VAL = struct.Struct("=QQII4s4s2s2sBB2x")
CT_KEY_PROTO_OFFSET = 12  # rcl_ct_key.proto
CT_VAL_SVC_OFFSET = 16  # rcl_ct_val.svc_id
CT_TYPE_OFFSET = 36  # rcl_ct_val.type
CT_FLAGS_OFFSET = 37  # rcl_ct_val.flags
CT_VAL_LAST_SEEN = struct.Struct("=8xQ")  # rcl_ct_val.last_seen_ns
CT_VAL_CREATED = struct.Struct("=Q")  # rcl_ct_val.created_ns
# struct rcl_ct_way { __u32 ver; __u8 tag, state; __u16 seen; }
CT_WAY = struct.Struct("=IBBH")
# struct rcl_ct_entry { __u64 key_a, key_b; struct rcl_ct_val val; __u64 pad; }
CT_ENTRY = struct.Struct("=QQ40s8x")
CT_ENTRY_VAL_OFFSET = 16  # rcl_ct_entry.val
# struct rcl_ct_bucket { struct rcl_ct_way way[7]; __u64 spare; struct rcl_ct_entry slot[7]; }
CT_BUCKET = struct.Struct("=56sQ448s")
CT_WAYS = 7  # RCL_CT_WAYS


def ct_buckets_for(requested: int) -> int:
    """bpfMapSizeConntrack (entries) as a conntrack table size: enough whole buckets."""
    return max(1, -(-requested // CT_WAYS))


# struct rcl_nat_globals { __u32 tcp_syn_sent_s, tcp_established_s, tcp_fin_s, tcp_rst_s,
#                          udp_s, generic_s, flags, host_netns; }
GLOBALS = struct.Struct("=8I")
# struct rcl_ctlb_rev_key { __u64 cookie; __u32 be_ip_be; __u16 be_port_be; __u16 pad; }
CTLB_REV_KEY = struct.Struct("=Q4s2s2x")
# struct rcl_ctlb_rev_val { __u64 ts_ns; __u32 vip_be; __u16 vport_be; __u16 pad; }
CTLB_REV_VAL = struct.Struct("=Q4s2s2x")
# rcl_nat_globals / rcl_nat_stats key
U32 = struct.Struct("=I")
# rcl_nat_stats value, per CPU
U64 = struct.Struct("=Q")

# Field names in C order, for the layout test (pad fields omitted).
FIELDS: dict[str, tuple[str, ...]] = {
    "rcl_nat_fe_key": ("vip", "port", "proto"),
    "rcl_nat_fe_val": ("svc_id", "count", "local_count", "flags", "affinity_timeout_s"),
    "rcl_nat_be_key": ("svc_id", "ordinal"),
    "rcl_nat_be_val": ("ip", "port", "flags"),
    "rcl_nat_src_key": ("prefixlen", "svc_id", "src"),
    "rcl_nat_src_val": ("reserved",),
    "rcl_nat_aff_key": ("client_ip", "svc_id"),
    "rcl_nat_aff_val": ("ts_ns", "ip", "port", "ordinal"),
    "rcl_ct_key": ("src", "dst", "sport", "dport", "proto"),
    "rcl_ct_val": (
        "created_ns",
        "last_seen_ns",
        "svc_id",
        "be_ordinal",
        "orig_ip",
        "be_ip",
        "orig_port",
        "be_port",
        "type",
        "flags",
    ),
    "rcl_ct_way": ("ver", "tag", "state", "seen"),
    "rcl_ct_entry": ("key_a", "key_b", "val"),
    "rcl_ct_bucket": ("way", "spare", "slot"),
    "rcl_nat_globals": (
        "tcp_syn_sent_s",
        "tcp_established_s",
        "tcp_fin_s",
        "tcp_rst_s",
        "udp_s",
        "generic_s",
        "flags",
        "host_netns",
    ),
    "rcl_ctlb_rev_key": ("cookie", "be_ip", "be_port"),
    "rcl_ctlb_rev_val": ("ts_ns", "vip", "vport"),
}
CODECS: dict[str, struct.Struct] = {
    "rcl_nat_fe_key": FE_KEY,
    "rcl_nat_fe_val": FE_VAL,
    "rcl_nat_be_key": BE_KEY,
    "rcl_nat_be_val": BE_VAL,
    "rcl_nat_src_key": SRC_KEY,
    "rcl_nat_src_val": SRC_VAL,
    "rcl_nat_aff_key": AFF_KEY,
    "rcl_nat_aff_val": AFF_VAL,
    "rcl_ct_key": CT_KEY,
    "rcl_ct_val": CT_VAL,
    "rcl_ct_way": CT_WAY,
    "rcl_ct_entry": CT_ENTRY,
    "rcl_ct_bucket": CT_BUCKET,
    "rcl_nat_globals": GLOBALS,
    "rcl_ctlb_rev_key": CTLB_REV_KEY,
    "rcl_ctlb_rev_val": CTLB_REV_VAL,
}


def field_offsets(name: str) -> dict[str, int]:
    return struct_offsets(CODECS[name], FIELDS[name])


def struct_offsets(codec: struct.Struct, fields: tuple[str, ...]) -> dict[str, int]:
    """Offset of every named field of a codec, derived from its format string."""
    fmt = codec.format.lstrip("=")
    offsets: dict[str, int] = {}
    names = iter(fields)
    pos = 0
    for count, code in _tokens(fmt):
        if code == "s":  # one field of `count` raw bytes
            offsets[next(names)] = pos
            pos += count
        elif code == "x":  # explicit padding
            pos += count
        else:
            size = struct.calcsize("=" + code)
            for _ in range(count):
                offsets[next(names)] = pos
                pos += size
    return offsets


def _tokens(fmt: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    num = ""
    for ch in fmt:
        if ch.isdigit():
            num += ch
        else:
            out.append((int(num) if num else 1, ch))
            num = ""
    return out


class Proto(enum.IntEnum):
    TCP = socket.IPPROTO_TCP
    UDP = socket.IPPROTO_UDP


class FeFlag(enum.IntFlag):
    """struct rcl_nat_fe_val.flags (RCL_FE_*)."""

    AFFINITY = 1
    ETP_LOCAL = 2
    ITP_LOCAL = 4
    SRC_RANGES = 8


class CtType(enum.IntEnum):
    """struct rcl_ct_val.type (RCL_CT_*: NAT, policy and masquerade entries)."""

    FORWARD = 1
    REVERSE = 2
    POL_FWD = 3
    POL_REV = 4
    MASQ_FWD = 5
    MASQ_REV = 6


class CtFlag(enum.IntFlag):
    """struct rcl_ct_val.flags (RCL_CT_*)."""

    SYN = 1
    EST = 2
    FIN = 4
    RST = 8
    HAIRPIN = 16
    MASQ = 32  # NAT entries only (policy entries' POL_SRC bit)


class CtlbMode(enum.IntEnum):
    """struct rcl_nat_globals.flags & 3 (RCL_CTLB_*); 0 is Calico's default, TCP."""

    TCP = 0
    ALL = 1
    DISABLED = 2


# struct rcl_nat_globals.flags: the node's own sockets (network namespace
# host_netns) are balanced at connect time, TCP and UDP, whatever the mode
# (RCL_CTLB_HOST).
CTLB_HOST = 4
CTLB_MODE_MASK = 3


class NatStat(enum.IntEnum):
    """Index into the per-CPU rcl_nat_stats array (RCL_NS_*)."""

    DNAT_NEW = 0
    DNAT_CT = 1
    SNAT = 2
    REJECT_NO_BACKEND = 3
    REJECT_NO_LOCAL = 4
    STALE = 5
    ERROR = 6
    FRAG = 7
    CTLB_TCP = 8
    CTLB_UDP = 9
    CTLB_REJECT = 10
    CTLB_UDP_REV = 11
    REJECT_LIMITED = 12
    CT_EVICTED = 13
    SRC_DENIED = 14
    RPF_DROPPED = 15
    MASQ_NEW = 16
    MASQ_FAILED = 17


NAT_STATS_SIZE = 18


def stats_sum(chunks: list[bytes]) -> int:
    """Sum of one rcl_nat_stats slot over all CPUs."""
    return sum(U64.unpack_from(c)[0] for c in chunks)
