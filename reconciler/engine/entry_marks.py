"""The policy program maps recognised rather than decoded.

1,000 policies over 200 endpoints are 24,000 entries in three maps; decoding
them into objects on every plan and again to verify an apply is most of a
one-change apply. So:
- an apply records a mark for each of these maps (with the NAT tables'
  marks, in the store's applied record): when its plan changed map entries
  only, the digest of the dump the plan read for a map it did not write,
  and for one it wrote that dump's digest without the written keys' records
  plus what each written key held when verify read it back (WrittenDump);
  after any other plan, the digest of each dump verify read, when it is
  provably the dump the plan read with exactly the plan's writes (a write
  by anyone else meanwhile: no mark);
- a plan reads the dumps and, where one matches its mark, takes the applied
  state's entries for that map instead of decoding it: the kernel holds
  exactly what it held when that state was verified there;
- verify reads back only the entries the plan wrote: the plan compared
  every other entry moments earlier, under the apply lock.
A dump that matches no mark (a hand edit, another writer, no record) is
decoded and compared in full: the answer is the same, only slower."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import policy_types as pl
from reconciler.engine.store import StateStore
from reconciler.kernel import bpf as bpfsys
from reconciler.plan.address import Address
from reconciler.plan.diff import Change, diff
from reconciler.plan.plan import Plan
from reconciler.plan.state import (
    AppliedDump,
    DesiredState,
    Link,
    Mark,
    Obj,
    ObjKind,
    ObservedState,
    RawTable,
    WrittenDump,
    recognised,
)

UNDECODED = (pl.MAP_EXACT, pl.MAP_LPM, pl.MAP_VERDICT)

Known = Callable[[str, RawTable], Mapping[str, Obj] | None]
# The bytes each key a plan wrote holds after the apply (None: absent), by map.
Values = dict[str, dict[bytes, bytes | None]]


def _prefixes(maps: Iterable[str]) -> dict[str, str]:
    return {f"{Address.of_map(name)}/": name for name in maps}


def by_map(objects: Mapping[str, Obj], maps: Collection[str]) -> dict[str, dict[str, Obj]]:
    """The entries of `maps` among `objects`, by map."""
    prefixes = _prefixes(maps)
    out: dict[str, dict[str, Obj]] = {name: {} for name in maps}
    for address, obj in objects.items():
        if obj.kind is not ObjKind.ENTRY:
            continue
        head = address[: address.find("/", 4) + 1]  # "map/<name>/"
        name = prefixes.get(head)
        if name is not None:
            out[name][address] = obj
    return out


def applied_entries(states: StateStore | None) -> Known:
    """known(map, dump) for reconciler.observe.kernel.with_entries: the
    entries of `map` in the state last applied, when the kernel's dump of
    it matches the mark recorded right after that apply; else None. They
    are the state's own objects (diff then compares most of them at once,
    reconciler.plan.diff)."""
    loaded = states.latest() if states is not None else None
    if loaded is None:
        return lambda name, table: None
    state, known = loaded
    grouped: dict[str, dict[str, Obj]] | None = None

    def lookup(name: str, table: RawTable) -> Mapping[str, Obj] | None:
        nonlocal grouped
        if name not in UNDECODED or not recognised(known.kernel_mark(name), table, {}):
            return None
        if grouped is None:
            grouped = by_map(state.objects, UNDECODED)
        return grouped[name]

    return lookup


def entries_only(plan: Plan) -> bool:
    """Does `plan` change map entries and nothing else (no map, program,
    filter or link)? Its verify then reads back only those (verify_entries)."""
    return all(c.kind is ObjKind.ENTRY for c in plan.changes)


def verify_entries(
    desired: DesiredState, plan: Plan, root: str, before: ObservedState
) -> tuple[tuple[Change, ...], dict[str, Mark]]:
    """Verify of a plan that changed map entries only (entries_only), read
    under the apply lock right after `before` was: the entries it wrote or
    removed, read back and diffed with `desired` (the bulk NAT tables
    aside: reconciler.engine.reconcile reads those), and the mark of each
    map `before` read raw: its digest when the plan wrote nothing there,
    else WrittenDump."""
    maps = {Address.parse(c.address).map for c in plan.changes} - set(entries.TABLE_MAPS)
    changes, values = read_back(desired, plan, root, before.links, maps)
    found: dict[str, Mark] = {}
    for name, table in before.raw.items():
        held = values.get(name)
        found[name] = WrittenDump.of(table, held) if held else table.digest
    return changes, found


def proven(
    before: ObservedState | None, after: ObservedState, changes: Iterable[Change]
) -> dict[str, str]:
    """The digests of the maps `after` read raw whose dump is provably
    `before`'s (what the plan read and compared, under the apply lock) with
    exactly the plan's writes (`changes`): every other entry holds the same
    bytes and each written key holds what the plan wrote. Only those are recorded; a
    map written to by anyone else meanwhile gets no mark, so the next plan
    decodes it and finds the difference."""
    if before is None:
        return {}
    wrote: dict[str, dict[bytes, bytes | None]] = {}
    for c in changes:
        if c.kind is ObjKind.ENTRY:
            parsed = Address.parse(c.address)
            if parsed.map in after.raw:
                key, value = entries.encode(parsed.map, parsed.key or "", c.after or c.before or {})
                wrote.setdefault(parsed.map, {})[key] = value if c.after is not None else None
    out = {}
    for name, now in after.raw.items():
        then = before.raw.get(name)
        if then is None:
            continue
        written = wrote.get(name, {})
        expected = {k: v for k, v in written.items() if v is not None}
        if AppliedDump.of(then, frozenset(written)).matches(now, expected):
            out[name] = now.digest
    return out


def without(desired: DesiredState, maps: Collection[str]) -> DesiredState:
    """`desired` without the entries of `maps` (and without bulk tables)."""
    prefixes = tuple(_prefixes(maps))
    objects = {a: o for a, o in desired.objects.items() if not a.startswith(prefixes)}
    return dataclasses.replace(desired, objects=objects, tables={})


def read_back(
    desired: DesiredState, plan: Plan, root: str, links: Iterable[Link], maps: Collection[str]
) -> tuple[tuple[Change, ...], Values]:
    """The entries of `maps` that `plan` wrote or removed, as the kernel holds
    them now, diffed with `desired`; and the bytes each of their keys holds."""
    written: dict[str, list[tuple[str, str, Mapping[str, object]]]] = {}
    for c in plan.changes:
        if c.kind is ObjKind.ENTRY:
            parsed = Address.parse(c.address)
            if parsed.map in maps:
                attrs = c.after if c.after is not None else c.before or {}
                written.setdefault(parsed.map, []).append((c.address, parsed.key or "", attrs))
    ctx = entries.Context({link.ifindex: link.name for link in links})
    want: dict[str, Obj] = {}
    have: dict[str, Obj] = {}
    values: Values = {}
    for name, rows in written.items():
        held = values[name] = {}
        fd = bpfsys.obj_get(str(Path(root) / "maps" / name))
        try:
            for address, key_text, attrs in rows:
                if address in desired.objects:
                    want[address] = desired.objects[address]
                key = entries.encode(name, key_text, attrs)[0]
                if key in held:
                    continue
                value = bpfsys.map_lookup(fd, key)
                if not isinstance(value, list):  # a per-CPU map's chunks: not recorded
                    held[key] = value
                if value is None:
                    continue
                for text, now in entries.decode_all(name, [(key, value)], ctx):
                    found = Address.entry_text(name, text)
                    have[found] = Obj(found, ObjKind.ENTRY, now)
                    if found in desired.objects:  # a slot handed on: the entry it holds now
                        want[found] = desired.objects[found]
        finally:
            bpfsys.close(fd)
    partial = dataclasses.replace(desired, objects=want, tables={})
    return diff(partial, ObservedState(have)), values
