"""Diff: (DesiredState, ObservedState) -> ordered changes. Pure."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import host_types, iface_types, policy_types
from reconciler.plan.address import Address
from reconciler.plan.notes import NO_NOTES, RemovalNotes
from reconciler.plan.state import (
    UNRECOGNISED,
    DesiredState,
    ObjKind,
    ObservedState,
    Recognition,
    recognised,
)


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"

    @property
    def symbol(self) -> str:
        return {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}[self.value]


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    address: str
    kind: ObjKind
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    info: Mapping[str, Any]
    reason: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "address": self.address,
            "kind": self.kind.value,
            "before": dict(self.before) if self.before is not None else None,
            "after": dict(self.after) if self.after is not None else None,
            "info": dict(self.info),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            Action(data["action"]),
            data["address"],
            ObjKind(data["kind"]),
            data["before"],
            data["after"],
            data.get("info", {}),
            data.get("reason", ""),
        )


def _phase(change: Change) -> float:
    """Make-before-break: build and fill first, attach, then detach and prune."""
    a, k = change.action, change.kind
    if a is Action.DELETE:
        return {
            ObjKind.TC: 10,
            ObjKind.CGROUP: 10,
            ObjKind.XDP: 10,
            ObjKind.IPTABLES: 10,
            ObjKind.ENTRY: 11,
            ObjKind.PROG: 12,
            ObjKind.MAP: 13,
        }[k]
    if k is ObjKind.ENTRY:
        # A policy program's tables before the endpoint entry that switches
        # to it, and that before an interface is flagged as under policy.
        return _ENTRY_PHASES.get(Address.parse(change.address).map, 2)
    # Another agent's rules go once our programs are attached in their place.
    return {ObjKind.MAP: 0, ObjKind.PROG: 1, ObjKind.TC: 3, ObjKind.CGROUP: 3, ObjKind.XDP: 3,
            ObjKind.NETFILTER: 4, ObjKind.IPTABLES: 3}[k]  # fmt: skip


_ENTRY_PHASES = {  # by map
    policy_types.MAP_EP: 2.4,
    host_types.MAP_HEP: 2.4,
    host_types.MAP_XDP_EP: 2.4,
    iface_types.MAP_IFSTATE: 2.6,
}


def _map_of(address: str) -> str:
    """The address of the map an entry's address names."""
    return Address.map_text(Address.parse(address).map)


def diff(
    desired: DesiredState,
    observed: ObservedState,
    known: Recognition = UNRECOGNISED,
    notes: RemovalNotes = NO_NOTES,
) -> tuple[Change, ...]:
    """The changes that take `observed` to `desired`. `known` (what travels
    beside the state) lets equal bulk tables be recognised without comparing
    them; `notes` name the entries removed (reconciler.plan.notes)."""
    want, have = desired.objects, observed.objects
    changes: list[Change] = []
    for address, obj in want.items():
        old = have.get(address)
        if obj.kind is ObjKind.NETFILTER:
            # Another agent's rules, wanted gone: a change only while some
            # are there (nothing to create when none are).
            if old is not None and dict(old.attrs) != dict(obj.attrs):
                changes.append(
                    Change(Action.UPDATE, address, obj.kind, old.attrs, obj.attrs, old.info)
                )
            continue
        if old is None:
            changes.append(Change(Action.CREATE, address, obj.kind, None, obj.attrs, obj.info))
        elif old.attrs is not obj.attrs and dict(old.attrs) != dict(obj.attrs):
            # (the same attrs: an entry recognised as the applied state's, kept
            # by an incremental compile; 24,000 policy entries compare at once)
            # A map's shape cannot change in place: a new map, entries migrated.
            action = Action.REPLACE if obj.kind is ObjKind.MAP else Action.UPDATE
            changes.append(Change(action, address, obj.kind, old.attrs, obj.attrs, obj.info))
    deleted_maps = {a for a, o in have.items() if o.kind is ObjKind.MAP and a not in want}
    recreated_maps = {c.address for c in changes if c.kind is ObjKind.MAP}
    for address in have.keys() - want.keys():  # (sorted below)
        old = have[address]
        if old.kind is ObjKind.ENTRY and _map_of(address) in deleted_maps:
            continue  # pruned with its map
        if old.kind is ObjKind.NETFILTER:
            continue  # not ours: left alone unless the config asks
        # An entry's info comes from the notes, never from `old`: one
        # recognised as the applied state's carries that state's info, one
        # decoded none, and the two plans must be the same.
        info = notes.entry(old) if old.kind is ObjKind.ENTRY else old.info
        changes.append(Change(Action.DELETE, address, old.kind, old.attrs, None, info))
    changes += _table_changes(desired, observed, deleted_maps, known, notes)
    if recreated_maps:
        changes = _rebuild_programs(changes, desired, observed, recreated_maps)
    changes = _reattach(changes, desired, observed)
    changes.sort(key=lambda c: (_phase(c), c.address))
    return tuple(changes)


