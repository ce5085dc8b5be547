"""A workload's compiled policy programs as the objects and map entries a
DesiredState holds (their codecs: reconciler.datapath.maps.policy_codecs)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.compile.interfaces import Role, Selection, initial_slots
from reconciler.compile.policy import Program
from reconciler.compile.policy_incremental import Incremental
from reconciler.compile.policy_model import Chain, Model
from reconciler.datapath.maps import policy_types as pl
from reconciler.datapath.maps.codec_types import Attrs
from reconciler.datapath.maps.policy_codecs import KIND_NAMES, proto_name
from reconciler.datapath.maps.policy_types import (
    ACTION_NAMES,
    FLAG_SPORT,
    KIND_DPORT,
    KIND_SPORT,
)
from reconciler.plan.address import Address
from reconciler.plan.state import Obj, ObjKind


# -- a program's entries --------------------------------------------------
def port_prefixes(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi] as 16-bit (value, prefix length) blocks."""
    out = []
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, 16 - size.bit_length() + 1))
        lo += size
    return out


def program_entries(program: Program) -> Iterable[tuple[str, str, Attrs, Mapping[str, Any]]]:
    """(map, key text, attrs, info) of every entry of one program."""
    pid = f"{program.prog_id:08x}"
    for cls, (net, plen) in enumerate(program.addr_classes):
        ip = str(ipaddress.IPv4Address(net))
        info = {"policy": program.origins[cls]} if program.origins[cls] else {}
        if plen == 32:
            yield pl.MAP_EXACT, f"{pid}/addr/{ip}", {"class": cls, "flags": 0}, info
        else:
            yield pl.MAP_LPM, f"{pid}/addr/{ip}/{plen}", {"class": cls, "flags": 0}, info
    for kind, classes in ((KIND_DPORT, program.port_classes), (KIND_SPORT, program.sport_classes)):
        name = KIND_NAMES[kind]
        flags = FLAG_SPORT if program.sport_classes and kind == KIND_DPORT else 0
        for cls, pc in enumerate(classes):
            attrs = {"class": cls, "flags": flags}
            if pc.proto is None:
                yield pl.MAP_LPM, f"{pid}/{name}/any", attrs, {}
            elif pc.lo == pc.hi:
                yield pl.MAP_EXACT, f"{pid}/{name}/{proto_name(pc.proto)}/{pc.lo}", attrs, {}
            else:
                for value, plen in port_prefixes(pc.lo, pc.hi):
                    proto = proto_name(pc.proto)
                    yield pl.MAP_LPM, f"{pid}/{name}/{proto}/{value}/{plen}", attrs, {}
    action, rule = program.default
    yield (
        pl.MAP_VERDICT,
        f"{pid}/default",
        {"action": ACTION_NAMES[action].lower(), "rule": rule},
        {"policy": program.refs[rule]},
    )
    for (a, p, s), (action, rule) in program.cells:
        yield (
            pl.MAP_VERDICT,
            f"{pid}/{a}.{p}.{s}",
            {"action": ACTION_NAMES[action].lower(), "rule": rule},
            {"policy": program.refs[rule]},
        )


def endpoint_entry(
    ifname: str, ifindex: int, slot: int, ingress: int, egress: int
) -> tuple[str, str, Attrs]:
    """(map, key text, attrs) of a workload interface's entry in rcl_pol_ep."""
    return pl.MAP_EP, ifname, {
        "slot": slot,
        "ifindex": ifindex,
        "ingress": f"{ingress:08x}",
        "egress": f"{egress:08x}",
    }


def capacity_errors(counts: Mapping[str, int], sizes: Mapping[str, int]) -> Sequence[str]:
    return [
        f"map {name} would overflow: policy needs {counts.get(name, 0)} entries, it holds {size}"
        for name, size in sizes.items()
        if counts.get(name, 0) > size
    ]


