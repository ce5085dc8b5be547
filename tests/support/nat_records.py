"""Readable records of the NAT maps' keys and values (bpf/lib/nat_types.h),
each encoding to and decoding from its struct in nat_layout. Tests and
harnesses build and read map entries with them; the reconciler itself
works on the raw structs, so a CLI run never pays for creating these
classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from reconciler.datapath.maps.nat_types import (
    AFF_KEY,
    AFF_VAL,
    BE_KEY,
    BE_VAL,
    CT_KEY,
    CT_VAL,
    CTLB_HOST,
    CTLB_MODE_MASK,
    CTLB_REV_KEY,
    CTLB_REV_VAL,
    FE_KEY,
    FE_VAL,
    GLOBALS,
    CtFlag,
    CtlbMode,
    CtType,
    FeFlag,
    Proto,
)


def _port_be(port: int) -> bytes:
    return port.to_bytes(2, "big")


def _port(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


@dataclass(frozen=True, slots=True)
class FrontendKey:
    """struct rcl_nat_fe_key."""

    vip: IPv4Address
    port: int
    proto: Proto

    def encode(self) -> bytes:
        return FE_KEY.pack(self.vip.packed, _port_be(self.port), self.proto)

    @classmethod
    def decode(cls, raw: bytes) -> FrontendKey:
        vip, port, proto = FE_KEY.unpack(raw)
        return cls(IPv4Address(vip), _port(port), Proto(proto))


@dataclass(frozen=True, slots=True)
class Frontend:
    """struct rcl_nat_fe_val."""

    svc_id: int
    count: int
    local_count: int = 0
    flags: FeFlag = FeFlag(0)
    affinity_timeout_s: int = 0

    def encode(self) -> bytes:
        return FE_VAL.pack(
            self.svc_id, self.count, self.local_count, int(self.flags), self.affinity_timeout_s
        )

    @classmethod
    def decode(cls, raw: bytes) -> Frontend:
        svc_id, count, local_count, flags, timeout = FE_VAL.unpack(raw)
        return cls(svc_id, count, local_count, FeFlag(flags), timeout)


@dataclass(frozen=True, slots=True)
class BackendKey:
    """struct rcl_nat_be_key."""

    svc_id: int
    ordinal: int

    def encode(self) -> bytes:
        return BE_KEY.pack(self.svc_id, self.ordinal)

    @classmethod
    def decode(cls, raw: bytes) -> BackendKey:
        return cls(*BE_KEY.unpack(raw))


@dataclass(frozen=True, slots=True)
class Backend:
    """struct rcl_nat_be_val."""

    ip: IPv4Address
    port: int
    flags: int = 0

    def encode(self) -> bytes:
        return BE_VAL.pack(self.ip.packed, _port_be(self.port), self.flags)

    @classmethod
    def decode(cls, raw: bytes) -> Backend:
        ip, port, flags = BE_VAL.unpack(raw)
        return cls(IPv4Address(ip), _port(port), flags)


@dataclass(frozen=True, slots=True)
class AffinityKey:
    """struct rcl_nat_aff_key."""

    client_ip: IPv4Address
    svc_id: int

    def encode(self) -> bytes:
        return AFF_KEY.pack(self.client_ip.packed, self.svc_id)

    @classmethod
    def decode(cls, raw: bytes) -> AffinityKey:
        ip, svc_id = AFF_KEY.unpack(raw)
        return cls(IPv4Address(ip), svc_id)


@dataclass(frozen=True, slots=True)
class Affinity:
    """struct rcl_nat_aff_val."""

    ts_ns: int
    ip: IPv4Address
    port: int
    ordinal: int

    def encode(self) -> bytes:
        return AFF_VAL.pack(self.ts_ns, self.ip.packed, _port_be(self.port), self.ordinal)

    @classmethod
    def decode(cls, raw: bytes) -> Affinity:
        ts, ip, port, ordinal = AFF_VAL.unpack(raw)
        return cls(ts, IPv4Address(ip), _port(port), ordinal)


@dataclass(frozen=True, slots=True)
class CtKey:
    """struct rcl_ct_key: a packet's 5-tuple as it arrives."""

    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    proto: Proto

    def encode(self) -> bytes:
        return CT_KEY.pack(
            self.src.packed, self.dst.packed, _port_be(self.sport), _port_be(self.dport), self.proto
        )

    @classmethod
    def decode(cls, raw: bytes) -> CtKey:
        src, dst, sport, dport, proto = CT_KEY.unpack(raw)
        return cls(IPv4Address(src), IPv4Address(dst), _port(sport), _port(dport), Proto(proto))


