"""The workload policy compile, redoing only what a change touches. Pure.

A PolicyIndex records what a policy compile read: a content digest of every
resource the policy model reads, the context (node, workload interfaces and
their slots, host endpoints, failsafe ports, the order of the resources
whose order the model keeps), which local WorkloadEndpoints each policy
selected, and what resolution read of each peer. Given the last compile's
objects and index, a change to policies, WorkloadEndpoints and NetworkSets
is compiled by rebuilding the chains of the endpoints it can move:
- those a changed policy selected before or selects now;
- a changed WorkloadEndpoint's own (its labels, addresses, named ports);
- those selected by a policy whose rules could resolve differently for a
  changed peer, before or after the change (a selector, notSelector,
  namespaceSelector or serviceAccounts that picks it, on either side, or a
  remote named port it could have).
Every other endpoint's chain reads nothing that changed, so its programs'
entries are kept as they were. The result is the full compile's
(tests/unit/test_policy_incremental.py checks it on random edits).

Anything else answers None and the caller compiles in full: another kind
changed (a Tier, a Profile, a Namespace or ServiceAccount (the profile made
of it), a HostEndpoint, a Service a rule names or one of its EndpointSlices),
a profile's rules read a changed peer, an address's first naming peer moved
(what plans show beside it), a host endpoint exists (its chains read every
global policy), the local endpoints or the context moved, two resources
share a name, or there is no index.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.compile.policy_index import PolicyIndex
from reconciler.compile.policy_model import (
    PEER_KINDS,
    POLICY_KINDS,
    SERVICE_NAME_LABEL,
    PolicyError,
    build_model,
    origins_of,
    peer_facts,
    peer_of,
    peers_of,
    reading,
    selections_of,
    service_refs,
)
from reconciler.datapath.maps import policy_types as pl
from reconciler.plan.address import Address
from reconciler.plan.state import Obj

# Every kind the policy model reads (reconciler.compile.policy_model._Ctx, build_model).
READ_KINDS = POLICY_KINDS | {
    "Tier", "Profile", "WorkloadEndpoint", "HostEndpoint", "NetworkSet", "GlobalNetworkSet",
    "Namespace", "ServiceAccount",
}  # fmt: skip
# The maps a workload's programs fill; their keys start with the program id.
PROGRAM_MAPS = (pl.MAP_EXACT, pl.MAP_LPM, pl.MAP_VERDICT)
_PID_LEN = 8


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def read_inputs(resources: Sequence[Any]) -> tuple[dict[str, str], list[str]] | None:
    """Every resource the policy model reads, ref -> digest of its document,
    and the refs of those other than policies in the order given (the model
    keeps their order). None when two resources share a ref."""
    inputs: dict[str, str] = {}
    ordered = []
    named = service_refs(resources)  # their EndpointSlices are read too
    for r in resources:
        if r.kind not in READ_KINDS and not (named and _names_service(r, named)):
            continue
        ref = r.ref
        if ref in inputs:
            return None
        inputs[ref] = _digest(r.body)
        if r.kind not in POLICY_KINDS:
            ordered.append(ref)
    return inputs, ordered


def _names_service(r: Any, named: frozenset[tuple[str, str]]) -> bool:
    """Is `r` a Service a rule names, or one of its EndpointSlices?"""
    if r.kind == "Service":
        return (r.namespace or "", r.name) in named
    owner = r.labels.get(SERVICE_NAME_LABEL) if r.kind == "EndpointSlice" else None
    return isinstance(owner, str) and (r.namespace or "", owner) in named


def context_of(
    node: str,
    workloads: Sequence[tuple[str, int, int]],
    hosts: Sequence[Any],
    failsafe: Sequence[Any],
    ordered: Sequence[str],
) -> str:
    return _digest([node, list(workloads), [repr(h) for h in hosts],
                    [repr(f) for f in failsafe], list(ordered)])  # fmt: skip


def index_of(
    resources: Sequence[Any],
    node: str,
    workloads: Sequence[tuple[str, int, int]],
    hosts: Sequence[Any],
    failsafe: Sequence[Any],
    selections: Mapping[str, tuple[str, ...]],
) -> PolicyIndex | None:
    read = read_inputs(resources)
    if read is None:
        return None
    inputs, ordered = read
    context = context_of(node, workloads, hosts, failsafe, ordered)
    peers, local = peers_of(resources, node)
    facts = {ref: peer_facts(peer) for ref, peer in peers.items()}
    return PolicyIndex(context, inputs, selections, facts, local)


def _prefix(name: str) -> str:
    return f"{Address.of_map(name)}/"


def _split(objects: Mapping[str, Obj]) -> tuple[dict[str, dict[str, Obj]], dict[str, Obj]]:
    """A state's program entries by program id, and its rcl_pol_ep entries by interface."""
    programs_at = {_prefix(name) for name in PROGRAM_MAPS}
    ep_prefix = _prefix(pl.MAP_EP)
    programs: dict[str, dict[str, Obj]] = {}
    endpoints: dict[str, Obj] = {}
    for address, obj in objects.items():
        head = address[: address.find("/", 4) + 1]  # "map/<name>/", as _prefix(name)
        if head in programs_at:
            pid = address[len(head) : len(head) + _PID_LEN]
            programs.setdefault(pid, {})[address] = obj
        elif head == ep_prefix:
            endpoints[address[len(head) :]] = obj
    return programs, endpoints


