"""Map entries we reconcile one by one: address + attrs <-> kernel key/value bytes.

One codec per map. `decode` turns a kernel entry into (address, attrs) for
observe; `encode` turns planned attrs into key and value bytes for the
drivers. Both sides must agree exactly, or plans never converge: the unit
tests round-trip every codec. Maps that the dataplane fills itself
(conntrack, affinity, stats) are not reconciled entry by entry.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import nat_layout as nat
from reconciler.iface_layout import GLOBALS, IFSTATE, IFSTATE_FLAGS, U32, with_flags

Attrs = dict[str, Any]
_PROTO_NAMES = {6: "tcp", 17: "udp"}
_PROTO_NUMBERS = {v: k for k, v in _PROTO_NAMES.items()}


@dataclass(frozen=True, slots=True)
class Context:
    """What decoding needs besides the bytes: interface names by index."""

    ifnames: Mapping[int, str]

    def ifname(self, ifindex: int) -> str:
        return self.ifnames.get(ifindex, f"#{ifindex}")  # '#n': that interface is gone


@dataclass(frozen=True, slots=True)
class Codec:
    decode: Callable[[bytes, Any, Context], tuple[str, Attrs]]
    encode: Callable[[str, Mapping[str, Any]], tuple[bytes, bytes]]
    # The value an update writes, from the one in the kernel: for entries whose
    # value holds fields the datapath owns (counters), which an update keeps.
    update: Callable[[Any, Mapping[str, Any]], Any] | None = None


def _port_be(port: int) -> bytes:
    return port.to_bytes(2, "big")


# -- interface maps (bpf/lib/iface_types.h) ---------------------------------
def _ifstate_decode(key: bytes, value: Any, ctx: Context) -> tuple[str, Attrs]:
    (ifindex,) = U32.unpack(key)
    chunks = value if isinstance(value, list) else [value]
    every = {IFSTATE_FLAGS.unpack_from(chunk)[0] for chunk in chunks}
    attrs: Attrs = {"ifindex": ifindex, "flags": min(every)}
    if len(every) > 1:  # we write the same flags to every CPU: someone else wrote these
        attrs["flags_per_cpu"] = "differ: " + ",".join(str(f) for f in sorted(every))
    return ctx.ifname(ifindex), attrs


def _ifstate_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    # Written to every CPU, counters zeroed. Counters are the datapath's, never compared.
    return U32.pack(a["ifindex"]), IFSTATE.pack(a["flags"], 0, 0, 0, 0, 0, 0, 0)


def _ifstate_update(current: Any, a: Mapping[str, Any]) -> Any:
    # new flags on every CPU, the interface's counters kept
    return with_flags(current if isinstance(current, list) else [current], a["flags"])


def _globals_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    log_level, _flags = GLOBALS.unpack(value)
    return str(U32.unpack(key)[0]), {"log_level": log_level}


def _globals_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    return U32.pack(0), GLOBALS.pack(a["log_level"], 0)


# -- service NAT maps (bpf/lib/nat_types.h) -----------------------------------
def fe_suffix(vip: str, port: int, proto: str) -> str:
    return f"{vip}:{port}/{proto}"


def _fe_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    vip, port, proto = nat.FE_KEY.unpack(key)
    svc_id, count, local_count, flags, timeout = nat.FE_VAL.unpack(value)
    suffix = fe_suffix(
        socket.inet_ntoa(vip), int.from_bytes(port, "big"), _PROTO_NAMES.get(proto, str(proto))
    )
    return suffix, {
        "svc_id": svc_id,
        "count": count,
        "local_count": local_count,
        "flags": flags,
        "affinity_timeout_s": timeout,
    }


def fe_key(vip: str, port: int, proto: str) -> bytes:
    return nat.FE_KEY.pack(socket.inet_aton(vip), _port_be(port), _PROTO_NUMBERS[proto])


def fe_value(svc_id: int, count: int, local_count: int, flags: int, timeout: int) -> bytes:
    return nat.FE_VAL.pack(svc_id, count, local_count, flags, timeout)


def _fe_encode(suffix: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    vip_port, proto = suffix.rsplit("/", 1)
    vip, port = vip_port.rsplit(":", 1)
    value = fe_value(a["svc_id"], a["count"], a["local_count"], a["flags"], a["affinity_timeout_s"])
    return fe_key(vip, int(port), proto), value


def be_suffix(svc_id: int, ordinal: int) -> str:
    return f"{svc_id:08x}/{ordinal}"


def _be_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    svc_id, ordinal = nat.BE_KEY.unpack(key)
    ip, port, _flags = nat.BE_VAL.unpack(value)
    return be_suffix(svc_id, ordinal), {
        "ip": socket.inet_ntoa(ip),
        "port": int.from_bytes(port, "big"),
    }


def be_key(svc_id: int, ordinal: int) -> bytes:
    return nat.BE_KEY.pack(svc_id, ordinal)


def be_value(ip: str, port: int) -> bytes:
    return nat.BE_VAL.pack(socket.inet_aton(ip), _port_be(port), 0)


def _be_encode(suffix: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    svc_hex, ordinal = suffix.split("/")
    return be_key(int(svc_hex, 16), int(ordinal)), be_value(a["ip"], a["port"])


# struct rcl_nat_globals' fields, as nat_layout names them, except that its
# `flags` word holds only the connect-time LB mode: plans call it `ctlb`.
_NAT_GLOBAL_FIELDS = (*nat.FIELDS["rcl_nat_globals"][:-1], "ctlb")


def _nat_globals_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    return str(U32.unpack(key)[0]), dict(
        zip(_NAT_GLOBAL_FIELDS, nat.GLOBALS.unpack(value), strict=True)
    )


def _nat_globals_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    return U32.pack(0), nat.GLOBALS.pack(*(int(a[f]) for f in _NAT_GLOBAL_FIELDS))


CODECS: dict[str, Codec] = {
    "rcl_ifstate": Codec(_ifstate_decode, _ifstate_encode, _ifstate_update),
    "rcl_globals": Codec(_globals_decode, _globals_encode),
    nat.MAP_NAT_FE: Codec(_fe_decode, _fe_encode),
    nat.MAP_NAT_BE: Codec(_be_decode, _be_encode),
    nat.MAP_NAT_GLOBALS: Codec(_nat_globals_decode, _nat_globals_encode),
}


def managed_interface(ifindex: int, flags: int, name: str | None = None) -> list[tuple[str, Attrs]]:
    """The entries the reconciler owns for one managed interface: its state
    (with its counters, created zeroed). Compile uses it, and so do harnesses
    that drive the programs directly, so they set up exactly what apply would."""
    shown = name or f"#{ifindex}"
    return [(f"map/rcl_ifstate/{shown}", {"ifindex": ifindex, "flags": flags})]


# Maps reconciled as raw byte tables (see DesiredState.tables).
TABLE_MAPS = (nat.MAP_NAT_FE, nat.MAP_NAT_BE)


def decode_one(name: str, key: bytes, value: bytes, ctx: Context) -> tuple[str, Attrs]:
    suffix, attrs = CODECS[name].decode(key, value, ctx)
    return f"map/{name}/{suffix}", attrs


def svc_id_of(name: str, key: bytes, value: bytes) -> int:
    """The service id a NAT entry belongs to (for plan annotations)."""
    if name == nat.MAP_NAT_FE:
        return int(nat.FE_VAL.unpack(value)[0])
    return int(nat.BE_KEY.unpack(key)[0])


def split(address: str) -> tuple[str, str]:
    """'map/rcl_nat_fe/10.96.0.10:53/udp' -> ('rcl_nat_fe', '10.96.0.10:53/udp')."""
    _, name, suffix = address.split("/", 2)
    return name, suffix


def encode(address: str, attrs: Mapping[str, Any]) -> tuple[bytes, bytes]:
    name, suffix = split(address)
    return CODECS[name].encode(suffix, attrs)


def keeps_kernel_fields(address: str) -> bool:
    """Does an update of this entry start from the value in the kernel?"""
    return CODECS[split(address)[0]].update is not None


def updated(address: str, current: Any, attrs: Mapping[str, Any]) -> Any:
    """The value an update of this entry writes over `current`, the kernel's."""
    update = CODECS[split(address)[0]].update
    assert update is not None
    return update(current, attrs)


def decode_all(name: str, items: Any, ctx: Context) -> list[tuple[str, Attrs]]:
    codec = CODECS.get(name)
    if codec is None:
        return []
    out = []
    for key, value in items:
        suffix, attrs = codec.decode(key, value, ctx)
        out.append((f"map/{name}/{suffix}", attrs))
    return out
