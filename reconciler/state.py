"""Desired and observed dataplane state as flat maps of addressed objects.

Both sides have the same shape so that diffing is one generic, pure function.
Addresses are what users read in a plan, e.g. `tc/eth0/ingress`,
`map/rcl_ifstate/eth0`, `prog/tc@3f2a9c1b7d40`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ObjKind(enum.Enum):
    PROG = "prog"  # a pinned, compiled set of BPF programs
    MAP = "map"  # a pinned map's shape (resizing is a replace)
    ENTRY = "entry"  # one entry of a pinned map
    TC = "tc"  # a tc clsact filter of ours on one interface and direction
    CGROUP = "cgroup"  # a cgroup sock_addr attachment of ours


@dataclass(frozen=True, slots=True)
class Obj:
    """One thing we own in the kernel. `attrs` is compared for equality."""

    address: str
    kind: ObjKind
    attrs: Mapping[str, Any]
    # Shown in plans and status, never compared (why an object exists).
    info: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class DesiredState:
    node: str
    enabled: bool
    objects: Mapping[str, Obj]
    warnings: tuple[str, ...] = ()
    # What apply needs to build programs: bpf/ source hash and compiler flags.
    build: Mapping[str, Any] = field(default_factory=dict)
    # Plan-time errors (a map would overflow): nothing may be applied.
    errors: tuple[str, ...] = ()
    # Bulk maps (service NAT, 100k+ entries) as raw key -> value bytes, compared
    # at C speed; only differing keys become readable changes.
    tables: Mapping[str, Mapping[bytes, bytes]] = field(default_factory=dict)
    # svc_id -> what to show next to its NAT entries in a plan
    table_info: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    # reconciler.nat_compile.NatIndex: lets the next compile redo only the
    # services a change touched (not state: never compared).
    nat_index: Any = field(default=None, compare=False, repr=False)
    # table -> (the table this one was derived from, the keys that differ):
    # when the kernel still holds that earlier table, those keys are the whole
    # diff. Only in memory: never stored, never compared.
    table_base: Mapping[str, tuple[Mapping[bytes, bytes], frozenset[bytes]]] = field(
        default_factory=dict, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class ObservedState:
    objects: Mapping[str, Obj]
    foreign: tuple[str, ...] = ()  # seen but not ours: reported, never touched
    tables: Mapping[str, Mapping[bytes, bytes]] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Stable hash of everything we own; a saved plan is stale when it moves."""
        canon = sorted(
            (o.address, o.kind.value, json.dumps(o.attrs, sort_keys=True, default=str))
            for o in self.objects.values()
        )
        digest = hashlib.sha256(json.dumps(canon).encode())
        for name in sorted(self.tables):
            digest.update(name.encode())
            table = self.tables[name]
            digest.update(b"".join([k + table[k] for k in sorted(table)]))
        return digest.hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Link:
    """A network interface as compile needs to see it (name and index only)."""

    name: str
    ifindex: int
    addresses: tuple[str, ...] = ()  # IPv4 addresses, for NodePort frontends