def _table_changes(
    desired: DesiredState,
    observed: ObservedState,
    deleted_maps: set[str],
    known: Recognition,
    notes: RemovalNotes,
) -> list[Change]:
    """Bulk maps: equal tables cost one dict comparison; only differing keys
    are decoded into readable changes."""
    ctx = entries.Context({})
    out = []
    for name in sorted(set(desired.tables) | set(observed.tables)):
        want = desired.tables.get(name, {})
        have = observed.tables.get(name, {})
        if Address.map_text(name) in deleted_maps:
            continue
        # Comparing two 100k-entry tables dominates a one-change plan: avoid
        # it when the kernel's copy is provably one we applied (its digest, or
        # the dump that apply wrote over), else do it once. When the kernel
        # holds the table this one was derived from, only the keys the
        # derivation touched can differ.
        if recognised(known.kernel_mark(name), have, want):
            continue  # exactly what was there when this state was applied
        base, touched, base_mark = known.table_base.get(name, (None, frozenset(), None))
        if base is not None and (recognised(base_mark, have, base) or base == have):
            have = base  # the same entries: look them up without slicing the kernel's copy
            differing = [k for k in touched if k in want and have.get(k) != want[k]]
            gone = [k for k in touched if k not in want and k in have]
        elif base is None and want == have:
            continue
        else:
            # plain dicts for the scan: a stored table answers one lookup at a time
            want = want if isinstance(want, dict) else dict(want.items())
            differing = [k for k, v in want.items() if have.get(k) != v]
            gone = [k for k in have if k not in want]
        for key in differing:
            text, after = entries.decode_one(name, key, want[key], ctx)
            address = Address.entry_text(name, text)
            info = desired.table_info.get(entries.svc_id_of(name, key, want[key]), {})
            old = have.get(key)
            if old is None:
                out.append(Change(Action.CREATE, address, ObjKind.ENTRY, None, after, info))
            else:
                _, before = entries.decode_one(name, key, old, ctx)
                out.append(Change(Action.UPDATE, address, ObjKind.ENTRY, before, after, info))
        for key in gone:
            text, before = entries.decode_one(name, key, have[key], ctx)
            address = Address.entry_text(name, text)
            info = notes.table_entry(name, key, have[key])
            out.append(Change(Action.DELETE, address, ObjKind.ENTRY, before, None, info))
    return out


def _rebuild_programs(
    changes: list[Change], desired: DesiredState, observed: ObservedState, maps: set[str]
) -> list[Change]:
    """Programs hold the maps they were built with: a recreated map means
    rebuilding the current program sets (and re-attaching them, _reattach)."""
    reason = "rebuilt for " + ", ".join(sorted(maps))
    touched = {c.address for c in changes}
    out = list(changes)
    for address, obj in desired.objects.items():
        if address in touched or address not in observed.objects:
            continue
        if obj.kind is ObjKind.PROG:
            out.append(
                Change(Action.REPLACE, address, obj.kind, obj.attrs, obj.attrs, obj.info, reason)
            )
    return out


ATTACHMENTS = (ObjKind.TC, ObjKind.CGROUP, ObjKind.XDP)


def _reattach(
    changes: list[Change], desired: DesiredState, observed: ObservedState
) -> list[Change]:
    """A program set built again under the same name (a map recreated, a
    pin gone) holds new programs: every attachment of that set is made
    again, or the old programs (and the maps they hold) stay attached,
    unpinned, and the next plan cannot tell them for ours."""
    rebuilt = {
        c.address.removeprefix("prog/"): c.address
        for c in changes
        if c.kind is ObjKind.PROG and c.action is not Action.DELETE
    }
    if not rebuilt:
        return changes
    touched = {c.address for c in changes}
    out = list(changes)
    for address, obj in desired.objects.items():
        if obj.kind not in ATTACHMENTS or address in touched or address not in observed.objects:
            continue
        prog = obj.attrs.get("prog")
        if prog in rebuilt:
            reason = f"re-attached: {rebuilt[prog]} is built again"
            out.append(
                Change(Action.UPDATE, address, obj.kind, obj.attrs, obj.attrs, obj.info, reason)
            )
    return out


def summarize(changes: tuple[Change, ...]) -> dict[str, int]:
    counts = {"add": 0, "change": 0, "destroy": 0}
    for c in changes:
        if c.action is Action.CREATE:
            counts["add"] += 1
        elif c.action is Action.UPDATE:
            counts["change"] += 1
        elif c.action is Action.DELETE:
            counts["destroy"] += 1
        else:
            counts["add"] += 1
            counts["destroy"] += 1
    return counts
