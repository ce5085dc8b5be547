"""Service NAT tables: folded from per-service fragments, and updated in place
when a change touches only some services. Pure.

A full compile folds every service's fragment into the two raw tables. It also
leaves an index (reconciler.compile.nat_index) in the desired state so that
the next compile, when every changed file holds only Services and
EndpointSlices and nothing else moved, can recompute just the services those
files feed: unpack their old fragments from the tables, pack the new ones in.
At 10,000 services that is the difference between recompiling 10,000
services and recompiling one.
When only interfaces came or went (a pod's veth), `relink` keeps the tables
and takes the interface part from a compile of the other resources alone.
The result must equal a full compile's (tests/unit/test_incremental.py holds
it to that over random edits); whenever it could differ, `update` and
`relink` return None and the caller compiles in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.compile.nat_index import Ident, NatIndex
from reconciler.compile.services import (
    Fragment,
    ServiceRef,
    _groups,
    _id_keys,
    _stable_ids,
    feeds,
    service_fragments,
)
from reconciler.config.model import Resource
from reconciler.datapath.maps.nat_types import DEFAULT_SIZES, MAP_NAT_BE, MAP_NAT_FE, MAP_NAT_SRC
from reconciler.plan.state import DesiredState
from reconciler.plan.tables import over

NAT_KINDS = frozenset({"Service", "EndpointSlice"})
FE, BE, SRC = MAP_NAT_FE, MAP_NAT_BE, MAP_NAT_SRC
SRC_CAPACITY = DEFAULT_SIZES[MAP_NAT_SRC]
# A state derived from a previous one, and by table the only keys whose
# entries may differ from the previous state's (reconciler.plan.state.Recognition.derived).
Derived = tuple[DesiredState, Mapping[str, frozenset[bytes]]]


@dataclass(frozen=True, slots=True)
class Folded:
    tables: dict[str, dict[bytes, bytes]]
    table_info: dict[int, dict[str, Any]]
    warnings: tuple[str, ...]
    errors: tuple[str, ...]
    counts: tuple[int, int]
    conflicts: bool
    service_warnings: dict[ServiceRef, tuple[str, ...]] = field(default_factory=dict)
    health_checks: dict[str, tuple[int, int]] = field(default_factory=dict)


def health_name(ref: ServiceRef) -> str:
    """A health check's service as kube-proxy's answer names it."""
    return f"{ref[0] or 'default'}/{ref[1]}"


def _health_checks(
    fragments: Mapping[ServiceRef, Fragment],
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Every service's health check; a port two services name is the first's."""
    checks: dict[str, tuple[int, int]] = {}
    owner: dict[int, str] = {}
    warnings = []
    for ref in sorted(fragments, key=_sort_key):
        health = fragments[ref].health
        if health is None:
            continue
        name = health_name(ref)
        if health[0] in owner:
            warnings.append(
                f"Service/{name}: healthCheckNodePort {health[0]} is also "
                f"{owner[health[0]]}'s; not served for this one"
            )
            continue
        owner[health[0]] = name
        checks[name] = health
    return checks, warnings


def _sort_key(ref: ServiceRef) -> tuple[str, str]:
    return (ref[0] or "", ref[1])


def _service_warning_lines(by_service: Mapping[ServiceRef, tuple[str, ...]]) -> list[str]:
    return [w for ref in sorted(by_service, key=_sort_key) for w in by_service[ref]]


def overflow_errors(
    counts: tuple[int, int], sizes: tuple[int, int], sources: int = 0
) -> list[str]:
    errors = []
    if sources > SRC_CAPACITY:
        errors.append(
            f"map {SRC} would overflow: {sources} loadBalancerSourceRanges entries "
            f"(one per range and service port) for its {SRC_CAPACITY}"
        )
    for table, count, size, what, field_name in (
        (FE, counts[0], sizes[0], "frontends", "bpfMapSizeNATFrontend"),
        (BE, counts[1], sizes[1], "backends", "bpfMapSizeNATBackend"),
    ):
        if count > size:
            errors.append(f"map {table} would overflow: {count} {what} for {field_name} = {size}")
    return errors


def fold(fragments: Mapping[ServiceRef, Fragment], sizes: tuple[int, int]) -> Folded:
    """Every fragment into the two tables; the first service to claim a
    frontend keeps it (the others get a warning)."""
    fe: dict[bytes, bytes] = {}
    be: dict[bytes, bytes] = {}
    src: dict[bytes, bytes] = {}
    info: dict[int, dict[str, Any]] = {}
    owner: dict[bytes, str] = {}
    conflict_warnings: list[str] = []
    by_service = {ref: f.warnings for ref, f in fragments.items() if f.warnings}
    for fragment in fragments.values():
        for svc_id, primary, service in fragment.info:
            info[svc_id] = {"frontend": primary, "service": service}
        for key, value, label, service in fragment.frontends:
            if key in owner:
                conflict_warnings.append(
                    f"{service}: frontend {label} is also used by {owner[key]}, which keeps "
                    f"it; {service}'s is not programmed"
                )
                continue
            owner[key] = service
            fe[key] = value
        be.update(fragment.backends)
        src.update(fragment.sources)
    health, health_warnings = _health_checks(fragments)
    conflict_warnings += health_warnings
    counts = (
        sum(f.frontend_count for f in fragments.values()),
        sum(f.backend_count for f in fragments.values()),
    )
    return Folded(
        {FE: fe, BE: be, SRC: src}, info,
        (*_service_warning_lines(by_service), *conflict_warnings),
        tuple(overflow_errors(counts, sizes, len(src))), counts, bool(conflict_warnings),
        by_service, health,
    )  # fmt: skip


