"""Compile: resources + node + live link names -> DesiredState. Pure, no I/O."""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.config import felix
from reconciler.config.model import Resource
from reconciler.datapath.maps.iface_types import MAX_SLOT
from reconciler.datapath.maps.nat_types import ct_buckets_for
from reconciler.datapath.programs import CONNECT_PROGRAMS, TC_PROGRAMS
from reconciler.plan.address import Address, prog_ref
from reconciler.plan.state import DesiredState, Link, Obj, ObjKind

PROG_SET = "tc"
DIRECTIONS = ("ingress", "egress")


class Role(enum.IntFlag):
    """Interface roles; the values are the flag bits the tc program reads."""

    WORKLOAD = 1
    DATA = 2
    L3 = 4
    HOST_ENDPOINT = 8

    def name_str(self) -> str:
        return "+".join(r.name.lower() for r in Role if r in self and r.name)


@dataclass(frozen=True, slots=True)
class Selected:
    link: Link
    role: Role
    endpoint: str  # the resource that selected it, for plans and status


def _excluded(config: Mapping[str, Any]) -> list[re.Pattern[str]]:
    patterns = []
    for raw in str(config.get("interfaceExclude") or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        if len(entry) > 1 and entry.startswith("/") and entry.endswith("/"):
            patterns.append(re.compile(entry[1:-1]))
        else:
            patterns.append(re.compile(re.escape(entry) + r"\Z"))
    return patterns


def select_interfaces(
    resources: Sequence[Resource], node: str, links: Iterable[Link], config: Mapping[str, Any]
) -> tuple[list[Selected], list[str]]:
    """Which live interfaces this node's dataplane manages, and why."""
    warnings: list[str] = []
    prefixes = tuple(p.strip() for p in str(config["interfacePrefix"]).split(",") if p.strip())
    excluded = _excluded(config)
    data_re = re.compile(config["bpfDataIfacePattern"]) if config["bpfDataIfacePattern"] else None
    l3_re = re.compile(config["bpfL3IfacePattern"]) if config["bpfL3IfacePattern"] else None

    weps: dict[str, Resource] = {}
    heps: dict[str, Resource] = {}
    for r in resources:
        if r.kind in ("WorkloadEndpoint", "HostEndpoint") and r.spec.get("node") == node:
            iface = r.spec.get("interfaceName")
            if isinstance(iface, str) and iface and iface != "*":
                (weps if r.kind == "WorkloadEndpoint" else heps)[iface] = r

    by_name = {link.name: link for link in links}
    for iface, wep in sorted(weps.items()):
        if iface not in by_name:
            warnings.append(f"{wep.ref}: interface {iface} does not exist on this node (yet)")
        elif not iface.startswith(prefixes):
            warnings.append(
                f"{wep.ref}: interface {iface} does not start with interfacePrefix "
                f"{config['interfacePrefix']!r}; ignored"
            )

    selected = []
    for name, link in sorted(by_name.items()):
        if any(p.match(name) for p in excluded):
            continue
        role = Role(0)
        endpoint = ""
        if name in weps and name.startswith(prefixes):
            role, endpoint = Role.WORKLOAD, weps[name].ref
        elif data_re is not None and data_re.search(name):
            role, endpoint = Role.DATA, "bpfDataIfacePattern"
        elif l3_re is not None and l3_re.search(name):
            role, endpoint = Role.L3, "bpfL3IfacePattern"
        if name in heps and role is not Role.WORKLOAD:
            role |= Role.HOST_ENDPOINT
            endpoint = heps[name].ref
        if role:
            selected.append(Selected(link, role, endpoint))
    return selected, warnings


def build_flags(
    bpffs_root: str, config: Mapping[str, Any], hz: int | None = None
) -> tuple[str, ...]:
    """Compiler flags: pin paths and map sizes are compiled into the programs,
    and the kernel's tick rate when known (the datapath's clock reads jiffies
    then; bpf/lib/nat_maps.h rcl_now)."""
    return (
        f'-DRCL_MAPS_DIR="{bpffs_root}/maps"',
        f"-DRCL_IFSTATE_SIZE={ifstate_slots(config)}",
        f"-DRCL_NAT_FE_SIZE={int(config['bpfMapSizeNATFrontend'])}",
        f"-DRCL_NAT_BE_SIZE={int(config['bpfMapSizeNATBackend'])}",
        f"-DRCL_NAT_AFF_SIZE={int(config['bpfMapSizeNATAffinity'])}",
        f"-DRCL_CT_BUCKETS={ct_buckets_for(int(config['bpfMapSizeConntrack']))}",
        *tick_flags(hz),
    )


def tick_flags(hz: int | None) -> tuple[str, ...]:
    """-DRCL_HZ when the tick is a whole number of nanoseconds (not HZ=300)."""
    return (f"-DRCL_HZ={hz}",) if hz and 1_000_000_000 % hz == 0 else ()


def program_hash(source_digest: str, flags: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256((source_digest + "\0".join(flags)).encode()).hexdigest()[:12]


def _globals(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"log_level": {"Off": 0, "Info": 1, "Debug": 2}.get(str(config["bpfLogLevel"]), 0)}


CTLB_MODES = {"TCP": 0, "Enabled": 1, "Disabled": 2}  # bpf/lib/nat_types.h RCL_CTLB_*


def ctlb_mode(config: Mapping[str, Any]) -> str:
    mode = str(config["bpfConnectTimeLoadBalancing"])
    # The older boolean switch still wins when it turns the feature off.
    if config.get("bpfConnectTimeLoadBalancingEnabled") is False:
        return "Disabled"
    return mode if mode in CTLB_MODES else "TCP"


def _nat_globals(config: Mapping[str, Any]) -> dict[str, Any]:
    t = config["bpfConntrackTimeouts"]

    def secs(key: str) -> int:
        # 'Auto' means the kernel conntrack's own timeout: ours is the default.
        value = t[key] if t[key] != "Auto" else felix.DEFAULTS["bpfConntrackTimeouts"][key]
        return max(1, round(felix.parse_duration(str(value))))

    return {
        "tcp_syn_sent_s": secs("tcpSynSent"),
        "tcp_established_s": secs("tcpEstablished"),
        "tcp_fin_s": secs("tcpFinsSeen"),
        "tcp_rst_s": secs("tcpResetSeen"),
        "udp_s": secs("udpTimeout"),
        "generic_s": secs("genericTimeout"),
        "ctlb": CTLB_MODES[ctlb_mode(config)],
    }


def ifstate_slots(config: Mapping[str, Any]) -> int:
    """Entries of rcl_ifstate: slot 0 (test runs) and one slot for each of the
    bpfMapSizeIfState interfaces, which a tc classid can name (at most 65535)."""
    return min(int(config["bpfMapSizeIfState"]), MAX_SLOT) + 1


def assign_slots(ifindexes: Iterable[int], held: Mapping[int, int], slots: int) -> dict[int, int]:
    """Each managed interface's slot in rcl_ifstate, in [1, slots).

    An interface keeps the slot it holds in the kernel (`held`: ifindex ->
    slot), so an apply never moves a live interface. A new one takes the
    lowest slot nobody holds: a slot whose interface left is cleared by the
    same apply, after the new entries are written. Only when no other slot is
    left does a new interface take such a slot (the drivers clear a slot only
    while it still names the interface that left). The caller has checked
    that the interfaces fit."""
    wanted = sorted(set(ifindexes))
    out: dict[int, int] = {}
    taken: set[int] = set()
    for ifindex in wanted:
        slot = held.get(ifindex)
        if slot is not None and 0 < slot < slots and slot not in taken:
            out[ifindex] = slot
            taken.add(slot)
    held_slots = set(held.values())
    unheld = (s for s in range(1, slots) if s not in held_slots)
    handed_on = iter(sorted(s for s in held_slots if 0 < s < slots and s not in taken))
    for ifindex in wanted:
        if ifindex not in out:
            out[ifindex] = next(unheld, None) or next(handed_on)
    return out


def keep_slots(desired: DesiredState, held: Mapping[int, int]) -> DesiredState:
    """`desired` with its interfaces' slots assigned for what the kernel holds
    now (`held`, see assign_slots). Compile gives slots as if none were held,
    so it stays a function of the configuration and links alone, and a stored
    state is reused whatever the slots; most often nothing moves and the
    state is returned as it is."""
    states = [
        o
        for a, o in desired.objects.items()
        if o.kind is ObjKind.ENTRY and Address.parse(a).map == "rcl_ifstate"
    ]
    if not states:
        return desired
    size = int(desired.objects[str(Address.of_map("rcl_ifstate"))].attrs["max_entries"])
    now = {int(o.attrs["ifindex"]): int(o.attrs["slot"]) for o in states}
    wanted = assign_slots(now, held, size)
    if wanted == now:
        return desired
    objects = dict(desired.objects)
    for state in states:
        slot = wanted[int(state.attrs["ifindex"])]
        name = Address.parse(state.address).key or ""
        tcs = (str(Address.of_tc(name, d)) for d in DIRECTIONS)
        for address in (state.address, *tcs):
            obj = objects.get(address)
            if obj is not None:
                objects[address] = dataclasses.replace(obj, attrs={**obj.attrs, "slot": slot})
    return dataclasses.replace(desired, objects=objects)


@dataclass(frozen=True, slots=True)
class Host:
    """Facts about this node's kernel that compile needs, gathered by observe."""

    links: Sequence[Link]
    cgroup_id: int | None = None  # cgroup v2 for connect-time LB; None: none given
    cgroup_path: str = ""
    hz: int | None = None  # the kernel's CONFIG_HZ; None: not known


MAP_SIZES = {  # map -> the FelixConfiguration field that sizes it
    "rcl_nat_fe": "bpfMapSizeNATFrontend",
    "rcl_nat_be": "bpfMapSizeNATBackend",
    "rcl_nat_aff": "bpfMapSizeNATAffinity",
    "rcl_ct": "bpfMapSizeConntrack",
}
FIXED_MAPS = {
    "rcl_globals": 1,
    "rcl_nat_globals": 1,
    "rcl_nat_stats": 16,
    "rcl_ctlb_udp_rev": 65536,
}


def compile_desired(
    resources: Sequence[Resource],
    node: str,
    host: Host | Sequence[Link],
    bpffs_root: str,
    source_digest: str,
    file_ids: Mapping[str, str] | None = None,
    context: str = "",
) -> DesiredState:
    """The whole dataplane this node should have, as addressed objects.

    With `file_ids` (path -> blob id of every source file) the state carries
    a NatIndex, so that a later change to Services and EndpointSlices alone
    can be applied to it by reconciler.compile.nat_tables.update; `context` names
    every other input (node, links, code) for that index."""
    from reconciler.compile import nat_tables as nat_compile
    from reconciler.compile.services import service_fragments, service_ids
    from reconciler.datapath.maps.codecs import GLOBAL_KEY, managed_interface

    if not isinstance(host, Host):
        host = Host(tuple(host))
    config = felix.effective_config(resources, node)
    if not config["bpfEnabled"]:
        return DesiredState(node, False, {}, ("bpfEnabled is false: nothing of ours stays",))
    selected, warnings = select_interfaces(resources, node, host.links, config)
    flags = build_flags(bpffs_root, config, host.hz)
    phash = program_hash(source_digest, flags)
    tc_ref = prog_ref(PROG_SET, phash)
    objects: dict[str, Obj] = {}
    errors: list[str] = []

    def add(obj: Obj) -> None:
        objects[obj.address] = obj

    add(Obj(str(Address.of_prog(tc_ref)), ObjKind.PROG, {"programs": sorted(TC_PROGRAMS)}))
    if_size = int(config["bpfMapSizeIfState"])
    slots = ifstate_slots(config)
    if if_size >= slots:
        warnings.append(
            f"bpfMapSizeIfState {if_size}: at most {slots - 1} interfaces "
            "(a tc filter's classid names the interface's slot, in 16 bits)"
        )
    add(Obj(str(Address.of_map("rcl_ifstate")), ObjKind.MAP, {"max_entries": slots}))
    for name, size in FIXED_MAPS.items():
        add(Obj(str(Address.of_map(name)), ObjKind.MAP, {"max_entries": size}))
    for name, field_name in MAP_SIZES.items():
        size = int(config[field_name])
        if name == "rcl_ct":  # a table of whole buckets (reconciler/datapath/conntrack.py)
            size = ct_buckets_for(size)
        add(Obj(str(Address.of_map(name)), ObjKind.MAP, {"max_entries": size}))
    add(Obj(str(Address.of_entry("rcl_globals", GLOBAL_KEY)), ObjKind.ENTRY, _globals(config)))
    add(
        Obj(
            str(Address.of_entry("rcl_nat_globals", GLOBAL_KEY)),
            ObjKind.ENTRY,
            _nat_globals(config),
        )
    )
    if len(selected) >= slots:
        errors.append(
            f"map rcl_ifstate would overflow: {len(selected)} interfaces selected, "
            f"bpfMapSizeIfState is {if_size}"
        )
        selected = selected[: slots - 1]  # the plan is refused; compile what fits
    # Slots as on a node that holds none; keep_slots moves them to what the
    # kernel holds (the pipeline does, after compiling or loading a state).
    slot_of = assign_slots((sel.link.ifindex for sel in selected), {}, slots)
    for sel in selected:
        name = sel.link.name
        slot = slot_of[sel.link.ifindex]
        for map_name, key, attrs in managed_interface(sel.link.ifindex, int(sel.role), name, slot):
            add(Obj(str(Address.of_entry(map_name, key)), ObjKind.ENTRY, attrs))
        for direction in DIRECTIONS:
            add(
                Obj(
                    str(Address.of_tc(name, direction)),
                    ObjKind.TC,
                    {"prog": tc_ref, "slot": slot},
                    info={"role": sel.role.name_str(), "selected_by": sel.endpoint},
                )
            )

    # Services: NAT frontends and backends, packed per service, as raw bytes
    # (100k+ entries at scale, compared at C speed).
    node_ips = sorted({ip for s in selected if s.role & Role.DATA for ip in s.link.addresses})
    ids = service_ids(resources)
    fragments = service_fragments(resources, node, node_ips, ids)
    sizes = (int(config[MAP_SIZES["rcl_nat_fe"]]), int(config[MAP_SIZES["rcl_nat_be"]]))
    folded = nat_compile.fold(fragments, sizes)
    index = None
    if file_ids is not None:
        index = nat_compile.build_index(
            resources, file_ids, context, folded, ids, sizes, node, node_ips, warnings, errors
        )
    warnings += folded.warnings
    errors += folded.errors

    # Connect-time load balancing on the configured cgroup.
    if ctlb_mode(config) != "Disabled" and host.cgroup_id is not None:
        connect_ref = prog_ref("connect", phash)
        add(
            Obj(
                str(Address.of_prog(connect_ref)),
                ObjKind.PROG,
                {"programs": sorted(CONNECT_PROGRAMS.values())},
            )
        )
        for hook in CONNECT_PROGRAMS:
            add(
                Obj(
                    str(Address.of_cgroup(hook)),
                    ObjKind.CGROUP,
                    {"prog": connect_ref, "cgroup_id": host.cgroup_id},
                    info={"cgroup": host.cgroup_path},
                )
            )
    build = {"flags": list(flags), "prog": tc_ref, "hash": phash, "cgroup": host.cgroup_path}
    return DesiredState(
        node, True, objects, tuple(warnings), build, tuple(errors), folded.tables,
        folded.table_info, index,
    )  # fmt: skip
