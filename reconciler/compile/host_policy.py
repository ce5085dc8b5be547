"""Host protection as the objects and map entries a DesiredState holds. Pure.

A host endpoint's chains (reconciler/compile/policy_model.py HOST_CHAINS)
compile into programs as a workload's do; its entry in rcl_pol_hep names
the program of each point (0: no policy there). Failsafe ports and this
node's own addresses are entries of their own; the untracked chain is the
XDP program's (rcl_xdp_ep).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.compile.policy import Program
from reconciler.compile.policy_model import (
    DENY,
    POLICY_KINDS,
    Chain,
    Model,
    Packet,
    evaluate,
    policy_label,
)
from reconciler.compile.programs import Programs
from reconciler.datapath.maps import host_types as ht
from reconciler.datapath.maps import policy_types as pl
from reconciler.datapath.maps.host_codecs import failsafe_suffix
from reconciler.datapath.programs import XDP_PROGRAMS
from reconciler.plan.address import Address, AddressError, Kind
from reconciler.plan.state import Link, Obj, ObjKind
from reconciler.protocols import PROTOCOLS


@dataclass(frozen=True, slots=True)
class HostIface:
    """A managed interface that is a host endpoint."""

    name: str
    ifindex: int
    slot: int
    endpoint: str  # the HostEndpoint's name


@dataclass(frozen=True, slots=True)
class Failsafe:
    direction: str  # "in" or "out"
    proto: int
    port: int
    net: str | None  # a CIDR, or None: any remote address

    def label(self) -> str:
        where = f" {self.net}" if self.net else ""
        return f"{'inbound' if self.direction == 'in' else 'outbound'} " \
               f"{_proto_text(self.proto)}:{self.port}{where}"  # fmt: skip


def _proto_text(proto: int) -> str:
    return next((k.lower() for k, v in PROTOCOLS.items() if v == proto), str(proto))


def failsafe_ports(config: Mapping[str, Any]) -> list[Failsafe]:
    """failsafeInboundHostPorts and failsafeOutboundHostPorts (Calico's
    defaults when unset); a missing protocol is TCP; IPv6 nets are skipped."""
    out = []
    for field_name, direction in (
        ("failsafeInboundHostPorts", "in"),
        ("failsafeOutboundHostPorts", "out"),
    ):
        for entry in config.get(field_name) or ():
            if not isinstance(entry, Mapping) or entry.get("port") is None:
                continue
            proto = PROTOCOLS.get(str(entry.get("protocol") or "TCP").upper(), None)
            if proto is None:
                proto = PROTOCOLS.get(str(entry.get("protocol")), 6)
            net = entry.get("net")
            if net:
                parsed = ipaddress.ip_network(str(net), strict=False)
                if parsed.version != 4:
                    continue
                net = str(parsed)
            out.append(Failsafe(direction, proto, int(entry["port"]), net or None))
    return out


def failsafe_entries(ports: Iterable[Failsafe]) -> dict[str, Mapping[str, Any]]:
    """rcl_failsafe's entries: key text -> info."""
    return {
        failsafe_suffix(f.direction, f.proto, f.port, f.net): {"failsafe": f.label()}
        for f in ports
    }


def host_ip_entries(addresses: Iterable[str]) -> list[str]:
    """rcl_host_ip's entries' key texts: this node's IPv4 addresses."""
    return [a for a in sorted(set(addresses)) if ":" not in a]


def failsafe_notes(
    model: Model, hosts: Sequence[HostIface], ports: Sequence[Failsafe]
) -> list[str]:
    """Where a failsafe port keeps open what a host endpoint's policy would
    deny: the plan says so, so that removing the port is not a surprise."""
    notes = []
    endpoints = sorted({h.endpoint for h in hosts})
    for name in endpoints:
        for f in ports:
            peer = int(ipaddress.IPv4Network(f.net).network_address) if f.net else 0
            chains = (
                ("untracked", "prednat", "ingress")
                if f.direction == "in"
                else ("untracked-egress", "egress")
            )
            for chain_name in chains:
                chain = model.chains.get((name, chain_name))
                if chain is None:
                    continue
                v = evaluate(chain, Packet(peer, f.proto, f.port, 40000))
                if v.action == DENY:
                    notes.append(
                        f"failsafe {f.label()}: HostEndpoint/{name}'s {chain_name} policy would "
                        f"deny it ({v.ref}); the failsafe port keeps it open"
                    )
                    break
    return notes


