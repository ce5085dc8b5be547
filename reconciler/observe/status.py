"""`--status`: what is applied now, from the last-apply record and the kernel."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from reconciler.datapath import conntrack
from reconciler.datapath.maps import ct_fill
from reconciler.datapath.maps.iface_types import IFSTATE_HEAD, U32, Counters
from reconciler.datapath.maps.nat_types import MAP_CT, NatStat
from reconciler.kernel import bpf as bpfsys
from reconciler.observe import host_counters
from reconciler.observe.kernel import observe
from reconciler.plan.address import Address
from reconciler.plan.state import ObjKind
from reconciler.source_identity import recorded_commit


def _counters(root: str, by_index: dict[int, str]) -> dict[str, dict[str, int]]:
    out = {}
    for _slot, chunks in bpfsys.pinned_items(f"{root}/maps/rcl_ifstate"):
        per_cpu = chunks if isinstance(chunks, list) else [chunks]
        _flags, ifindex = IFSTATE_HEAD.unpack_from(per_cpu[0])
        if ifindex:  # an unused slot names no interface
            c = Counters.sum_per_cpu(per_cpu)
            out[by_index.get(ifindex, f"#{ifindex}")] = dataclasses.asdict(c)
    return out


def nat_stats(root: str) -> dict[str, int]:
    """Per-reason service NAT counters (struct index = nat_layout.NatStat)."""
    items = dict(bpfsys.pinned_items(f"{root}/maps/rcl_nat_stats"))
    if not items:
        return {}
    out = {}
    for stat in NatStat:
        chunks = items.get(U32.pack(stat.value), [])
        per_cpu = chunks if isinstance(chunks, list) else [chunks]
        out[stat.name.lower()] = sum(int.from_bytes(c[:8], "little") for c in per_cpu)
    return out


def _conntrack_fill(root: str, buckets: int) -> dict[str, int]:
    """The conntrack table's capacity and the ways that hold an entry
    (conntrack.held), in entries, not in buckets as its max_entries is."""
    fill = {"max_entries": buckets * conntrack.WAYS, "entries": 0}
    try:
        fd = bpfsys.obj_get(f"{root}/maps/{MAP_CT}")
    except OSError:
        return fill
    try:
        if conntrack.current_layout(bpfsys.map_info(fd)):
            fill["entries"] = conntrack.held(conntrack.table(fd))
    finally:
        bpfsys.close(fd)
    return fill


def collect_status(target: Any) -> dict[str, Any]:
    record_path = target.state_dir / "applied.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    bpfsys.ensure_bpffs(target.bpffs_root, create=False)
    observed, links = observe(target.bpffs_root, target.netns)
    by_index = {link.ifindex: link.name for link in links}
    owned: dict[str, int] = {}
    for obj in observed.objects.values():
        if obj.kind is ObjKind.NETFILTER:
            continue  # another agent's rules (kube-proxy's), not ours
        owned[obj.kind.value] = owned.get(obj.kind.value, 0) + 1
    # Service NAT entries are observed as raw tables, not objects: count them too.
    nat_entries = sum(len(table) for table in observed.tables.values())
    if nat_entries:
        owned["entry"] = owned.get("entry", 0) + nat_entries
    interfaces = sorted(
        {Address.parse(a).iface for a, o in observed.objects.items() if o.kind is ObjKind.TC}
    )
    # How full each map is: its entries (objects, or a bulk table's length) of max_entries.
    maps: dict[str, dict[str, int]] = {}
    for address, obj in observed.objects.items():
        if obj.kind is ObjKind.MAP:
            name = Address.parse(address).map
            maps[name] = {"max_entries": int(obj.attrs.get("max_entries", 0)), "entries": 0}
    for address, obj in observed.objects.items():
        if obj.kind is ObjKind.ENTRY and (name := Address.parse(address).map) in maps:
            maps[name]["entries"] += 1
    for name, table in observed.tables.items():
        if name in maps:
            maps[name]["entries"] = len(table)
    if MAP_CT in maps:  # buckets of ways, read in place, not entries of objects
        maps[MAP_CT] = _conntrack_fill(target.bpffs_root, maps[MAP_CT]["max_entries"])
    counts = nat_stats(target.bpffs_root)
    return {
        "node": target.node,
        "last_apply": record,
        "owned": owned,
        "interfaces": interfaces,
        "counters": _counters(target.bpffs_root, by_index),
        "service_nat": counts,
        # counted beside NAT's reasons in the datapath, but not NAT's
        "rpf_dropped": counts.pop("rpf_dropped", 0),
        "maps": maps,
        "foreign": list(observed.foreign),
        **host_counters.collect(target.bpffs_root, by_index),
    }


def _conntrack_line(status: dict[str, Any]) -> list[str]:
    """How full the conntrack table is, and whether it evicted live flows
    (bpfMapSizeConntrack too small, or a few crowded buckets: DoubleIfFull
    doubles only a full table: ct_fill)."""
    table = status.get("maps", {}).get(MAP_CT)
    if not table or not table["max_entries"]:
        return []
    held, size = table["entries"], table["max_entries"]
    evicted = status.get("service_nat", {}).get("ct_evicted", 0)
    why = (
        f"; {evicted:,} live flow(s) evicted for want of room; "
        + ct_fill.status_words(held, size)
        if evicted
        else ""
    )
    return [f"Conntrack: {ct_fill.share(held, size)}{why}"]


def source_words(source: dict[str, Any]) -> str:
    """A recorded source for a person, its commit named once: a commit's
    description already names it (`repo@ref (short id)`, the ref itself a
    full id when a watcher resolved it), a directory's does not."""
    description = str(source.get("description") or "")
    identity = str(source.get("identity") or "")
    commit = recorded_commit(source) or ""
    if not commit:
        return f"{description} ({identity})"
    description = description.replace(f"@{commit} ({commit[:12]})", f"@{commit}")
    return description if commit[:12] in description else f"{description} ({identity})"