def policy_objects(
    resources: Sequence[Any],
    node: str,
    workloads: Sequence[tuple[str, int, int]],
    hosts: Sequence[Any] = (),
    failsafe: Sequence[Any] = (),
    previous: tuple[Mapping[str, Any], Any] | None = None,
) -> Incremental:
    """The policy entries of this node's workloads (ifname, ifindex, slot)
    and host endpoints (compile.host_policy.HostIface), plan-time errors (a
    rule that cannot be enforced, a map that would overflow), notes (a
    failsafe port that keeps open what a host policy denies) and the index
    of what was read. With `previous` (the last compile's objects and its
    PolicyIndex) only what a change touches is compiled again when that is
    provably enough (reconciler.compile.policy_incremental); the answer is
    the same either way."""
    from reconciler.compile import host_policy
    from reconciler.compile import policy_incremental as inc
    from reconciler.compile.policy_model import PolicyError, build_model

    if previous is not None and previous[1] is not None and not hosts:
        got = inc.recompile(
            resources, node, workloads, failsafe, previous[0], previous[1], _workloads
        )
        if got is not None:
            errors = [*got.errors, *capacity_errors(inc.entry_counts(got.objects), pl.SIZES)]
            return inc.Incremental(got.objects, errors, got.notes, got.index)
    try:
        model = build_model(resources, node)
    except PolicyError as exc:
        return inc.Incremental([], [str(exc)], [], None)
    objects, program_of, counts = _compiler(model)
    objects += _workloads(model, workloads, program_of)
    for name, key, attrs, info in host_policy.host_entries(model, hosts, program_of):
        address = Address.entry_text(name, key)
        objects.append(Obj(address, ObjKind.ENTRY, attrs, info))
    notes = host_policy.failsafe_notes(model, hosts, failsafe)
    notes += host_policy.forward_side_notes(model, resources) if hosts else []
    index = inc.index_of(resources, node, workloads, hosts, failsafe, model.selections)
    return inc.Incremental(
        list({o.address: o for o in objects}.values()),
        list(capacity_errors(counts, pl.SIZES)),
        notes,
        index,
    )


def _compiler(model: Model) -> tuple[list[Obj], Callable[[Chain], Program], dict[str, int]]:
    """A chain compiler that records each new program's entries once (in the
    list it returns, counted per map)."""
    from reconciler.compile.policy import compile_chain

    origins = _origins(model)
    programs: dict[Chain, Program] = {}
    objects: list[Obj] = []
    seen: set[str] = set()
    counts: dict[str, int] = {}

    def program_of(chain: Chain) -> Program:
        program = programs.get(chain)
        if program is None:
            program = compile_chain(chain, origins)
            programs[chain] = program
            for name, key, attrs, info in program_entries(program):
                address = Address.entry_text(name, key)
                if address not in seen:
                    seen.add(address)
                    objects.append(Obj(address, ObjKind.ENTRY, attrs, info))
                    counts[name] = counts.get(name, 0) + 1
        return program

    return objects, program_of, counts


def _workloads(
    model: Model,
    workloads: Sequence[tuple[str, int, int]],
    program_of: Callable[[Chain], Program] | None = None,
) -> list[Obj]:
    """The rcl_pol_ep entries of `workloads` (and, without `program_of`, the
    entries of their programs first)."""
    own = program_of is None
    objects: list[Obj] = []
    if program_of is None:
        objects, program_of, _ = _compiler(model)
    by_iface = {ep.interface: ep for ep in model.endpoints}
    out = []
    for ifname, ifindex, slot in workloads:
        ep = by_iface.get(ifname)
        ids = []
        for direction in ("ingress", "egress"):
            # no endpoint resource: nothing allows it
            chain = Chain((), ()) if ep is None else model.chains[(ep.name, direction)]
            ids.append(program_of(chain).prog_id)
        name, key, attrs = endpoint_entry(ifname, ifindex, slot, ids[0], ids[1])
        address = Address.entry_text(name, key)
        info = {"endpoint": ep.peer.ref if ep else "no WorkloadEndpoint"}
        out.append(Obj(address, ObjKind.ENTRY, attrs, info))
    return [*objects, *out] if own else out


def compile_policy(
    resources: Sequence[Any],
    node: str,
    selection: Selection,
    failsafe: Sequence[Any] = (),
    previous: tuple[Mapping[str, Any], Any] | None = None,
) -> tuple[Fragment, Any]:
    """The policy sub-compiler: the entries of the selected workloads' (those
    a WorkloadEndpoint names) and host endpoints' policy programs
    (policy_objects), in the slots reconciler.compile.interfaces gives them,
    and the index of what it read
    (reconciler.compile.policy_incremental.PolicyIndex, or None)."""
    from reconciler.compile.host_policy import HostIface

    slot_of = initial_slots(selection)
    workloads = [  # an unnamed pod interface gets no entry: the datapath drops its traffic
        (s.link.name, s.link.ifindex, slot_of[s.link.ifindex])
        for s in selection.interfaces
        if s.role & Role.WORKLOAD and not s.unnamed
    ]
    hosts = [
        HostIface(s.link.name, s.link.ifindex, slot_of[s.link.ifindex], s.endpoint_name)
        for s in selection.interfaces
        if s.role & Role.HOST_ENDPOINT
    ]
    got = policy_objects(resources, node, workloads, hosts, failsafe, previous)
    fragment = Fragment(tuple(got.objects), warnings=tuple(got.notes), errors=tuple(got.errors))
    return fragment, got.index


def _origins(model: Model) -> dict[Any, str]:
    """Which object named each address, for plans: ipset/<kind>/<name>."""
    from reconciler.compile.policy_model import origins_of

    return origins_of(model.peers)