@dataclass(frozen=True, slots=True)
class CtEntry:
    """struct rcl_ct_val."""

    created_ns: int
    last_seen_ns: int
    svc_id: int
    be_ordinal: int
    orig_ip: IPv4Address
    be_ip: IPv4Address
    orig_port: int
    be_port: int
    type: CtType
    flags: CtFlag

    def encode(self) -> bytes:
        return CT_VAL.pack(
            self.created_ns,
            self.last_seen_ns,
            self.svc_id,
            self.be_ordinal,
            self.orig_ip.packed,
            self.be_ip.packed,
            _port_be(self.orig_port),
            _port_be(self.be_port),
            self.type,
            int(self.flags),
        )

    @classmethod
    def decode(cls, raw: bytes) -> CtEntry:
        c, ls, svc, ordn, oip, bip, oport, bport, typ, flags = CT_VAL.unpack(raw)
        return cls(
            c,
            ls,
            svc,
            ordn,
            IPv4Address(oip),
            IPv4Address(bip),
            _port(oport),
            _port(bport),
            CtType(typ),
            CtFlag(flags),
        )


@dataclass(frozen=True, slots=True)
class NatGlobals:
    """struct rcl_nat_globals; a timeout of 0 means the datapath's default."""

    tcp_syn_sent_s: int = 0
    tcp_established_s: int = 0
    tcp_fin_s: int = 0
    tcp_rst_s: int = 0
    udp_s: int = 0
    generic_s: int = 0
    ctlb: CtlbMode = CtlbMode.TCP
    host_nat: bool = False  # RCL_CTLB_HOST
    host_netns: int = 0

    def encode(self) -> bytes:
        return GLOBALS.pack(
            self.tcp_syn_sent_s,
            self.tcp_established_s,
            self.tcp_fin_s,
            self.tcp_rst_s,
            self.udp_s,
            self.generic_s,
            int(self.ctlb) | (CTLB_HOST if self.host_nat else 0),
            self.host_netns,
        )

    @classmethod
    def decode(cls, raw: bytes) -> NatGlobals:
        syn, est, fin, rst, udp, generic, flags, netns = GLOBALS.unpack(raw)
        mode = CtlbMode(flags & CTLB_MODE_MASK)
        return cls(syn, est, fin, rst, udp, generic, mode, bool(flags & CTLB_HOST), netns)


@dataclass(frozen=True, slots=True)
class CtlbRevKey:
    """struct rcl_ctlb_rev_key."""

    cookie: int
    be_ip: IPv4Address
    be_port: int

    def encode(self) -> bytes:
        return CTLB_REV_KEY.pack(self.cookie, self.be_ip.packed, _port_be(self.be_port))

    @classmethod
    def decode(cls, raw: bytes) -> CtlbRevKey:
        cookie, ip, port = CTLB_REV_KEY.unpack(raw)
        return cls(cookie, IPv4Address(ip), _port(port))


@dataclass(frozen=True, slots=True)
class CtlbRev:
    """struct rcl_ctlb_rev_val."""

    ts_ns: int
    vip: IPv4Address
    vport: int

    def encode(self) -> bytes:
        return CTLB_REV_VAL.pack(self.ts_ns, self.vip.packed, _port_be(self.vport))

    @classmethod
    def decode(cls, raw: bytes) -> CtlbRev:
        ts, ip, port = CTLB_REV_VAL.unpack(raw)
        return cls(ts, IPv4Address(ip), _port(port))
