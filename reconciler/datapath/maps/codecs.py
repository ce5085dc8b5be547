"""Map entries we reconcile one by one: key text + attrs <-> kernel key/value bytes.

One codec per map. `decode` turns a kernel entry into (key text, attrs) for
observe; `encode` turns planned attrs into key and value bytes for the
drivers. The key text is the last part of the entry's address
(reconciler.plan.address builds and reads addresses). Both sides must agree
exactly, or plans never converge: the unit tests round-trip every codec.
Maps that the dataplane fills itself (conntrack, affinity, stats) are not
reconciled entry by entry.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from reconciler.datapath.maps import nat_types as nat
from reconciler.datapath.maps.codec_types import Attrs, Codec, Context
from reconciler.datapath.maps.host_codecs import CODECS as HOST_CODECS
from reconciler.datapath.maps.iface_types import (
    GLOBALS,
    IFSTATE,
    IFSTATE_HEAD,
    MAP_GLOBALS,
    MAP_IFSTATE,
    MAP_WEP_SRC,
    U32,
    WEP_NETS,
    WEP_SRC,
    with_head,
)
from reconciler.datapath.maps.policy_codecs import CODECS as POLICY_CODECS

_PROTO_NAMES = {int(p): p.name.lower() for p in nat.Proto}
_PROTO_NUMBERS = {v: k for k, v in _PROTO_NAMES.items()}


def _port_be(port: int) -> bytes:
    return port.to_bytes(2, "big")


# -- interface maps (bpf/lib/iface_types.h) ---------------------------------
def _per_cpu(value: Any) -> list[bytes]:
    return value if isinstance(value, list) else [value]


def _ifstate_decode(key: bytes, value: Any, ctx: Context) -> tuple[str, Attrs] | None:
    (slot,) = U32.unpack(key)
    heads = {IFSTATE_HEAD.unpack_from(chunk) for chunk in _per_cpu(value)}
    if heads == {(0, 0)}:
        return None  # an unused slot
    flags = {f for f, _ in heads}
    ifindexes = {i for _, i in heads}
    attrs: Attrs = {"slot": slot, "ifindex": min(ifindexes), "flags": min(flags)}
    # We write the same head to every CPU: CPUs that disagree were written by someone else.
    if len(flags) > 1:
        attrs["flags_per_cpu"] = "differ: " + ",".join(str(f) for f in sorted(flags))
    if len(ifindexes) > 1:
        attrs["ifindex_per_cpu"] = "differ: " + ",".join(str(i) for i in sorted(ifindexes))
    name = ctx.ifname(min(ifindexes))
    # Slot 0 is never attached (test runs use it): an entry there is never an
    # interface's own, and must not take its name from the one it should keep.
    return (f"{name}@0" if slot == 0 else name), attrs


def _ifstate_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    # Written to every CPU, counters zeroed. Counters are the datapath's, never compared.
    return U32.pack(a["slot"]), IFSTATE.pack(a["flags"], a["ifindex"], 0, 0, 0, 0, 0, 0)


def _ifstate_update(current: Any, a: Mapping[str, Any]) -> Any:
    # new flags on every CPU, the interface's counters kept
    return with_head(_per_cpu(current), a["flags"], a["ifindex"])


def _ifstate_clear(current: Any, before: Mapping[str, Any]) -> Any:
    chunks = _per_cpu(current)
    if any(IFSTATE_HEAD.unpack_from(c)[1] != before["ifindex"] for c in chunks):
        return None  # the slot went to another interface since the plan was made
    return [bytes(IFSTATE.size)] * len(chunks)


def _wep_src_decode(key: bytes, value: Any, ctx: Context) -> tuple[str, Attrs] | None:
    (slot,) = U32.unpack(key)
    ifindex, count, raw = WEP_SRC.unpack(value)
    if not ifindex:
        return None  # an unused slot
    nets = []
    for i in range(min(count, WEP_NETS)):
        addr, mask = raw[8 * i : 8 * i + 4], raw[8 * i + 4 : 8 * i + 8]
        nets.append(f"{socket.inet_ntoa(addr)}/{bin(int.from_bytes(mask, 'big')).count('1')}")
    attrs: Attrs = {"slot": slot, "ifindex": ifindex, "nets": ",".join(nets)}
    if count > WEP_NETS:
        attrs["count"] = count  # not ours: we write at most WEP_NETS
    name = ctx.ifname(ifindex)
    return (f"{name}@0" if slot == 0 else name), attrs


def wep_src_value(ifindex: int, nets: str) -> bytes:
    """rcl_wep_src's value: the interface and its `nets` ("10.65.0.10/32,..." or "")."""
    listed = [n for n in nets.split(",") if n]
    raw = b""
    for net in listed:
        addr, plen = net.split("/")
        mask = (0xFFFFFFFF << (32 - int(plen))) & 0xFFFFFFFF
        raw += socket.inet_aton(addr) + mask.to_bytes(4, "big")
    return WEP_SRC.pack(ifindex, len(listed), raw)


