"""Observe: read what we own in the kernel into an ObservedState.

Collectors talk to the kernel (rtnetlink dumps via rtnl, bpffs, libbpf syscalls);
the parsers that turn what they return into objects are plain functions.
Only objects that are provably ours appear: filters named `rcl:`, and pins
under our bpffs root. Anything else seen on a managed interface is reported
as foreign and never touched (an `ingress` qdisc too: it holds our clsact's
place).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.datapath import chains
from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import iface_types as iface_layout
from reconciler.datapath.programs import (
    FILTER_PREFIX,
    HOST_FILTER_SUFFIX,
    SET_MAPS,
    TC_PARENTS,
    XDP_NAME_PREFIX,
)
from reconciler.kernel import bpf as bpfsys
from reconciler.kernel import bpf_links, netfilter
from reconciler.kernel.rtnetlink import LinkMsg, QdiscMsg, Rtnl
from reconciler.plan.address import KUBE_PROXY_RULES, NAT_OUTGOING, Address, prog_ref
from reconciler.plan.state import Link, Obj, ObjKind, ObservedState, RawTable
from reconciler.plan.tables import Lazy


@dataclass(frozen=True, slots=True)
class TcFilter:
    ifname: str
    direction: str
    name: str | None
    prio: int
    classid: int = 0  # our filters' classid: the interface's rcl_ifstate slot


def read_links(rtnl: Rtnl, msgs: Iterable[LinkMsg] | None = None) -> list[Link]:
    addresses: dict[int, list[str]] = {}
    for addr in rtnl.addresses():
        addresses.setdefault(addr.ifindex, []).append(addr.address)
    return [
        Link(m.ifname, m.ifindex, tuple(sorted(addresses.get(m.ifindex, ()))))
        for m in (rtnl.links() if msgs is None else msgs)
    ]


def read_xdp(root: str, msgs: Iterable[LinkMsg]) -> tuple[list[Obj], list[str]]:
    """XDP programs attached in the namespace: ours (named XDP_NAME_PREFIX...
    and pinned in one of our xdp sets) as objects, any other as foreign."""
    attached = [m for m in msgs if m.xdp_prog_id]
    if not attached:
        return [], []
    ours: dict[int, str] = {}
    prog_root = Path(root) / "progs"
    for pin in sorted(prog_root.glob("xdp-*/*")) if prog_root.is_dir() else []:
        fd = bpfsys.obj_get(str(pin))
        try:
            info = bpfsys.prog_info(fd)
        finally:
            bpfsys.close(fd)
        if info.name.startswith(XDP_NAME_PREFIX):
            ours[info.id] = prog_ref("xdp", pin.parent.name.removeprefix("xdp-"))
    objs, foreign = [], []
    for m in attached:
        address = str(Address.of_xdp(m.ifname))
        if m.xdp_prog_id in ours:
            objs.append(Obj(address, ObjKind.XDP, {"prog": ours[m.xdp_prog_id]}))
            continue
        name = "?"
        try:
            fd = bpfsys.prog_fd_by_id(m.xdp_prog_id)
            try:
                name = bpfsys.prog_info(fd).name or "(unnamed)"
            finally:
                bpfsys.close(fd)
        except OSError:
            pass  # gone meanwhile, or not ours to open
        if name.startswith(XDP_NAME_PREFIX):
            # ours, but no pinned set holds it (its pin went, or its set was
            # built again): a stale attachment that the plan replaces
            objs.append(Obj(address, ObjKind.XDP, {"prog": UNPINNED_XDP}))
            continue
        foreign.append(f"{address} {m.xdp_mode} prog {m.xdp_prog_id} {name}")
    return objs, foreign


UNPINNED_XDP = prog_ref("xdp", "unpinned")  # our XDP program that no pinned set holds


def foreign_qdisc(ifname: str) -> str:
    """How observe reports an `ingress` qdisc (someone else's: ours is a
    clsact) on a link: it holds the handle our clsact needs, so tc attaches
    nothing of ours there (reconcile.refuse_foreign_at_our_place)."""
    return f"qdisc/{ifname} ingress"


def foreign_qdiscs(qdiscs: Iterable[QdiscMsg], links: Iterable[Link]) -> list[str]:
    """The links holding an `ingress` qdisc, as foreign_qdisc names them."""
    with_ingress = {q.ifindex for q in qdiscs if q.kind == "ingress"}
    return [foreign_qdisc(link.name) for link in links if link.ifindex in with_ingress]


def read_filters(
    rtnl: Rtnl, links: Iterable[Link], qdiscs: Iterable[QdiscMsg] | None = None
) -> list[TcFilter]:
    # One qdisc dump (`qdiscs`, else read here) says which links have a
    # clsact at all; only those can carry our tc filters, so the per-link
    # filter dumps stay few on a busy node.
    with_clsact = {q.ifindex for q in (rtnl.qdiscs() if qdiscs is None else qdiscs)
                   if q.kind == "clsact"}  # fmt: skip
    out = []
    for link in links:
        if link.ifindex not in with_clsact:
            continue
        for direction, parent in TC_PARENTS.items():
            try:
                msgs = rtnl.filters(link.ifindex, parent)
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.EINVAL):
                    continue  # the link went away since the link dump
                raise
            # rtnl already skips the per-priority header entries (no TCA_OPTIONS).
            out += [TcFilter(link.name, direction, m.name, m.prio, m.classid) for m in msgs]
    return out


def parse_filters(filters: Iterable[TcFilter]) -> tuple[list[Obj], list[str]]:
    objs, foreign = [], []
    for f in filters:
        address = Address.tc_text(f.ifname, f.direction)
        if f.name and f.name.startswith(FILTER_PREFIX):
            ref = f.name[len(FILTER_PREFIX) :]
            attrs: dict[str, Any] = {
                "prog": ref.removesuffix(HOST_FILTER_SUFFIX),
                "slot": f.classid,
            }
            if ref.endswith(HOST_FILTER_SUFFIX):
                attrs["hook"] = "host"
            objs.append(Obj(address, ObjKind.TC, attrs))
        else:
            foreign.append(f"{address} prio {f.prio} {f.name or '(unnamed)'}")
    return objs, foreign


def parse_prog_dirs(names: Mapping[str, list[str]]) -> list[Obj]:
    """progs/<set>-<hash>/ -> prog/<set>@<hash>; stray build leftovers keep their name."""
    objs = []
    for dirname, pins in names.items():
        functions = [name for name in pins if name not in SET_MAPS]
        prog_set, sep, phash = dirname.rpartition("-")
        ref = prog_ref(prog_set, phash) if sep and not dirname.startswith("tmp-") else dirname
        objs.append(Obj(str(Address.of_prog(ref)), ObjKind.PROG, {"programs": sorted(functions)}))
    return objs


def read_pins(
    root: str, undecoded: Collection[str] = ()
) -> tuple[
    dict[str, list[str]], dict[str, tuple[dict[str, Any], list[tuple[bytes, Any]]]], dict[str, int],
    dict[str, RawTable],
]:  # fmt: skip
    """Program set directories; for each pinned map its size and entries; the
    bulk NAT tables as open fds, for read_tables (the caller owns them); and
    the maps named in `undecoded` as read, entries not sliced or decoded."""
    progs: dict[str, list[str]] = {}
    maps: dict[str, tuple[dict[str, Any], list[tuple[bytes, Any]]]] = {}
    tables: dict[str, int] = {}
    raw: dict[str, RawTable] = {}
    prog_root, map_root = Path(root) / "progs", Path(root) / "maps"
    if prog_root.is_dir():
        for d in prog_root.iterdir():
            progs[d.name] = sorted(os.listdir(d)) if d.is_dir() else []
    if map_root.is_dir():
        for pin in map_root.iterdir():
            fd = bpfsys.obj_get(str(pin))
            try:
                info = bpfsys.map_info(fd)
                # Dataplane-owned maps (conntrack, affinity) can be huge: shape only.
                items: Any = []
                attrs = _map_attrs(pin.name, info)
                if pin.name in entries.TABLE_MAPS:
                    tables[pin.name], fd = fd, -1
                elif pin.name in undecoded and pin.name in entries.CODECS:
                    dump = bpfsys.map_raw(fd)
                    raw[pin.name] = RawTable(dump.keys, dump.values, dump.key_size, dump.value_size)
                elif pin.name in entries.CODECS and "layout" not in attrs:
                    # A map of another layout is replaced: its entries are
                    # planned afresh, not read with this codec.
                    items = bpfsys.map_items(fd)
                maps[pin.name] = (attrs, items)
            finally:
                if fd >= 0:
                    bpfsys.close(fd)
    return progs, maps, tables, raw


# Maps that can be found in another layout: is a kernel map the one the programs use?
_CURRENT_LAYOUT: dict[str, Callable[[bpfsys.MapInfo], bool]] = {
    ct_table.MAP: ct_table.current_layout,
    iface_layout.MAP_IFSTATE: iface_layout.current_layout,
}


def _map_attrs(name: str, info: bpfsys.MapInfo) -> dict[str, Any]:
    """A map as the diff compares it: its size, and for a map that can be
    found in another layout than the programs use, that layout (conntrack:
    a kernel hash map or a table of 4-way slots; interface state: a hash).
    The desired side never has that key, so such a map is replaced and its
    entries migrated (reconciler/datapath/conntrack.py) or planned afresh."""
    attrs: dict[str, Any] = {"max_entries": info.max_entries}
    current = _CURRENT_LAYOUT.get(name)
    if current is not None and not current(info):
        attrs["layout"] = (
            f"kernel map type {info.type}, {info.value_size}-byte values, flags {info.flags:#x}"
        )
    return attrs


def read_tables(fds: dict[str, int]) -> Mapping[str, RawTable]:
    """The bulk tables behind `fds` (closed when read), read in a thread. At
    10,000 services the read is mostly syscalls, which release the GIL: it
    overlaps compiling the desired state. Whoever looks at a table first waits
    for the read, and gets its error if it failed."""
    result: dict[str, RawTable] = {}
    failed: list[BaseException] = []

    def read() -> None:
        try:
            for name, fd in fds.items():
                dump = bpfsys.map_raw(fd)
                result[name] = RawTable(dump.keys, dump.values, dump.key_size, dump.value_size)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            failed.append(exc)
        finally:
            for fd in fds.values():
                bpfsys.close(fd)

    if not fds:
        return {}
    thread = threading.Thread(target=read, name="read-tables", daemon=True)
    thread.start()

    def wait() -> dict[str, RawTable]:
        thread.join()
        if failed:
            raise failed[0]
        return result

    return Lazy(wait)


def read_cgroup_links(root: str) -> tuple[list[Obj], list[str]]:
    """Our pinned cgroup links, named by the program set each one runs."""
    prog_root, link_root = Path(root) / "progs", Path(root) / "links"
    if not link_root.is_dir():
        return [], []
    ids: dict[int, str] = {}
    if prog_root.is_dir():
        for set_dir in prog_root.iterdir():
            prog_set, _, phash = set_dir.name.rpartition("-")
            for pin in set_dir.iterdir():
                if pin.name in SET_MAPS:
                    continue
                fd = bpfsys.obj_get(str(pin))
                try:
                    ids[bpfsys.prog_info(fd).id] = prog_ref(prog_set, phash)
                finally:
                    bpfsys.close(fd)
    objs = []
    for pin in sorted(link_root.iterdir()):
        fd = bpfsys.obj_get(str(pin))
        try:
            info = bpf_links.link_info(fd)
        finally:
            bpfsys.close(fd)
        prog = ids.get(info.prog_id, f"unpinned-prog-{info.prog_id}")
        objs.append(
            Obj(
                str(Address.of_cgroup(pin.name)),
                ObjKind.CGROUP,
                {"prog": prog, "cgroup_id": info.cgroup_id},
            )
        )
    return objs, []


def held_slots(observed: ObservedState) -> dict[int, int]:
    """ifindex -> the rcl_ifstate slot it holds, from the observed entries:
    compile keeps them. Should an interface hold two (written by hand), the
    lowest, whose entry has the plain name (entries.decode_all); slot 0 is
    never an interface's own."""
    held: dict[int, int] = {}
    prefix = f"{Address.of_map(iface_layout.MAP_IFSTATE)}/"  # its entries' addresses start so
    for address, obj in observed.objects.items():
        if obj.kind is ObjKind.ENTRY and address.startswith(prefix):
            ifindex, slot = obj.attrs["ifindex"], obj.attrs["slot"]
            if slot > 0:
                held[ifindex] = min(slot, held.get(ifindex, slot))
    return held


