"""Which interfaces this node manages, in which rcl_ifstate slot, and the
entries and tc filters that manage them. Pure."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.compile.slots import DIRECTIONS, assign_slots
from reconciler.config.model import Resource
from reconciler.datapath.maps.codecs import managed_interface
from reconciler.datapath.maps.iface_types import IF_POLICY, MAP_IFSTATE, MAX_SLOT
from reconciler.plan.address import Address
from reconciler.plan.state import Link, Obj, ObjKind


class Role(enum.IntFlag):
    """Interface roles; the values are the flag bits the tc program reads."""

    WORKLOAD = 1
    DATA = 2
    L3 = 4
    HOST_ENDPOINT = 8

    def name_str(self) -> str:
        return "+".join(r.name.lower() for r in Role if r in self and r.name)


# What selected a pod interface (interfacePrefix) that no WorkloadEndpoint of
# this node names, for plans and status.
UNNAMED = "interfacePrefix, no WorkloadEndpoint: its traffic is dropped"


@dataclass(frozen=True, slots=True)
class Selected:
    link: Link
    role: Role
    endpoint: str  # the resource that selected it, for plans and status

    @property
    def unnamed(self) -> bool:
        """A pod interface no WorkloadEndpoint names: it runs our programs
        under policy, but has no policy entry (rcl_pol_ep) and no sources
        (rcl_wep_src), so the datapath drops its IPv4 both ways (fail
        closed, as Calico's "Unknown interface" rule). When its endpoint
        lands, the same slot and filters get their entries: no window opens."""
        return self.role is Role.WORKLOAD and self.endpoint == UNNAMED

    @property
    def endpoint_name(self) -> str:
        """The selecting endpoint resource's name (its ref is Kind/name)."""
        return self.endpoint.partition("/")[2]


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
    hep_all: Resource | None = None  # interfaceName "*": every host interface we manage
    hep_ips: dict[str, Resource] = {}  # no interfaceName: found by its expectedIPs
    for r in resources:
        if r.kind in ("WorkloadEndpoint", "HostEndpoint") and r.spec.get("node") == node:
            iface = r.spec.get("interfaceName")
            if isinstance(iface, str) and iface and iface != "*":
                (weps if r.kind == "WorkloadEndpoint" else heps)[iface] = r
            elif r.kind == "HostEndpoint" and iface == "*":
                hep_all = hep_all or r
            elif r.kind == "HostEndpoint":
                for ip in r.spec.get("expectedIPs") or ():
                    hep_ips.setdefault(str(ip), r)

    named = {str(r.spec.get("node")) for r in resources
             if r.kind in ("WorkloadEndpoint", "HostEndpoint") and r.spec.get("node")}  # fmt: skip
    if named and node not in named:
        warnings.append(
            f"no WorkloadEndpoint or HostEndpoint names node {node!r} (they name "
            f"{', '.join(sorted(named)[:5])}{', ...' if len(named) > 5 else ''}): "
            "is this node's name right?"
        )
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
        hep = heps.get(name) or next((hep_ips[a] for a in link.addresses if a in hep_ips), None)
        if hep is None and hep_all is not None and role & (Role.DATA | Role.L3):
            hep = hep_all
        if hep is not None and role is not Role.WORKLOAD:
            role |= Role.HOST_ENDPOINT
            endpoint = hep.ref
        if not role and prefixes and name.startswith(prefixes):
            role, endpoint = Role.WORKLOAD, UNNAMED  # fail closed (Selected.unnamed)
            warnings.append(
                f"interface {name}: no WorkloadEndpoint on node {node!r} names it: "
                "its traffic is dropped until one does"
            )
        if role:
            selected.append(Selected(link, role, endpoint))
    return selected, warnings


def ifstate_slots(config: Mapping[str, Any]) -> int:
    """Entries of rcl_ifstate: slot 0 (test runs) and one slot for each of the
    bpfMapSizeIfState interfaces, which a tc classid can name (at most 65535)."""
    return min(int(config["bpfMapSizeIfState"]), MAX_SLOT) + 1


@dataclass(frozen=True, slots=True)
class Selection:
    """The interfaces to manage (at most as many as rcl_ifstate has slots for)
    and what selecting them found."""

    interfaces: tuple[Selected, ...]
    slots: int  # entries of rcl_ifstate (ifstate_slots)
    warnings: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def node_ips(self) -> list[str]:
        """The data interfaces' IPv4 addresses: NodePort frontends listen there."""
        return sorted(
            {ip for s in self.interfaces if s.role & Role.DATA for ip in s.link.addresses}
        )


def select(
    resources: Sequence[Resource], node: str, links: Iterable[Link], config: Mapping[str, Any]
) -> Selection:
    """select_interfaces, capped at the slots rcl_ifstate has: more is a plan
    error (the plan is refused; what fits is still compiled)."""
    selected, warnings = select_interfaces(resources, node, links, config)
    errors: list[str] = []
    if_size = int(config["bpfMapSizeIfState"])
    slots = ifstate_slots(config)
    if if_size >= slots:
        warnings.append(
            f"bpfMapSizeIfState {if_size}: at most {slots - 1} interfaces "
            "(a tc filter's classid names the interface's slot, in 16 bits)"
        )
    if len(selected) >= slots:
        errors.append(
            f"map rcl_ifstate would overflow: {len(selected)} interfaces selected, "
            f"bpfMapSizeIfState is {if_size}"
        )
        selected = selected[: slots - 1]
    return Selection(tuple(selected), slots, tuple(warnings), tuple(errors))


def initial_slots(selection: Selection) -> dict[int, int]:
    """ifindex -> slot, as on a node that holds none; keep_slots moves them to
    what the kernel holds (the pipeline does, after compiling or loading a
    state). Every sub-compiler that names a slot names these."""
    return assign_slots((sel.link.ifindex for sel in selection.interfaces), {}, selection.slots)


def has_host_endpoints(selection: Selection) -> bool:
    """Does any managed interface run host endpoint policy (the host set)?"""
    return any(sel.role & Role.HOST_ENDPOINT for sel in selection.interfaces)


def compile_interfaces(selection: Selection, tc_ref: str, host_ref: str) -> Fragment:
    """rcl_ifstate and, for each managed interface, its entry there and its
    tc filters running the program set `tc_ref` (a host endpoint's run the
    set `host_ref`, with host endpoint policy). Workload interfaces are
    flagged as under policy, an unnamed one too (Selected.unnamed): with no
    policy entry there, the datapath drops its IPv4."""
    objects = [Obj(Address.map_text(MAP_IFSTATE), ObjKind.MAP, {"max_entries": selection.slots})]
    slot_of = initial_slots(selection)
    for sel in selection.interfaces:
        name = sel.link.name
        slot = slot_of[sel.link.ifindex]
        if_flags = int(sel.role) | (IF_POLICY if sel.role & Role.WORKLOAD else 0)
        for map_name, key, attrs in managed_interface(sel.link.ifindex, if_flags, name, slot):
            objects.append(Obj(Address.entry_text(map_name, key), ObjKind.ENTRY, attrs))
        tc_attrs: dict[str, Any] = {"prog": tc_ref, "slot": slot}
        if sel.role & Role.HOST_ENDPOINT:
            tc_attrs = {"prog": host_ref, "slot": slot, "hook": "host"}
        for direction in DIRECTIONS:
            objects.append(
                Obj(
                    Address.tc_text(name, direction),
                    ObjKind.TC,
                    tc_attrs,
                    info={"role": sel.role.name_str(), "selected_by": sel.endpoint},
                )
            )
    return Fragment(tuple(objects), warnings=selection.warnings, errors=selection.errors)