def build_index(
    resources: Sequence[Resource],
    file_ids: Mapping[str, str],
    context: str,
    folded: Folded,
    ids: Mapping[str, int],
    sizes: tuple[int, int],
    node: str,
    node_ips: Sequence[str],
    base_warnings: Sequence[str],
    base_errors: Sequence[str],
    excluded: Sequence[str] = (),
    zone: str = "",
) -> NatIndex:
    from reconciler.compile.policy_model import service_refs  # (a full compile has it)

    owners: dict[Ident, str] = {}
    feeders: dict[ServiceRef, list[str]] = {}
    for r in resources:
        owners[r.key] = r.file
        ref = feeds(r)
        if ref is not None:
            paths = feeders.setdefault(ref, [])
            if r.file not in paths:
                paths.append(r.file)
    return NatIndex(
        context, dict(file_ids), owners, {k: tuple(sorted(v)) for k, v in feeders.items()},
        dict(ids),
        folded.service_warnings, folded.counts, sizes, node, tuple(node_ips),
        tuple(base_warnings), tuple(base_errors), folded.conflicts,
        others=tuple(sorted({r.file for r in resources if r.kind not in NAT_KINDS})),
        policy_services=service_refs(resources), excluded=tuple(excluded), zone=zone,
    )  # fmt: skip


def changed_paths(index: NatIndex, files: Mapping[str, str]) -> set[str]:
    old = index.files
    # one pass over plain dicts: the stored map is a lazy mapping or an overlay
    old = old if isinstance(old, dict) else dict(old.items())
    new = files if isinstance(files, dict) else dict(files.items())
    return {path for path, _ in old.items() ^ new.items()}


def _port_keys_of(resources: Iterable[Resource]) -> set[str]:
    services, _ = _groups(list(resources))
    return {key for svc in services for key in _id_keys(svc)}