def read_netfilter(netns: str | None) -> list[Obj]:
    """kube-proxy's leftover chains, and our natOutgoing chain."""
    nft = netfilter.nft_chains(netns)
    found = [read_kube_proxy(netns, nft), read_nat_outgoing(netns, nft)]
    return [obj for obj in found if obj is not None]


def read_nat_outgoing(netns: str | None, nft: list[netfilter.Chain]) -> Obj | None:
    """Our natOutgoing chain (iptables-nft's nat table) and the jump to it."""
    if netfilter.Chain("nft", "ip", "nat", chains.NAT_OUTGOING_CHAIN) not in nft:
        return None
    rules = chains.ours_in_place(netfilter.save(netns, "nft", "ip", "nat"))
    return Obj(str(Address.of_iptables(NAT_OUTGOING)), ObjKind.IPTABLES, {"rules": rules})


def read_kube_proxy(netns: str | None, nft: list[netfilter.Chain]) -> Obj | None:
    """kube-proxy's chains in the namespace's netfilter tables (nftables and
    iptables-legacy, IPv4 and IPv6), as one object while there are any."""
    found = netfilter.kube_proxy_chains(netns, nft)
    if not found:
        return None
    where = sorted({f"{c.backend} {c.family} {c.table}" for c in found})
    address = str(Address.of_netfilter(KUBE_PROXY_RULES))
    return Obj(address, ObjKind.NETFILTER, {"chains": len(found)}, {"tables": where})


