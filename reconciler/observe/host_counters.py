"""Host protection counters for `--status`: what our XDP program did on each
interface (rcl_xdp_stats) and the packets each untracked (doNotTrack) rule
denied, in XDP or in tc egress (rcl_untracked_drops)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.datapath.maps import host_types as ht
from reconciler.datapath.maps import policy_types as pl
from reconciler.datapath.maps.iface_types import IFSTATE_HEAD
from reconciler.kernel import bpf as bpfsys
from reconciler.plan.address import Address

XDP_FIELDS = ht.LAYOUTS[ht.MAP_XDP_STATS][1]  # dropped, allowed, failsafe, passed


def _per_cpu(chunks: Any) -> list[bytes]:
    return chunks if isinstance(chunks, list) else [chunks]


def _slot_names(root: str, by_index: Mapping[int, str]) -> dict[int, str]:
    """Interface slot -> interface name, from rcl_ifstate."""
    out = {}
    for key, chunks in bpfsys.pinned_items(f"{root}/maps/rcl_ifstate"):
        _flags, ifindex = IFSTATE_HEAD.unpack_from(_per_cpu(chunks)[0])
        if ifindex:
            out[int.from_bytes(key, "little")] = by_index.get(ifindex, f"#{ifindex}")
    return out


def collect(root: str, by_index: Mapping[int, str]) -> dict[str, Any]:
    """{"xdp": {iface: counters}, "untracked_drops": [...]}: interfaces whose
    XDP counters are all zero are left out; each drop row names its
    interface, direction (`in`: XDP, `out`: tc egress), program and rule."""
    names = _slot_names(root, by_index)
    xdp: dict[str, dict[str, int]] = {}
    for key, chunks in bpfsys.pinned_items(f"{root}/maps/{ht.MAP_XDP_STATS}"):
        counts = ht.xdp_stats_sum(_per_cpu(chunks))
        slot = int.from_bytes(key, "little")
        if any(counts.values()) and slot in names:
            xdp[names[slot]] = counts
    drops = []
    for key, chunks in bpfsys.pinned_items(f"{root}/maps/{ht.MAP_UNTRACKED_DROPS}"):
        slot, prog, rule, direction = ht.UNTRACKED_KEY.unpack(key)
        packets = sum(int.from_bytes(c[:8], "little") for c in _per_cpu(chunks))
        if packets:
            drops.append({
                "interface": names.get(slot, f"slot {slot}"),
                "direction": ht.UNTRACKED_DIRS.get(direction, str(direction)),
                "program": f"{prog:08x}",
                "rule": rule,
                "policy": None,
                "packets": packets,
            })  # fmt: skip
    drops.sort(key=lambda d: (d["interface"], d["direction"], -d["packets"], d["rule"]))
    return {"xdp": dict(sorted(xdp.items())), "untracked_drops": drops}


def rule_refs(objects: Mapping[str, Any]) -> dict[tuple[str, int], str]:
    """(program id, rule index) -> the rule as plans name it, from a desired
    state's verdict entries (their `info`)."""
    out = {}
    for address, obj in objects.items():
        if not address.startswith(f"map/{pl.MAP_VERDICT}/"):
            continue
        ref = (obj.info or {}).get("policy")
        if ref:
            prog = str(Address.parse(address).key).split("/", 1)[0]
            out[(prog, int(obj.attrs["rule"]))] = str(ref)
    return out


def name_rules(
    drops: list[dict[str, Any]], refs: Mapping[tuple[str, int], str]
) -> list[dict[str, Any]]:
    """`drops` with each row's `policy` filled where `refs` knows its rule."""
    return [{**d, "policy": refs.get((d["program"], d["rule"]), d["policy"])} for d in drops]


def render(status: Mapping[str, Any]) -> list[str]:
    """Text lines for --status (none when nothing was counted)."""
    lines: list[str] = []
    xdp = status.get("xdp") or {}
    if xdp:
        lines += ["", f"  {'XDP (untracked ingress)':<24} " +
                  " ".join(f"{f:>9}" for f in XDP_FIELDS)]  # fmt: skip
        for iface, c in xdp.items():
            lines.append(f"  {iface:<24} " + " ".join(f"{c.get(f, 0):>9}" for f in XDP_FIELDS))
    drops = status.get("untracked_drops") or []
    if drops:
        lines += ["", "Untracked (doNotTrack) drops by rule:"]
        for d in drops:
            where = "XDP" if d["direction"] == "in" else "tc egress"
            rule = d["policy"] or f"program {d['program']} rule {d['rule']}"
            lines.append(f"  {d['interface']:<16} {where:<10} {d['packets']:>9}  {rule}")
    return lines