def update(
    previous: DesiredState,
    files: Mapping[str, str],
    old: Mapping[str, Sequence[Resource]],
    new: Mapping[str, Sequence[Resource]],
    unchanged: Mapping[str, Sequence[Resource]],
) -> Derived | None:
    """The desired state after the changed files (`old`: their previous
    resources, `new`: their current ones, by path; a removed file is absent
    from `new`, an added one from `old`) and the table keys that moved, or
    None when only a full compile can say. `unchanged` gives the resources of
    the unchanged files that also feed an affected service (`needs` tells
    which paths those are)."""
    index = previous.nat_index
    if not isinstance(index, NatIndex) or index.conflicts or not previous.enabled:
        return None
    for resources in (*old.values(), *new.values()):
        if any(r.kind not in NAT_KINDS for r in resources):
            return None  # interfaces, policy or Felix config may move too
    # Identities: a file may take over a name another file still defines.
    owners = over(index.owners)
    for path, resources in old.items():
        for r in resources:
            if owners.get(r.key) == path:
                del owners[r.key]
    for path, resources in new.items():
        for r in resources:
            if r.key in owners:
                return None  # a duplicate: full validation reports it with both places
            owners[r.key] = path
    affected = _affected(old, new)
    if affected & index.policy_services:
        return None  # policy rules name it: their endpoints moved too
    feeders = over(index.feeders)
    for ref in affected:
        paths = [p for p in feeders.get(ref, ()) if p not in old and p not in new]
        paths += [p for p, rs in new.items() if any(feeds(r) == ref for r in rs)]
        if paths:
            feeders[ref] = tuple(sorted(set(paths)))
        else:
            feeders.pop(ref, None)
    if not needs(index, old, new) <= unchanged.keys():
        return None

    def version(source: Mapping[str, Sequence[Resource]], paths: Iterable[str]) -> list[Resource]:
        out: list[Resource] = []
        for p in sorted(set(paths)):
            got = source.get(p)
            if got is None:
                got = unchanged.get(p, ())
            out += [r for r in got if feeds(r) in affected]
        return out

    before = version(old, [p for ref in affected for p in index.feeders.get(ref, ())])
    after = version(new, [p for ref in affected for p in feeders.get(ref, ())])
    ids: Mapping[str, int] = over(index.ids)
    old_keys, new_keys = _port_keys_of(before), _port_keys_of(after)
    if old_keys != new_keys:
        renumbered = _stable_ids(sorted((ids.keys() - old_keys) | new_keys))
        if any(renumbered[k] != v for k, v in ids.items() if k not in old_keys):
            return None  # a collision shifted another service's id
        ids = renumbered
    node, ips = index.node, index.node_ips
    gone = service_fragments(before, node, ips, index.ids, index.excluded, index.zone)
    came = service_fragments(after, node, ips, ids, index.excluded, index.zone)
    fe = over(previous.tables.get(FE, {}))
    be = over(previous.tables.get(BE, {}))
    src = over(previous.tables.get(SRC, {}))
    info = over(previous.table_info)
    for fragment in gone.values():
        for key, *_ in fragment.frontends:
            fe.pop(key, None)
        for key, _ in fragment.backends:
            be.pop(key, None)
        for key, _ in fragment.sources:
            src.pop(key, None)
        for svc_id, *_ in fragment.info:
            info.pop(svc_id, None)
    for fragment in came.values():
        for key, value, *_ in fragment.frontends:
            if key in fe:
                return None  # claimed by another service: full compile orders that
            fe[key] = value
        be.update(fragment.backends)
        src.update(fragment.sources)
        for svc_id, primary, service in fragment.info:
            info[svc_id] = {"frontend": primary, "service": service}
    counts = (
        index.counts[0]
        - sum(f.frontend_count for f in gone.values())
        + sum(f.frontend_count for f in came.values()),
        index.counts[1]
        - sum(f.backend_count for f in gone.values())
        + sum(f.backend_count for f in came.values()),
    )
    health = dict(previous.health_checks)
    for ref in gone:
        health.pop(health_name(ref), None)
    for ref, fragment in came.items():
        if fragment.health is not None:
            if any(port == fragment.health[0] for port, _ in health.values()):
                return None  # two services name one port: full compile orders them
            health[health_name(ref)] = fragment.health
    warned = {k: v for k, v in index.service_warnings.items() if k not in gone}
    warned.update({ref: f.warnings for ref, f in came.items() if f.warnings})
    errors = (*index.base_errors, *overflow_errors(counts, index.sizes, len(src)))
    new_files = over(index.files)
    for path in old.keys() | new.keys():  # exactly the paths whose blob id moved
        if path in files:
            new_files[path] = files[path]
        elif path in new_files:
            del new_files[path]
    new_index = replace(
        index, files=new_files, owners=owners, feeders=feeders, ids=ids,
        service_warnings=warned, counts=counts,
    )  # fmt: skip
    touched = {
        FE: frozenset(k for f in (*gone.values(), *came.values()) for k, *_ in f.frontends),
        BE: frozenset(k for f in (*gone.values(), *came.values()) for k, _ in f.backends),
        SRC: frozenset(k for f in (*gone.values(), *came.values()) for k, _ in f.sources),
    }
    state = replace(
        previous,
        warnings=(*index.base_warnings, *_service_warning_lines(warned)),
        errors=errors,
        tables={**previous.tables, FE: fe, BE: be, SRC: src},
        table_info=info,
        nat_index=new_index,
        health_checks=health,
    )
    return state, touched


def relink(previous: DesiredState, interfaces: DesiredState, context: str) -> Derived | None:
    """`previous` for new links: its service tables, with everything else
    from `interfaces`, a compile of the same source's non-service files for
    the links now (no table key moves). None (compile in full) when what the
    services depend on moved: the node's data IPs (NodePorts), the table
    sizes, the node."""
    index, other = previous.nat_index, interfaces.nat_index
    if not isinstance(index, NatIndex) or not isinstance(other, NatIndex):
        return None
    if index.conflicts or not previous.enabled or not interfaces.enabled:
        return None
    if (other.node_ips, other.sizes, other.node) != (index.node_ips, index.sizes, index.node):
        return None
    new_index = replace(
        index, context=context, files=over(index.files), owners=over(index.owners),
        feeders=over(index.feeders), ids=over(index.ids),
        base_warnings=other.base_warnings, base_errors=other.base_errors,
    )  # fmt: skip
    state = replace(
        previous,
        objects=interfaces.objects,
        policy_index=interfaces.policy_index,  # what made those objects' policy entries
        build=interfaces.build,
        warnings=(*other.base_warnings, *_service_warning_lines(index.service_warnings)),
        errors=(
            *other.base_errors,
            *overflow_errors(index.counts, index.sizes, len(previous.tables.get(SRC, {}))),
        ),
        tables={name: over(table) for name, table in previous.tables.items()},
        table_info=over(previous.table_info),
        nat_index=new_index,
    )
    return state, {name: frozenset() for name in previous.tables}


def needs(
    index: NatIndex, old: Mapping[str, Sequence[Resource]], new: Mapping[str, Sequence[Resource]]
) -> set[str]:
    """Unchanged files whose resources `update` needs: the other feeders of
    every service the changed files feed."""
    return {
        p
        for ref in _affected(old, new)
        for p in index.feeders.get(ref, ())
        if p not in old and p not in new
    }


def _affected(
    old: Mapping[str, Sequence[Resource]], new: Mapping[str, Sequence[Resource]]
) -> set[ServiceRef]:
    """Every service a changed file fed before or feeds now."""
    return {ref for rs in (*old.values(), *new.values()) for r in rs if (ref := feeds(r))}


__all__ = ["NatIndex", "build_index", "changed_paths", "fold", "needs", "update"]
