"""Desired and observed dataplane state as flat maps of addressed objects.

Both sides have the same shape so that diffing is one generic, pure function.
Addresses are what users read in a plan, e.g. `tc/eth0/ingress`,
`map/rcl_ifstate/eth0`, `prog/tc@3f2a9c1b7d40`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.plan.tables import record_pairs


class ObjKind(enum.Enum):
    PROG = "prog"  # a pinned, compiled set of BPF programs
    MAP = "map"  # a pinned map's shape (resizing is a replace)
    ENTRY = "entry"  # one entry of a pinned map
    TC = "tc"  # a tc clsact filter of ours on one interface and direction
    CGROUP = "cgroup"  # a cgroup sock_addr attachment of ours
    XDP = "xdp"  # our XDP program attached to one interface
    # Rules another agent left that the config asks us to take out
    # (kube-proxy's chains): observed only while some are there, wanted as
    # none, never created and never ours (reconciler.plan.diff)
    NETFILTER = "netfilter"
    IPTABLES = "iptables"  # a netfilter chain of ours (natOutgoing), and the jump to it


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
    """What the node should have, and nothing else: a plain value. How the
    kernel's copies of its bulk tables are recognised travels beside it (Recognition)."""

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
    # reconciler.compile.nat_index.NatIndex: lets the next compile redo only the
    # services a change touched (not state: never compared).
    nat_index: Any = field(default=None, compare=False, repr=False)
    # What the configuration says that this node validates but does not act
    # on ("Kind/name: field: not enforced: why"), for the plan to list.
    not_enforced: tuple[str, ...] = field(default=(), compare=False)
    # reconciler.compile.policy_incremental.PolicyIndex: lets the next compile
    # redo only the endpoints a policy change touches (not state: never compared).
    policy_index: Any = field(default=None, compare=False, repr=False)
    # "namespace/name" -> (healthCheckNodePort, ready endpoints on this node):
    # what the watcher's health check servers answer (reconciler.engine.service_health)
    health_checks: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    # reconciler.compile.agent.AgentSettings: where the watcher serves metrics
    # and probes, and how much it logs (the agent's, not the kernel's: never
    # compared). None: a state stored before states carried it.
    agent: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Recognition:
    """How the kernel's copies of a DesiredState's bulk tables can be
    recognised without comparing 100k entries. It travels beside the state
    it was made for (from the store, from an incremental compile) into diff;
    it is never part of the state and never stored with it. Without it,
    diff compares the tables in full: the answer is the same, only slower."""

    # table -> (the table this one was derived from, the keys that differ,
    # how the kernel's copy of that table is recognised): when the kernel
    # still holds that earlier table, those keys are the whole diff.
    table_base: Mapping[str, tuple[Mapping[bytes, bytes], frozenset[bytes], Mark | None]] = (
        field(default_factory=dict)
    )
    # table -> how the kernel's copy is recognised once the state was applied:
    # its digest (RawTable.digest) or the dump the apply wrote over
    # (AppliedDump, WrittenDump), from the store's applied record.
    kernel_digests: Mapping[str, str] = field(default_factory=dict)
    kernel_dumps: Mapping[str, AppliedDump | WrittenDump] = field(default_factory=dict)

    def kernel_mark(self, table: str) -> Mark | None:
        """The Mark of one table (reconciler.plan.state.recognised), or None."""
        return self.kernel_digests.get(table) or self.kernel_dumps.get(table)

    @classmethod
    def derived(
        cls,
        base: DesiredState,
        known: Recognition,
        touched: Mapping[str, frozenset[bytes]],
    ) -> Recognition:
        """For a state derived from `base` (recognised by `known`) by
        changing only the `touched` keys of each named table."""
        return cls(
            table_base={
                name: (base.tables.get(name, {}), keys, known.kernel_mark(name))
                for name, keys in touched.items()
            }
        )


UNRECOGNISED = Recognition()  # nothing known: diff compares the tables in full


class RawTable(Mapping[bytes, bytes]):
    """A bulk table as read from the kernel: two buffers, sliced into a dict
    only when something looks up an entry. Its digest names its exact bytes
    in the kernel's order, so a table seen before can be recognised without
    building or comparing 100k entries."""

    def __init__(self, keys: bytes, values: bytes, key_size: int, value_size: int) -> None:
        self._keys, self._values = keys, values
        self._ks, self._vs = key_size, value_size
        self._dict: dict[bytes, bytes] | None = None
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = _digest(self._keys, self._values)
        return self._digest

    @property
    def entries(self) -> dict[bytes, bytes]:
        if self._dict is None:
            self._dict = dict(record_pairs(self._keys, self._values, self._ks, self._vs))
        return self._dict

    def __getitem__(self, key: bytes) -> bytes:
        return self.entries[key]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self._keys) // self._ks if self._ks else 0

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RawTable) and other.digest == self.digest:
            return True
        if not isinstance(other, Mapping):
            return False
        return self.entries == (other if isinstance(other, dict) else dict(other.items()))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class AppliedDump:
    """A bulk table as the kernel held it before an apply, and the keys that
    apply wrote. Recognises the table the kernel holds afterwards without
    reading it again: a hash map's update moves only the written key within
    its bucket, so the dumps minus the written keys' records must be the
    same bytes, and the written keys must hold what the state says."""

    keys: bytes
    values: bytes
    key_size: int
    value_size: int
    written: frozenset[bytes]

    @classmethod
    def of(cls, before: RawTable, written: frozenset[bytes]) -> AppliedDump:
        return cls(before._keys, before._values, before._ks, before._vs, written)

    def matches(self, now: RawTable, table: Mapping[bytes, bytes]) -> bool:
        """Does the kernel's table `now` hold exactly `table`, given that
        `table` was applied over this dump by writing `written`?"""
        if (now._ks, now._vs) != (self.key_size, self.value_size):
            return False
        old_keys, old_values, _ = _cut(self.keys, self.values, self.key_size, self.value_size,
                                       self.written)  # fmt: skip
        new_keys, new_values, at = _cut(now._keys, now._values, now._ks, now._vs, self.written)
        if old_keys != new_keys or old_values != new_values:
            return False  # something else changed (a hand edit, another writer)
        return _holds(now, at, {key: table.get(key) for key in self.written})