# What names addresses on a rule's side (an entity's fields).
ADDRESS_FIELDS = ("nets", "notNets", "selector", "notSelector", "namespaceSelector",
                  "serviceAccounts")  # fmt: skip


def forward_side_notes(model: Model, resources: Iterable[Any]) -> list[str]:
    """Rules of a host endpoint's applyOnForward policy that name addresses
    on the endpoint's own side (an ingress rule's destination, an egress
    rule's source): this dataplane matches that side against the endpoint's
    expectedIPs, for forwarded traffic too, not against the forwarded
    packet's own address. The plan says so; the rule is not silently dead
    (or everywhere) for what the node forwards."""
    by_label = {policy_label(r): r for r in resources if r.kind in POLICY_KINDS}
    notes = set()
    for (name, chain_name), chain in model.chains.items():
        if not chain_name.startswith("forward-"):
            continue
        direction = chain_name.removeprefix("forward-")
        side = "destination" if direction == "ingress" else "source"
        for label in {p for tier in chain.tiers for p in tier.policies}:
            res = by_label.get(label)
            rules = res.spec.get(direction) if res is not None else None
            for i, raw in enumerate(rules if isinstance(rules, list) else ()):
                entity = raw.get(side) if isinstance(raw, Mapping) else None
                if isinstance(entity, Mapping) and any(entity.get(f) for f in ADDRESS_FIELDS):
                    notes.add(
                        f"{label} {direction} rule {i + 1}: for traffic HostEndpoint/{name} "
                        f"forwards (applyOnForward), its {side} is matched against the "
                        f"endpoint's own addresses (expectedIPs), not the packet's {side}"
                    )
    return sorted(notes)


def untracked_net_entries(program: Program) -> tuple[list[tuple[str, str, dict[str, Any]]], int]:
    """An untracked program's address prefixes shorter than /32 again as
    exact entries (rcl_pol_exact .../net/<addr>/<len>), and the mask of their
    lengths (rcl_xdp_ep.nets, rcl_pol_hep.untracked_out_nets): the datapath
    asks a hash per length the program uses instead of walking the LPM trie,
    so its cost does not grow with the rules (bpf/lib/policy_lookup.h
    rcl_pol_net_class)."""
    pid = f"{program.prog_id:08x}"
    out, mask = [], 0
    for cls, (net, plen) in enumerate(program.addr_classes):
        if plen < 32:
            ip = str(ipaddress.IPv4Address(net))
            out.append((pl.MAP_EXACT, f"{pid}/net/{ip}/{plen}", {"class": cls, "flags": 0}))
            mask |= 1 << plen
    return out, mask


def has_policy(chain: Chain) -> bool:
    return bool(chain.tiers or chain.profiles)


def host_entries(
    model: Model,
    hosts: Sequence[HostIface],
    program_of: Callable[[Chain], Program],
) -> Iterable[tuple[str, str, dict[str, Any], dict[str, str]]]:
    """rcl_pol_hep entries (and rcl_xdp_ep entries for endpoints with
    untracked policy): (map, key text, attrs, info). `program_of` compiles a
    chain and records its entries."""
    for h in hosts:
        attrs: dict[str, Any] = {"slot": h.slot, "ifindex": h.ifindex}
        for chain_name in ht.HEP_CHAINS:
            chain = model.chains[(h.endpoint, chain_name)]
            always = chain_name in ("ingress", "egress")  # these drop with no policy at all
            prog = program_of(chain).prog_id if always or has_policy(chain) else 0
            attrs[chain_name] = f"{prog:08x}"
        attrs[ht.HEP_NETS] = ht.nets_text(0)
        untracked_out = model.chains[(h.endpoint, "untracked-egress")]
        if has_policy(untracked_out):
            nets, mask = untracked_net_entries(program_of(untracked_out))
            for name, key, net_attrs in nets:
                yield name, key, net_attrs, {}
            attrs[ht.HEP_NETS] = ht.nets_text(mask)
        yield ht.MAP_HEP, h.name, attrs, {"endpoint": f"HostEndpoint/{h.endpoint}"}
        untracked = model.chains[(h.endpoint, "untracked")]
        if has_policy(untracked):
            program = program_of(untracked)
            nets, mask = untracked_net_entries(program)
            for name, key, net_attrs in nets:
                yield name, key, net_attrs, {}
            xdp = {"ifindex": h.ifindex, "slot": h.slot,
                   "untracked": f"{program.prog_id:08x}", "nets": ht.nets_text(mask)}  # fmt: skip
            yield ht.MAP_XDP_EP, h.name, xdp, {"endpoint": f"HostEndpoint/{h.endpoint}"}


