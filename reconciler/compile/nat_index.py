"""The index a full compile leaves in a desired state (DesiredState.nat_index)
so that a later compile can redo only the services a change touched
(reconciler.compile.nat_tables). Apart from nat_tables, which imports the
service compiler: a stored state holds an index, and loading one for a no-op
plan needs this class alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.compile.services import ServiceRef

Ident = tuple[str, str | None, str]  # kind, namespace, name


@dataclass(frozen=True, slots=True)
class NatIndex:
    """What a later compile needs to redo only the services a change touched."""

    context: str  # hash of every compile input except the config files
    files: Mapping[str, str]  # path -> blob id, every file of the source
    owners: Mapping[Ident, str]  # resource identity -> the file defining it
    feeders: Mapping[ServiceRef, tuple[str, ...]]  # service -> files feeding its entries
    ids: Mapping[str, int]  # service port key -> service id
    service_warnings: Mapping[ServiceRef, tuple[str, ...]]
    counts: tuple[int, int]  # frontends, backends (as packed, before de-duplication)
    sizes: tuple[int, int]  # bpfMapSizeNATFrontend, bpfMapSizeNATBackend
    node: str
    node_ips: tuple[str, ...]
    base_warnings: tuple[str, ...]
    base_errors: tuple[str, ...]
    conflicts: bool  # two services claimed one frontend: always compile in full
    base_context: str = ""  # hash of the inputs in `context` but the links (see relink)
    source: str = ""  # the identity of the source compiled (set by the pipeline)
    others: tuple[str, ...] = ()  # files holding other resources than NAT_KINDS
    # (namespace, name) of the Services policy rules name: their endpoints are
    # policy's input too, so a change to them is not a services-only change
    policy_services: frozenset[tuple[str, str]] = frozenset()
    # bpfExcludeCIDRsFromNAT: addresses that get no frontend
    excluded: tuple[str, ...] = ()
    # this node's zone, from its HostEndpoints (services.node_zone): a change
    # to them is not a services-only change
    zone: str = ""