def observe(
    root: str, netns: str | None = None, tables: bool = True, undecoded: Collection[str] = ()
) -> tuple[ObservedState, list[Link]]:
    """Everything of ours in the kernel, plus the live links compile needs;
    `tables=False` leaves the bulk NAT tables unread (their maps are seen).
    The maps named in `undecoded` are read but their entries are left out of
    the objects, as raw dumps (ObservedState.raw) for with_entries."""
    # rtnl, not pyroute2: importing pyroute2 alone costs more than this whole read.
    with Rtnl(netns) as rtnl:
        link_msgs = rtnl.links()
        links = read_links(rtnl, link_msgs)
        qdiscs = rtnl.qdiscs()
        filters = read_filters(rtnl, links, qdiscs)
    ctx = entries.Context({link.ifindex: link.name for link in links})
    objs, foreign = parse_filters(filters)
    foreign += foreign_qdiscs(qdiscs, links)
    xdp_objs, xdp_foreign = read_xdp(root, link_msgs)
    objs += xdp_objs
    foreign += xdp_foreign
    progs, maps, table_fds, raw = read_pins(root, undecoded)
    if not tables:
        for fd in table_fds.values():
            bpfsys.close(fd)
        table_fds = {}
    bulk = read_tables(table_fds)
    objs += parse_prog_dirs(progs)
    objs += read_cgroup_links(root)[0]
    objs += read_netfilter(netns)
    for name, (map_attrs, items) in maps.items():
        objs.append(Obj(Address.map_text(name), ObjKind.MAP, map_attrs))
        if name not in entries.TABLE_MAPS:
            objs += [
                Obj(Address.entry_text(name, key), ObjKind.ENTRY, attrs)
                for key, attrs in entries.decode_all(name, items, ctx)
            ]
    observed = ObservedState(
        {o.address: o for o in objs}, tuple(sorted(foreign)), bulk, raw, tuple(links)
    )
    return observed, links


def with_entries(
    observed: ObservedState,
    links: Iterable[Link],
    known: Callable[[str, RawTable], Mapping[str, Obj] | None] = lambda name, table: None,
) -> ObservedState:
    """`observed` with the entries of its undecoded maps among its objects
    (their dumps stay, for reconciler.engine.entry_marks): `known(map, dump)`
    gives them when the dump is one recognised (a map left as an apply wrote
    it and verified it); the rest are decoded."""
    if not observed.raw:
        return observed
    ctx = entries.Context({link.ifindex: link.name for link in links})
    objects = dict(observed.objects)
    for name, table in observed.raw.items():
        seen = known(name, table)
        if seen is not None:
            objects.update(seen)
            continue
        for key, attrs in entries.decode_all(name, table.entries.items(), ctx):
            address = Address.entry_text(name, key)
            objects[address] = Obj(address, ObjKind.ENTRY, attrs)
    return dataclasses.replace(observed, objects=objects)
