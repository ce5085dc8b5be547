"""Policy programs as map entries, and the codecs that read them back.

Addresses (what plans show):
  map/rcl_pol_ep/<iface>                         slot ifindex ingress egress (program ids)
  map/rcl_pol_exact/<prog>/addr/10.0.0.7         class (a single address)
  map/rcl_pol_exact/<prog>/dport/tcp/80          class flags (a single port)
  map/rcl_pol_lpm/<prog>/addr/10.0.0.0/8         class (a wider prefix)
  map/rcl_pol_exact/<prog>/net/10.0.0.0/8        class (the same, for XDP's flat lookup)
  map/rcl_pol_lpm/<prog>/dport/tcp/8000/6        class flags (a port prefix)
  map/rcl_pol_lpm/<prog>/dport/any               class flags (every other protocol)
  map/rcl_pol_verdict/<prog>/<a>.<p>.<s>         action rule
  map/rcl_pol_verdict/<prog>/default             action rule
A program is named by its content (policy_compile): a changed policy is a new
program written beside the old one, the endpoint's entry in rcl_pol_ep is
switched to it in one write, and the old program's entries are removed after
(diff orders the three steps).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from reconciler.datapath.maps import policy_types as pl
from reconciler.datapath.maps.codec_types import Attrs, Codec, Context
from reconciler.datapath.maps.policy_types import (
    ACTION_NAMES,
    ACTIONS,
    ANY_CLASS,
    ANY_PORT,
    KIND_ADDR,
    KIND_DPORT,
    KIND_NET,
    KIND_SPORT,
)
from reconciler.protocols import PROTO_NAMES, PROTOCOLS

_ACTION_IDS = {name.lower(): value for name, value in ACTIONS.items()}
KIND_NAMES = {KIND_ADDR: "addr", KIND_DPORT: "dport", KIND_SPORT: "sport", KIND_NET: "net"}
_KIND_IDS = {v: k for k, v in KIND_NAMES.items()}
_PROTO_IDS = {name.lower(): num for name, num in PROTOCOLS.items()}


def proto_name(p: int) -> str:
    return PROTO_NAMES.get(p, str(p))


def _proto_id(name: str) -> int:
    return _PROTO_IDS.get(name, 0) or int(name)


def _ip(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


# -- rcl_pol_ep: by interface slot ---------------------------------------
def _ep_decode(key: bytes, value: Any, ctx: Context) -> tuple[str, Attrs] | None:
    slot = int.from_bytes(key, "little")
    ifindex, ingress, egress = pl.EP.unpack(value)
    if not ifindex:
        return None
    name = ctx.ifname(ifindex)
    attrs = {
        "slot": slot,
        "ifindex": ifindex,
        "ingress": f"{ingress:08x}",
        "egress": f"{egress:08x}",
    }
    return (f"{name}@0" if slot == 0 else name), attrs


def _ep_value(a: Mapping[str, Any]) -> bytes:
    return pl.EP.pack(a["ifindex"], int(a["ingress"], 16), int(a["egress"], 16))


def _ep_encode(_: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    return int(a["slot"]).to_bytes(4, "little"), _ep_value(a)


def _ep_clear(current: Any, before: Mapping[str, Any]) -> Any:
    if pl.EP.unpack(current)[0] != before["ifindex"]:
        return None  # the slot went to another interface since
    return bytes(pl.EP.size)


# -- class tables ---------------------------------------------------------
def _cls_suffix(
    prog: int, kind: int, proto: int, port: bytes, addr: bytes, plen: int | None
) -> str:
    head = f"{prog:08x}/{KIND_NAMES[kind]}"
    if kind == KIND_NET:
        return f"{head}/{_ip(addr)}/{proto}"
    if kind == KIND_ADDR:
        ip = _ip(addr)
        return f"{head}/{ip}" if plen is None else f"{head}/{ip}/{plen - pl.LPM_ADDR_BASE}"
    if plen is not None and plen == pl.LPM_ANY_PROTO:
        return f"{head}/any"
    port_no = int.from_bytes(port, "big")
    base = f"{head}/{proto_name(proto)}/{port_no}"
    return base if plen is None else f"{base}/{plen - pl.LPM_PORT_BASE}"


def _cls_fields(suffix: str) -> tuple[int, int, int, bytes, bytes, int | None]:
    """(prog, kind, proto, port, addr, lpm prefix length or None) of a suffix."""
    parts = suffix.split("/")
    prog, kind = int(parts[0], 16), _KIND_IDS[parts[1]]
    rest = parts[2:]
    if kind == KIND_NET:
        return prog, kind, int(rest[1]), bytes(2), socket.inet_aton(rest[0]), None
    if kind == KIND_ADDR:
        plen = pl.LPM_ADDR_BASE + int(rest[1]) if len(rest) > 1 else None
        return prog, kind, 0, bytes(2), socket.inet_aton(rest[0]), plen
    if rest == ["any"]:
        return prog, kind, 0, bytes(2), bytes(4), pl.LPM_ANY_PROTO
    plen = pl.LPM_PORT_BASE + int(rest[2]) if len(rest) > 2 else None
    return prog, kind, _proto_id(rest[0]), int(rest[1]).to_bytes(2, "big"), bytes(4), plen


def _exact_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    prog, kind, proto, port, addr = pl.CLS_KEY.unpack(key)
    cls, flags = pl.CLS.unpack(value)
    return _cls_suffix(prog, kind, proto, port, addr, None), {"class": cls, "flags": flags}


def _exact_encode(suffix: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    prog, kind, proto, port, addr, _ = _cls_fields(suffix)
    return pl.CLS_KEY.pack(prog, kind, proto, port, addr), pl.CLS.pack(a["class"], a["flags"])


def _lpm_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    plen, prog, kind, proto, port, addr = pl.LPM_KEY.unpack(key)
    cls, flags = pl.CLS.unpack(value)
    return _cls_suffix(prog, kind, proto, port, addr, plen), {"class": cls, "flags": flags}


def _lpm_encode(suffix: str, a: Mapping[str, Any]) -> tuple[bytes, bytes]:
    prog, kind, proto, port, addr, plen = _cls_fields(suffix)
    assert plen is not None
    return pl.LPM_KEY.pack(plen, prog, kind, proto, port, addr), pl.CLS.pack(a["class"], a["flags"])


# -- verdicts -------------------------------------------------------------
def _verdict_decode(key: bytes, value: Any, _ctx: Context) -> tuple[str, Attrs]:
    prog, a, p, s = pl.CELL_KEY.unpack(key)
    rule, action = pl.VERDICT.unpack(value)
    cell = "default" if (a, p, s) == (ANY_CLASS, ANY_PORT, ANY_PORT) else f"{a}.{p}.{s}"
    name = ACTION_NAMES.get(action, str(action)).lower()
    return f"{prog:08x}/{cell}", {"action": name, "rule": rule}


def _verdict_encode(suffix: str, attrs: Mapping[str, Any]) -> tuple[bytes, bytes]:
    prog_hex, cell = suffix.split("/")
    if cell == "default":
        a, p, s = ANY_CLASS, ANY_PORT, ANY_PORT
    else:
        a, p, s = (int(x) for x in cell.split("."))
    action = _ACTION_IDS[str(attrs["action"])]
    return pl.CELL_KEY.pack(int(prog_hex, 16), a, p, s), pl.VERDICT.pack(attrs["rule"], action)


CODECS: dict[str, Codec] = {
    pl.MAP_EP: Codec(_ep_decode, _ep_encode, lambda _cur, a: _ep_value(a), _ep_clear),
    pl.MAP_EXACT: Codec(_exact_decode, _exact_encode),
    pl.MAP_LPM: Codec(_lpm_decode, _lpm_encode),
    pl.MAP_VERDICT: Codec(_verdict_decode, _verdict_encode),
}