def _wep_src_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    return U32.pack(a["slot"]), wep_src_value(a["ifindex"], a["nets"])


def _wep_src_clear(current: Any, before: Mapping[str, Any]) -> Any:
    if WEP_SRC.unpack(current)[0] != before["ifindex"]:
        return None  # the slot went to another interface since
    return bytes(WEP_SRC.size)


# The key text of a one-entry array's only entry (rcl_globals, rcl_nat_globals).
GLOBAL_KEY = "0"

# rcl_globals.flags: defaultEndpointToHostAction (bpf/lib/iface_types.h RCL_G_EP_TO_HOST_*)
EP_TO_HOST = {"Drop": 0, "Return": 1, "Accept": 2}
_EP_TO_HOST_NAMES = {v: k for k, v in EP_TO_HOST.items()}
# rcl_globals.flags bits 2-3: bpfEnforceRPF (RCL_G_RPF_*)
RPF_SHIFT = 2
RPF = {"Disabled": 0, "Strict": 1, "Loose": 2}
_RPF_NAMES = {v: k for k, v in RPF.items()}
# rcl_globals.flags bits 4-5: encapsulation workloads may send
# (RCL_G_ALLOW_VXLAN, RCL_G_ALLOW_IPIP); bits 16-31: the VXLAN port
ALLOW_VXLAN = 16
ALLOW_IPIP = 32
VXLAN_PORT_SHIFT = 16


def _globals_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    log_level, flags = GLOBALS.unpack(value)
    to_host = _EP_TO_HOST_NAMES.get(flags & 3, str(flags & 3))
    rpf = (flags >> RPF_SHIFT) & 3
    return str(U32.unpack(key)[0]), {
        "log_level": log_level,
        "endpoint_to_host": to_host,
        "rpf": _RPF_NAMES.get(rpf, str(rpf)),
        "vxlan_port": flags >> VXLAN_PORT_SHIFT,
        "vxlan_from_workloads": "Allow" if flags & ALLOW_VXLAN else "Drop",
        "ipip_from_workloads": "Allow" if flags & ALLOW_IPIP else "Drop",
    }


def _globals_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    flags = (
        EP_TO_HOST[a["endpoint_to_host"]]
        | RPF[a["rpf"]] << RPF_SHIFT
        | (ALLOW_VXLAN if a["vxlan_from_workloads"] == "Allow" else 0)
        | (ALLOW_IPIP if a["ipip_from_workloads"] == "Allow" else 0)
        | int(a["vxlan_port"]) << VXLAN_PORT_SHIFT
    )
    return U32.pack(0), GLOBALS.pack(a["log_level"], flags)


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


def be_key_parts(suffix: str) -> tuple[int, int]:
    """be_suffix's (svc_id, ordinal)."""
    svc_hex, ordinal = suffix.split("/")
    return int(svc_hex, 16), int(ordinal)


