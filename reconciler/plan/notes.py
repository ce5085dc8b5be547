"""Why the entries a plan removes were compiled.

A removed entry exists only in the kernel, which keeps no reason for it. The
state this node last applied does: the policy rule or the Service each of
its entries was compiled from. A removal is named from it when the kernel
still holds exactly what that state wrote at that address (for the NAT
tables, by the entry's service id, a stable hash of the service port's
name). Without such a record (a node that never applied, --no-cache)
removals are shown bare; the changes are the same either way, only their
notes differ."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.datapath.maps import codecs as entries
from reconciler.plan.state import DesiredState, Obj, ObjKind, ObservedState

Info = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RemovalNotes:
    # address -> the entry a recorded state compiled there (attrs and info)
    objects: Mapping[str, Obj] = field(default_factory=dict)
    # service id -> the info of that service port's NAT entries
    services: Mapping[int, Info] = field(default_factory=dict)

    @classmethod
    def of(cls, applied: DesiredState | None, observed: ObservedState) -> RemovalNotes:
        """The notes the state last applied gives, when it was applied to
        the kernel `observed` was read from: one of its program sets is
        there (a set's name hashes its build, the bpffs root's pin paths
        with it). None without such a state: a cache directory shared by
        several sandbox nodes holds the last one applied to any of them."""
        if applied is None:
            return NO_NOTES
        held = observed.objects
        if not any(o.kind is ObjKind.PROG and a in held for a, o in applied.objects.items()):
            return NO_NOTES
        return cls(applied.objects, applied.table_info)

    def entry(self, held: Obj) -> Info:
        """The info of an entry the kernel holds, when the record compiled
        exactly it; else empty."""
        known = self.objects.get(held.address)
        if known is None or not known.info or known.kind is not ObjKind.ENTRY:
            return {}
        if known.attrs is not held.attrs and dict(known.attrs) != dict(held.attrs):
            return {}
        return known.info

    def table_entry(self, table: str, key: bytes, value: bytes) -> Info:
        """The info of a NAT table entry the kernel holds: its service's."""
        if not self.services:
            return {}
        return self.services.get(entries.svc_id_of(table, key, value), {})

    def for_observed(self, observed: ObservedState) -> RemovalNotes:
        """Only what names entries `observed` holds (a snapshot carries these)."""
        objects = {}
        for address, held in observed.objects.items():
            if held.kind is ObjKind.ENTRY and (info := self.entry(held)):
                objects[address] = Obj(address, ObjKind.ENTRY, held.attrs, info)
        ids = {
            entries.svc_id_of(name, key, value)
            for name, table in observed.tables.items()
            for key, value in table.items()
        } if self.services else set()  # fmt: skip
        return RemovalNotes(objects, {i: self.services[i] for i in ids if i in self.services})


NO_NOTES = RemovalNotes()