@dataclass(frozen=True, slots=True)
class WrittenDump:
    """A map as an apply left it, recognised without reading it after the
    apply: the digest of the dump the plan read without the records of the
    keys the apply wrote (`rest`), and what each written key held when
    verify read it back (None: absent). A write moves only the written key
    within a dump (AppliedDump), so a later dump is the applied map exactly
    when, its written keys' records cut out, it has the digest `rest` and
    each written key holds what verify found there."""

    rest: str
    key_size: int
    value_size: int
    written: Mapping[bytes, bytes | None]

    @classmethod
    def of(cls, before: RawTable, written: Mapping[bytes, bytes | None]) -> WrittenDump:
        keys, values, _ = _cut(before._keys, before._values, before._ks, before._vs, written)
        return cls(_digest(keys, values), before._ks, before._vs, dict(written))

    def matches(self, now: RawTable, table: Mapping[bytes, bytes] | None = None) -> bool:
        """Does the kernel's map `now` hold what the apply left? (`table` is
        not needed: the written keys' values are recorded.)"""
        if (now._ks, now._vs) != (self.key_size, self.value_size):
            return False
        keys, values, at = _cut(now._keys, now._values, now._ks, now._vs, self.written)
        return _digest(keys, values) == self.rest and _holds(now, at, self.written)


def _digest(keys: bytes, values: bytes) -> str:
    """A dump's digest (its record count follows from the total length)."""
    h = hashlib.blake2b(keys, digest_size=16)
    h.update(values)
    return h.hexdigest()


def _cut(
    keys: bytes, values: bytes, ks: int, vs: int, written: Iterable[bytes]
) -> tuple[bytes, bytes, dict[bytes, int]]:
    """A dump's keys and values without the records of the `written` keys,
    and the record number where each of those was found."""
    at: dict[bytes, int] = {}
    for key in written:
        i = keys.find(key)
        while i >= 0 and i % ks:
            i = keys.find(key, i + 1)
        if i >= 0:
            at[key] = i // ks
    cuts = sorted(at.values())
    kept_keys, kept_values, start = [], [], 0
    for n in cuts:
        kept_keys.append(keys[start * ks : n * ks])
        kept_values.append(values[start * vs : n * vs])
        start = n + 1
    kept_keys.append(keys[start * ks :])
    kept_values.append(values[start * vs :])
    return b"".join(kept_keys), b"".join(kept_values), at


def _holds(now: RawTable, at: Mapping[bytes, int], want: Mapping[bytes, bytes | None]) -> bool:
    """Does each key of `want` hold its value in `now` (None: is absent)?
    `at`: where _cut found the keys."""
    vs = now._vs
    for key, value in want.items():
        if (key in at) != (value is not None):
            return False
        if value is not None and now._values[at[key] * vs : (at[key] + 1) * vs] != value:
            return False
    return True


# How a table the kernel holds is recognised: its digest, the dump an apply
# wrote over (bulk NAT tables), or the dump with the written keys' values.
Mark = str | AppliedDump | WrittenDump


def recognised(mark: Mark | None, now: Mapping[bytes, bytes], table: Mapping[bytes, bytes]) -> bool:
    """Is `now` (read from the kernel) provably `table`, by the mark recorded
    when `table` was applied: its digest, or the dump it was applied over
    (with the written keys' values)?"""
    if mark is None or not isinstance(now, RawTable):
        return False
    if isinstance(mark, str):
        return now.digest == mark
    return mark.matches(now, table)


def table_digest(table: Mapping[bytes, bytes]) -> str | None:
    """The kernel-order digest of a table read from the kernel, else None."""
    return table.digest if isinstance(table, RawTable) else None


@dataclass(frozen=True, slots=True)
class ObservedState:
    objects: Mapping[str, Obj]
    foreign: tuple[str, ...] = ()  # seen but not ours: reported, never touched
    tables: Mapping[str, Mapping[bytes, bytes]] = field(default_factory=dict)
    # Maps read as raw dumps: their entries are not among `objects` until
    # reconciler.observe.kernel.with_entries puts them there.
    raw: Mapping[str, RawTable] = field(default_factory=dict)
    # The live links it was read with: names for entries read back later.
    links: tuple[Link, ...] = field(default=(), compare=False)

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