def _be_encode(suffix: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    return be_key(*be_key_parts(suffix)), be_value(a["ip"], a["port"])


def src_suffix(svc_id: int, network: str) -> str:
    """A source range entry's key text: `<svc_id hex>/<address>/<prefix length>`."""
    return f"{svc_id:08x}/{network}"


def src_key(svc_id: int, network: str) -> bytes:
    addr, plen = network.split("/")
    return nat.SRC_KEY.pack(nat.SRC_KEY_BASE + int(plen), svc_id, socket.inet_aton(addr))


SRC_VALUE = nat.SRC_VAL.pack(0)


def _src_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    plen, svc_id, addr = nat.SRC_KEY.unpack(key)
    network = f"{socket.inet_ntoa(addr)}/{plen - nat.SRC_KEY_BASE}"
    return src_suffix(svc_id, network), {}  # the key is the whole entry


def _src_encode(suffix: str, _a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    svc_hex, network = suffix.split("/", 1)
    return src_key(int(svc_hex, 16), network), SRC_VALUE


# struct rcl_nat_globals' timeouts, as nat_layout names them. Its `flags`
# word shows in plans as `ctlb` (the connect-time LB mode) and `host_nat`
# (RCL_CTLB_HOST, 0 or 1).
_NAT_TIMEOUTS = nat.FIELDS[nat.MAP_NAT_GLOBALS][:-2]


def _nat_globals_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    *timeouts, flags, host_netns = nat.GLOBALS.unpack(value)
    attrs: Attrs = dict(zip(_NAT_TIMEOUTS, timeouts, strict=True))
    attrs["ctlb"] = flags & nat.CTLB_MODE_MASK
    attrs["host_nat"] = int(bool(flags & nat.CTLB_HOST))
    attrs["host_netns"] = host_netns
    return str(U32.unpack(key)[0]), attrs


def _nat_globals_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    flags = int(a["ctlb"]) | (nat.CTLB_HOST if a.get("host_nat") else 0)
    timeouts = (int(a[f]) for f in _NAT_TIMEOUTS)
    return U32.pack(0), nat.GLOBALS.pack(*timeouts, flags, int(a.get("host_netns", 0)))


CODECS: dict[str, Codec] = {
    MAP_IFSTATE: Codec(_ifstate_decode, _ifstate_encode, _ifstate_update, _ifstate_clear),
    MAP_GLOBALS: Codec(_globals_decode, _globals_encode),
    MAP_WEP_SRC: Codec(
        _wep_src_decode,
        _wep_src_encode,
        lambda _cur, a: wep_src_value(a["ifindex"], a["nets"]),
        _wep_src_clear,
    ),
    nat.MAP_NAT_FE: Codec(_fe_decode, _fe_encode),
    nat.MAP_NAT_BE: Codec(_be_decode, _be_encode),
    nat.MAP_NAT_SRC: Codec(_src_decode, _src_encode),
    nat.MAP_NAT_GLOBALS: Codec(_nat_globals_decode, _nat_globals_encode),
}


def managed_interface(
    ifindex: int, flags: int, name: str | None = None, slot: int = 0
) -> list[tuple[str, str, Attrs]]:
    """The entries the reconciler owns for one managed interface, as (map,
    key text, attrs): its state in its slot (with its counters, created
    zeroed). Compile uses it, and so do harnesses that drive the programs
    directly, so they set up exactly what apply would; they use slot 0, which
    a test run's packet names (it carries no classid) and no attached filter
    does."""
    shown = name or f"#{ifindex}"
    return [(MAP_IFSTATE, shown, {"slot": slot, "ifindex": ifindex, "flags": flags})]


# Maps reconciled as raw byte tables (see DesiredState.tables).
TABLE_MAPS = (nat.MAP_NAT_FE, nat.MAP_NAT_BE, nat.MAP_NAT_SRC)


def decode_one(name: str, key: bytes, value: bytes, ctx: Context) -> tuple[str, Attrs]:
    """One entry of a table map: (key text, attrs)."""
    decoded = CODECS[name].decode(key, value, ctx)
    assert decoded is not None, f"{name}: a table map's entries are never empty"
    return decoded


def svc_id_of(name: str, key: bytes, value: bytes) -> int:
    """The service id a NAT entry belongs to (for plan annotations)."""
    if name == nat.MAP_NAT_FE:
        return int(nat.FE_VAL.unpack(value)[0])
    if name == nat.MAP_NAT_SRC:
        return int(nat.SRC_KEY.unpack(key)[1])
    return int(nat.BE_KEY.unpack(key)[0])


def encode(name: str, key: str, attrs: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """Map `name`'s entry `key` (its key text) with `attrs`, as key and value bytes."""
    return CODECS[name].encode(key, attrs)


def keeps_kernel_fields(name: str) -> bool:
    """Does an update of an entry of this map start from the value in the kernel?"""
    return CODECS[name].update is not None


def updated(name: str, current: Any, attrs: Mapping[str, Any]) -> Any:
    """The value an update of an entry of this map writes over `current`, the kernel's."""
    update = CODECS[name].update
    assert update is not None
    return update(current, attrs)


def cleared_by_write(name: str) -> bool:
    """Are this map's entries removed by writing their key (an array's slot), not deleting it?"""
    return CODECS[name].clear is not None


def cleared(name: str, current: Any, before: Mapping[str, Any]) -> Any:
    """The value that removes `before` from its slot, or None: not its slot
    any more (or not an entry that is removed by a write)."""
    clear = CODECS[name].clear
    return None if clear is None else clear(current, before)


def decode_all(name: str, items: Any, ctx: Context) -> list[tuple[str, Attrs]]:
    """Every entry of map `name` that holds one, as (key text, attrs)."""
    codec = CODECS.get(name)
    if codec is None:
        return []
    out = []
    seen: set[str] = set()
    for key, value in items:
        decoded = codec.decode(key, value, ctx)
        if decoded is None:
            continue
        text, attrs = decoded
        # An interface in two slots (written by hand): the first (the lowest
        # slot, the one it keeps: observe.held_slots) has the plain name.
        if text in seen:
            text += f"@{attrs.get('slot', key.hex())}"
        seen.add(text)
        out.append((text, attrs))
    return out


CODECS.update(POLICY_CODECS)
CODECS.update(HOST_CODECS)
