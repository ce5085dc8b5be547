"""Observe: read what we own in the kernel into an ObservedState.

Collectors talk to the kernel (pyroute2 netlink, bpffs, libbpf syscalls);
the parsers that turn what they return into objects are plain functions.
Only objects that are provably ours appear: filters named `rcl:`, and pins
under our bpffs root. Anything else seen on a managed interface is reported
as foreign and never touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import bpfsys
from reconciler.iface_layout import GLOBALS, IFSTATE, U32
from reconciler.state import Link, Obj, ObjKind, ObservedState

FILTER_PREFIX = "rcl:"
TC_PRIO = 0x7A00  # our clsact filters' priority; anything else there is not ours
PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}


@dataclass(frozen=True, slots=True)
class TcFilter:
    ifname: str
    direction: str
    name: str | None
    prio: int


def read_links(ipr: Any) -> list[Link]:
    return [Link(m.get_attr("IFLA_IFNAME"), m["index"]) for m in ipr.get_links()]


def read_filters(ipr: Any, links: Iterable[Link]) -> list[TcFilter]:
    out = []
    for link in links:
        for direction, parent in PARENTS.items():
            try:
                msgs = ipr.get_filters(index=link.ifindex, parent=parent)
            except Exception:  # noqa: BLE001 - no clsact qdisc, or the link just went away
                continue
            for msg in msgs:
                opts = msg.get_attr("TCA_OPTIONS")
                if opts is None:
                    continue  # the per-priority header entry, not a filter
                name = opts.get_attr("TCA_BPF_NAME") if msg.get_attr("TCA_KIND") == "bpf" else None
                out.append(TcFilter(link.name, direction, name, msg["info"] >> 16))
    return out


def parse_filters(filters: Iterable[TcFilter]) -> tuple[list[Obj], list[str]]:
    objs, foreign = [], []
    for f in filters:
        if f.name and f.name.startswith(FILTER_PREFIX):
            objs.append(
                Obj(f"tc/{f.ifname}/{f.direction}", ObjKind.TC, {"prog": f.name[len(FILTER_PREFIX):]})
            )
        else:
            foreign.append(f"tc/{f.ifname}/{f.direction} prio {f.prio} {f.name or '(unnamed)'}")
    return objs, foreign


def parse_prog_dirs(names: Mapping[str, list[str]]) -> list[Obj]:
    """progs/<set>-<hash>/ -> prog/<set>@<hash>; stray build leftovers keep their name."""
    objs = []
    for dirname, functions in names.items():
        prog_set, sep, phash = dirname.rpartition("-")
        address = f"prog/{prog_set}@{phash}" if sep and not dirname.startswith("tmp-") else f"prog/{dirname}"
        objs.append(Obj(address, ObjKind.PROG, {"programs": sorted(functions)}))
    return objs


def _ifname(ifindex: int, by_index: Mapping[int, str]) -> str:
    return by_index.get(ifindex, f"#{ifindex}")  # '#n': an interface that no longer exists


def parse_map_entries(
    name: str, items: Iterable[tuple[bytes, Any]], by_index: Mapping[int, str]
) -> list[Obj]:
    objs = []
    for key, value in items:
        if name == "rcl_ifstate":
            (ifindex,) = U32.unpack(key)
            flags, _ = IFSTATE.unpack(value)
            addr = f"map/{name}/{_ifname(ifindex, by_index)}"
            objs.append(Obj(addr, ObjKind.ENTRY, {"ifindex": ifindex, "flags": flags}))
        elif name == "rcl_counters":
            (ifindex,) = U32.unpack(key)
            addr = f"map/{name}/{_ifname(ifindex, by_index)}"
            objs.append(Obj(addr, ObjKind.ENTRY, {"ifindex": ifindex}))
        elif name == "rcl_globals":
            log_level, _flags = GLOBALS.unpack(value)
            objs.append(Obj(f"map/{name}/0", ObjKind.ENTRY, {"log_level": log_level}))
    return objs


def read_pins(root: str) -> tuple[dict[str, list[str]], dict[str, tuple[int, list[tuple[bytes, Any]]]]]:
    """Program set directories, and for each pinned map its size and entries."""
    progs: dict[str, list[str]] = {}
    maps: dict[str, tuple[int, list[tuple[bytes, Any]]]] = {}
    prog_root, map_root = Path(root) / "progs", Path(root) / "maps"
    if prog_root.is_dir():
        for d in prog_root.iterdir():
            progs[d.name] = sorted(os.listdir(d)) if d.is_dir() else []
    if map_root.is_dir():
        for pin in map_root.iterdir():
            fd = bpfsys.obj_get(str(pin))
            try:
                info = bpfsys.map_info(fd)
                maps[pin.name] = (info.max_entries, bpfsys.map_items(fd))
            finally:
                bpfsys.close(fd)
    return progs, maps


def observe(root: str, netns: str | None = None) -> tuple[ObservedState, list[Link]]:
    """Everything of ours in the kernel, plus the live links compile needs."""
    from reconciler.netlink import route

    with route(netns) as ipr:
        links = read_links(ipr)
        filters = read_filters(ipr, links)
    by_index = {link.ifindex: link.name for link in links}
    objs, foreign = parse_filters(filters)
    progs, maps = read_pins(root)
    objs += parse_prog_dirs(progs)
    for name, (max_entries, items) in maps.items():
        objs.append(Obj(f"map/{name}", ObjKind.MAP, {"max_entries": max_entries}))
        objs += parse_map_entries(name, items, by_index)
    return ObservedState({o.address: o for o in objs}, tuple(sorted(foreign))), links
