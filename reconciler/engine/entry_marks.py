"""The policy program maps recognised rather than decoded.

1,000 policies over 200 endpoints are 24,000 entries in three maps; decoding
them into objects on every plan and again to verify an apply is most of a
one-change apply. So:
- an apply records the digest of each of these maps' dumps right after it
  verified them (with the NAT tables' digests, in the store's applied
  record), when the dump is provably the one the plan read with exactly
  the plan's writes (a write by anyone else meanwhile: no mark);
- a plan reads the dumps and, where one has the recorded digest, takes the
  applied state's entries for that map instead of decoding it: the kernel
  holds exactly what it held when that state was verified there;
- verify reads back only the entries the plan wrote: the plan compared
  every other entry moments earlier, under the apply lock.
A dump with any other digest (a hand edit, another writer, no record) is
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
from reconciler.plan.state import AppliedDump, DesiredState, Link, Obj, ObjKind, ObservedState

UNDECODED = (pl.MAP_EXACT, pl.MAP_LPM, pl.MAP_VERDICT)

Known = Callable[[str, str], Mapping[str, Obj] | None]


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
    """known(map, digest) for reconciler.observe.kernel.with_entries: the
    entries of `map` in the state last applied, when the kernel's dump of
    it has the digest recorded right after that apply; else None."""
    loaded = states.latest() if states is not None else None
    if loaded is None:
        return lambda name, digest: None
    state, known = loaded
    grouped: dict[str, dict[str, Obj]] | None = None

    def lookup(name: str, digest: str) -> Mapping[str, Obj] | None:
        nonlocal grouped
        if name not in UNDECODED or known.kernel_digests.get(name) != digest:
            return None
        if grouped is None:
            grouped = by_map(state.objects, UNDECODED)
        # as observe makes them: what a plan shows of an entry it removes
        return {a: Obj(a, o.kind, o.attrs) for a, o in grouped[name].items()}

    return lookup


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
) -> tuple[Change, ...]:
    """The entries of `maps` that `plan` wrote or removed, as the kernel holds
    them now, diffed with `desired`."""
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
    for name, rows in written.items():
        fd = bpfsys.obj_get(str(Path(root) / "maps" / name))
        try:
            for address, key_text, attrs in rows:
                if address in desired.objects:
                    want[address] = desired.objects[address]
                key = entries.encode(name, key_text, attrs)[0]
                value = bpfsys.map_lookup(fd, key)
                if not isinstance(value, bytes):
                    continue
                for text, now in entries.decode_all(name, [(key, value)], ctx):
                    found = Address.entry_text(name, text)
                    have[found] = Obj(found, ObjKind.ENTRY, now)
        finally:
            bpfsys.close(fd)
    partial = dataclasses.replace(desired, objects=want, tables={})
    return diff(partial, ObservedState(have))
