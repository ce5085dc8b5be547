"""Host protection entries, and the codecs that read them back.

Addresses (what plans show):
  map/rcl_pol_hep/<iface>                  slot ifindex, a program id per chain, and the
                                           prefix lengths of the untracked egress program
  map/rcl_failsafe/in/tcp/22               a failsafe port, from any address
  map/rcl_failsafe/out/udp/53/10.0.0.0/8   one that honours a `net`
  map/rcl_host_ip/192.168.50.1             one of this node's addresses
  map/rcl_xdp_ep/<iface>                   the untracked program of an XDP interface
                                           and the prefix lengths its address classes use
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from reconciler.datapath.maps import host_types as ht
from reconciler.datapath.maps.codec_types import Attrs, Codec, Context
from reconciler.protocols import PROTO_NAMES, PROTOCOLS

_PROTO_IDS = {name.lower(): num for name, num in PROTOCOLS.items()}
_DIR_NAMES = {v: k for k, v in ht.FS_DIRS.items()}


def _proto_name(p: int) -> str:
    return PROTO_NAMES.get(p, str(p))


# -- rcl_pol_hep: by interface slot ----------------------------------------
def _hep_decode(key: bytes, value: Any, ctx: Context) -> tuple[str, Attrs] | None:
    slot = int.from_bytes(key, "little")
    ifindex, *progs, nets = ht.HEP.unpack(value)
    if not ifindex:
        return None
    attrs: Attrs = {"slot": slot, "ifindex": ifindex}
    attrs.update({chain: f"{prog:08x}" for chain, prog in zip(ht.HEP_CHAINS, progs, strict=True)})
    attrs[ht.HEP_NETS] = ht.nets_text(nets)
    name = ctx.ifname(ifindex)
    return (f"{name}@0" if slot == 0 else name), attrs


def _hep_value(a: Mapping[str, Any]) -> bytes:
    progs = (int(a[c], 16) for c in ht.HEP_CHAINS)
    return ht.HEP.pack(a["ifindex"], *progs, ht.nets_mask(a.get(ht.HEP_NETS, "")))


def _hep_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    return int(a["slot"]).to_bytes(4, "little"), _hep_value(a)


def _hep_clear(current: Any, before: Mapping[str, Any]) -> Any:
    if ht.HEP.unpack(current)[0] != before["ifindex"]:
        return None  # the slot went to another interface since
    return bytes(ht.HEP.size)


# -- rcl_failsafe ------------------------------------------------------------
def failsafe_suffix(direction: str, proto: int, port: int, net: str | None) -> str:
    base = f"{direction}/{_proto_name(proto).lower()}/{port}"
    return base if net is None or net == "0.0.0.0/0" else f"{base}/{net}"


def _failsafe_decode(key: bytes, _value: Any, _ctx: Context) -> tuple[str, Attrs]:
    plen, direction, proto, port, addr = ht.FAILSAFE_KEY.unpack(key)
    bits = plen - ht.FAILSAFE_BASE
    net = f"{socket.inet_ntoa(addr)}/{bits}" if bits else None
    return failsafe_suffix(_DIR_NAMES[direction], proto, int.from_bytes(port, "big"), net), {}


def _failsafe_encode(suffix: str, _a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    parts = suffix.split("/")
    direction, proto, port = ht.FS_DIRS[parts[0]], parts[1], int(parts[2])
    addr, bits = bytes(4), 0
    if len(parts) > 3:
        addr, bits = socket.inet_aton(parts[3]), int(parts[4])
    proto_id = _PROTO_IDS.get(proto) or int(proto)
    key = ht.FAILSAFE_KEY.pack(
        ht.FAILSAFE_BASE + bits, direction, proto_id, port.to_bytes(2, "big"), addr
    )
    return key, ht.U32.pack(1)


# -- rcl_host_ip ---------------------------------------------------------------
def _host_ip_decode(key: bytes, _value: Any, _ctx: Context) -> tuple[str, Attrs]:
    return socket.inet_ntoa(key), {}


def _host_ip_encode(suffix: str, _a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    return socket.inet_aton(suffix), ht.U32.pack(1)


# -- rcl_xdp_ep: by ifindex ----------------------------------------------------
def _xdp_ep_decode(key: bytes, value: Any, ctx: Context) -> tuple[str, Attrs]:
    ifindex = ht.U32.unpack(key)[0]
    slot, prog, nets = ht.XDP_EP.unpack(value)
    attrs: Attrs = {"ifindex": ifindex, "slot": slot, "untracked": f"{prog:08x}",
                    "nets": ht.nets_text(nets)}  # fmt: skip
    return ctx.ifname(ifindex), attrs


def _xdp_ep_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    value = ht.XDP_EP.pack(a["slot"], int(a["untracked"], 16), ht.nets_mask(a.get("nets", "")))
    return ht.U32.pack(a["ifindex"]), value


CODECS: dict[str, Codec] = {
    ht.MAP_HEP: Codec(_hep_decode, _hep_encode, lambda _cur, a: _hep_value(a), _hep_clear),
    ht.MAP_FAILSAFE: Codec(_failsafe_decode, _failsafe_encode),
    ht.MAP_HOST_IP: Codec(_host_ip_decode, _host_ip_encode),
    ht.MAP_XDP_EP: Codec(_xdp_ep_decode, _xdp_ep_encode),
}