def render_status(status: dict[str, Any]) -> str:
    lines = [f"Node {status['node']}"]
    rec = status["last_apply"]
    if rec:
        lines.append(
            f"Last apply: {rec['applied_at']} from {source_words(rec['source'])}, "
            f"{rec['changes_applied']} change(s)"
        )
    else:
        lines.append("Last apply: never (no record)")
    owned = ", ".join(f"{n} {k}" for k, n in sorted(status["owned"].items())) or "nothing"
    lines.append(f"Owned objects: {owned}")
    lines.append("")
    lines.append(
        f"  {'interface':<16} {'rx pkts':>10} {'rx bytes':>12} {'tx pkts':>10} "
        f"{'tx bytes':>12} {'nat':>8} {'dropped':>8}"
    )
    for iface in status["interfaces"]:
        c = status["counters"].get(iface, {})
        lines.append(
            f"  {iface:<16} {c.get('rx_packets', 0):>10} {c.get('rx_bytes', 0):>12} "
            f"{c.get('tx_packets', 0):>10} {c.get('tx_bytes', 0):>12} {c.get('nat', 0):>8} "
            f"{c.get('dropped', 0):>8}"
        )
    datapath = _conntrack_line(status)
    nat = {k: v for k, v in status.get("service_nat", {}).items() if v}
    if nat:
        datapath.append("Service NAT: " + ", ".join(f"{k} {v}" for k, v in nat.items()))
    if status.get("rpf_dropped"):
        datapath.append(f"Reverse-path check (bpfEnforceRPF): {status['rpf_dropped']} dropped")
    lines += ["", *datapath] if datapath else []
    lines += host_counters.render(status)
    for f in status["foreign"]:
        lines.append(f"Note: not ours, left alone: {f}")
    return "\n".join(lines) + "\n"