@dataclass(frozen=True, slots=True)
class Incremental:
    """The policy compile's answer: its objects, errors and notes as
    policy_objects gives them, and the index of what it read."""

    objects: list[Obj]
    errors: list[str]
    notes: list[str]
    index: PolicyIndex | None


def affected(
    resources: Sequence[Any], node: str, index: PolicyIndex, inputs: Mapping[str, str]
) -> tuple[set[str], dict[str, tuple[Any, ...]]] | None:
    """The local endpoints whose chains the change can move (see the module
    doc) and the peers now; None when only a full compile can answer."""
    changed = {ref for ref in set(inputs) | set(index.inputs)
               if inputs.get(ref) != index.inputs.get(ref)}  # fmt: skip
    kinds = {ref.partition("/")[0] for ref in changed}
    if not kinds <= POLICY_KINDS | PEER_KINDS:
        return None
    peers, local = peers_of(resources, node)
    if local != index.local or len(set(local.values())) != len(local):
        return None  # an endpoint came, went or moved; or two share an interface
    facts = {ref: peer_facts(peer) for ref, peer in peers.items()}
    names: set[str] = set()
    changed_policies = [r for r in resources if r.kind in POLICY_KINDS and r.ref in changed]
    for ref in changed:
        if ref.partition("/")[0] in POLICY_KINDS:
            names.update(index.selections.get(policy_label_of_ref(ref), ()))
    for picked in selections_of(resources, node, changed_policies).values():
        names.update(picked)
    moved = [ref for ref in changed if ref.partition("/")[0] in PEER_KINDS]
    if moved:
        before = {ref: peer_of(ref, f) for ref, f in index.peers.items()}
        if origins_of(before.values()) != origins_of(peers.values()):
            return None
        versions = [p for ref in moved for p in (before.get(ref), peers.get(ref)) if p]
        readers = reading(resources, node,
                          [r for r in resources if r.kind in POLICY_KINDS | {"Profile"}],
                          versions)  # fmt: skip
        if any(r.kind == "Profile" for r in readers):
            return None
        for r in readers:
            names.update(index.selections.get(policy_label_of_ref(r.ref), ()))
        for ref in moved:
            if ref.startswith("WorkloadEndpoint/"):
                names.add(ref.partition("/")[2])  # its own chain: "namespace/name"
    return names, facts


def policy_label_of_ref(ref: str) -> str:
    """A policy's label from its ref (Kind/name or Kind/ns/name)."""
    return "policy/" + ref.partition("/")[2]


def recompile(
    resources: Sequence[Any],
    node: str,
    workloads: Sequence[tuple[str, int, int]],
    failsafe: Sequence[Any],
    previous: Mapping[str, Obj],
    index: PolicyIndex,
    compile_endpoints: Callable[[Any, Sequence[tuple[str, int, int]]], list[Obj]],
) -> Incremental | None:
    """The policy objects after a change, from the last compile's `previous`
    objects and `index`, for a node without host endpoints; None when only a
    full compile can answer.
    `compile_endpoints(model, workloads)` is policy_objects' own compile of
    the given workloads: their programs' entries and rcl_pol_ep entries."""
    read = read_inputs(resources)
    if read is None:
        return None
    inputs, ordered = read
    if context_of(node, workloads, (), failsafe, ordered) != index.context:
        return None
    found = affected(resources, node, index, inputs)
    if found is None:
        return None
    names, facts = found
    programs, endpoints = _split(previous)
    if any(ifname not in endpoints for ifname, _, _ in workloads):
        return None
    try:
        model = build_model(resources, node, only=names)
    except PolicyError as exc:
        return Incremental([], [str(exc)], [], None)  # as the full compile answers
    selections = {}
    for label in {*index.selections, *model.selections}:
        kept = {n for n in index.selections.get(label, ()) if n not in names}
        picked = tuple(sorted(kept | set(model.selections.get(label, ()))))
        if picked:
            selections[label] = picked
    new_index = PolicyIndex(index.context, inputs, selections, facts, index.local)
    redo_ifaces = {ep.interface for ep in model.endpoints}
    redo = [w for w in workloads if w[0] in redo_ifaces]
    fresh = compile_endpoints(model, redo)
    by_address = {o.address: o for o in fresh}
    kept_eps = [endpoints[ifname] for ifname, _, _ in workloads if ifname not in redo_ifaces]
    live: set[str] = set()
    for obj in (*kept_eps, *(o for o in fresh if o.address.startswith(_prefix(pl.MAP_EP)))):
        live.update((str(obj.attrs["ingress"]), str(obj.attrs["egress"])))
    objects = dict(by_address)
    for pid in live:
        for address, obj in programs.get(pid, {}).items():
            objects.setdefault(address, obj)
    objects.update({o.address: o for o in kept_eps})
    return Incremental(list(objects.values()), [], [], new_index)


def entry_counts(objects: Iterable[Obj]) -> dict[str, int]:
    """Entries per program map (what capacity errors count)."""
    heads = Counter([o.address[: o.address.find("/", 4) + 1] for o in objects])
    return {name: heads[_prefix(name)] for name in PROGRAM_MAPS if heads[_prefix(name)]}