def compile_host_protection(
    failsafe: Sequence[Failsafe], links: Iterable[Link], policy: Fragment, programs: Programs
) -> Fragment:
    """The host protection sub-compiler: failsafe ports, this node's own
    addresses, and our XDP program on each host endpoint whose untracked
    policy the policy sub-compiler gave an rcl_xdp_ep entry (`policy`)."""
    objects = [
        Obj(Address.entry_text(ht.MAP_FAILSAFE, key), ObjKind.ENTRY, {}, info)
        for key, info in failsafe_entries(failsafe).items()
    ]
    addresses = (a for link in links for a in link.addresses)
    objects += [
        Obj(Address.entry_text(ht.MAP_HOST_IP, key), ObjKind.ENTRY, {})
        for key in host_ip_entries(addresses)
    ]
    xdp_eps = {}
    prefix = f"{Address.of_map(ht.MAP_XDP_EP)}/"  # its entries' addresses start so
    for obj in policy.objects:
        if obj.address.startswith(prefix):
            xdp_eps[obj.address[len(prefix) :]] = obj
    if xdp_eps:
        ref = programs.xdp_ref
        programs_attrs = {"programs": sorted(XDP_PROGRAMS)}
        objects.append(Obj(str(Address.of_prog(ref)), ObjKind.PROG, programs_attrs))
        for name, obj in sorted(xdp_eps.items()):
            attach = Obj(str(Address.of_xdp(name)), ObjKind.XDP, {"prog": ref}, dict(obj.info))
            objects.append(attach)
    return Fragment(tuple(objects))


def _is_xdp(text: str) -> bool:
    try:
        return Address.parse(text).kind is Kind.XDP
    except AddressError:
        return False


def without_foreign_xdp(desired: Any, foreign: Sequence[str]) -> Any:
    """`desired` without our XDP attachment on interfaces where a program of
    someone else's is attached (observe lists it as foreign): it is never
    replaced. Each gets a warning that names the program, starts with its
    foreign name and says "where ours must go" (what
    engine.foreign_place.held_by_foreign finds it by), with the command
    that removes it; tc still enforces the endpoint's other policy there
    (its untracked policy is not)."""
    taken = {}
    for f in foreign:
        address = f.split(" ", 1)[0]
        if _is_xdp(address):
            taken[address] = f
    skipped = sorted(a for a in desired.objects if a in taken)
    if not skipped:
        return desired
    objects = {a: o for a, o in desired.objects.items() if a not in taken}
    warnings = tuple(desired.warnings) + tuple(_foreign_xdp_warning(taken[a]) for a in skipped)
    return dataclasses.replace(desired, objects=objects, warnings=warnings)


# ip link's word for detaching an XDP program in each attach mode observe reports
_XDP_OFF = {"native": "xdpdrv", "generic": "xdpgeneric", "offload": "xdpoffload"}


def _foreign_xdp_warning(foreign: str) -> str:
    """`foreign`: "xdp/<iface> <mode> prog <id> <name>", as observe lists it."""
    address, _, rest = foreign.partition(" ")
    iface = Address.parse(address).iface
    off = _XDP_OFF.get(rest.split(" ", 1)[0], "xdp")
    return (
        f"{foreign}: a foreign XDP program is attached where ours must go, so {iface}'s "
        f"untracked (doNotTrack) policy is not enforced (tc enforces the rest); remove it "
        f"(ip link set dev {iface} {off} off), then apply again; left alone"
    )
