"""Compiled desired states on disk, one directory per code version.

A state is stored under the hash of its inputs, so an identical plan loads it
instead of validating and compiling; the newest state is also the base that
reconciler.compile.nat_tables.update applies a services-only change to. At 10,000
services a state holds 110,000 NAT entries, so the format is built for a
run that changes one service:
- the bulk (tables, table info, the NAT index's maps) is stored in sections
  that load when first used: a table as two sorted buffers searched in place
  (reconciler.plan.tables.SortedTable), a map as a marshal blob;
- a state an incremental compile derived from a stored full state is stored
  as a delta: the few entries its overlays changed, the map entries that are
  not the base's own objects and those it lacks, and the base's name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import io
import json
import marshal
import os
import pickle
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.assets import SCHEMA_DIR, code_signature, python_files
from reconciler.compile.policy_index import PolicyIndex
from reconciler.plan.state import (
    UNRECOGNISED,
    AppliedDump,
    DesiredState,
    Obj,
    ObjKind,
    Recognition,
    WrittenDump,
)
from reconciler.plan.tables import Lazy, Overlay, SortedTable

SUFFIX = ".state"
# magic, length of the manifest, the full state a delta builds on ("" if none)
_HEADER = struct.Struct("<4sQ40s")
_MAGIC = b"RCL2"
_INDEX_BULK = ("files", "owners", "feeders", "ids")
_POLICY_INDEX = "policy_index"
_ENTRIES = "entries"


@functools.cache
def _replace(path: Path, data: bytes, tmp: Path | None = None) -> None:
    """`path` replaced by `data` through a temporary file beside it (`tmp`,
    by default `<name>.<pid>.tmp`), which a failed write (a full disk)
    removes: a cache that cannot be written is no reason to fill the
    directory further."""
    tmp = tmp or path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def code_fingerprint() -> str:
    """Names the version of the reconciler's code and schemas: what decides a desired state."""
    package = Path(__file__).resolve().parents[1]
    return code_signature([*python_files(package), *SCHEMA_DIR.glob("*.json")])


def _bulk(desired: DesiredState) -> dict[str, Mapping[Any, Any]]:
    """The big mappings of a state, by section name."""
    out: dict[str, Mapping[Any, Any]] = {f"tables/{k}": v for k, v in desired.tables.items()}
    out["table_info"] = desired.table_info
    if desired.nat_index is not None:
        out.update({f"index/{n}": getattr(desired.nat_index, n) for n in _INDEX_BULK})
    if desired.policy_index is not None:
        out[_POLICY_INDEX] = desired.policy_index.as_plain()
    return out


def _skeleton(desired: DesiredState, entries: bool) -> DesiredState:
    """The state without its bulk (and without its map entries when they
    are stored in a section of their own: `entries`)."""
    index = desired.nat_index
    if index is not None:
        index = dataclasses.replace(index, **{name: {} for name in _INDEX_BULK})
    objects = desired.objects
    if entries:
        objects = {a: o for a, o in objects.items() if o.kind is not ObjKind.ENTRY}
    return dataclasses.replace(
        desired, objects=objects, tables={}, table_info={}, nat_index=index, policy_index=None
    )


def _entries_blob(desired: DesiredState) -> bytes | None:
    """The state's map entries (24,000 of them with 1,000 policies) as one
    marshal blob: loading it is a fraction of unpickling as many objects, and
    marshal builds plain values only. None when an entry holds something
    marshal cannot store (it then stays in the skeleton)."""
    rows = [
        (o.address, o.attrs, o.info) for o in desired.objects.values() if o.kind is ObjKind.ENTRY
    ]
    try:
        return marshal.dumps(rows)
    except ValueError:
        return None


# An entry Obj made by setting its slots: Obj's __init__ (a frozen
# dataclass's, one object.__setattr__ a field) costs twice as much, and a
# state loads 24,000 entries. The same fields, or this fails at import.
assert [f.name for f in dataclasses.fields(Obj)] == ["address", "kind", "attrs", "info"]
_new = object.__new__
_set_address, _set_kind, _set_attrs, _set_info = (
    vars(Obj)[name].__set__ for name in ("address", "kind", "attrs", "info")
)


def _entry(address: str, attrs: Mapping[str, Any], info: Mapping[str, Any]) -> Obj:
    obj: Obj = _new(Obj)
    _set_address(obj, address)
    _set_kind(obj, ObjKind.ENTRY)
    _set_attrs(obj, attrs)
    _set_info(obj, info)
    return obj


def _entries_of(blob: bytes) -> dict[str, Obj]:
    return {address: _entry(address, attrs, info) for address, attrs, info in marshal.loads(blob)}


def _entries_delta(desired: DesiredState, base: DesiredState) -> bytes | None:
    """The state's map entries as their changes from `base`'s: the entries
    that are not base's own objects (an incremental compile keeps those of
    every program it did not rebuild) and the addresses of base's objects it
    lacks. None when that is not much less than all of them, or when marshal
    cannot store them."""
    old, objects, entry = base.objects, desired.objects, ObjKind.ENTRY
    rows = [
        (a, o.attrs, o.info) for a, o in objects.items() if o.kind is entry and old.get(a) is not o
    ]
    if len(rows) * 4 > len(objects):
        return None
    try:
        return marshal.dumps((rows, list(old.keys() - objects.keys())))
    except ValueError:
        return None


def _entries_after(blob: bytes, base: DesiredState) -> dict[str, Obj]:
    """The objects of a state stored by _entries_delta on `base`, but for
    those the state's skeleton holds (which go over them)."""
    rows, removed = marshal.loads(blob)
    out = dict(base.objects)
    for address in removed:
        out.pop(address, None)
    out.update((a, _entry(a, attrs, info)) for a, attrs, info in rows)
    return out


def encode(desired: DesiredState, base: tuple[str, DesiredState] | None = None) -> bytes:
    """The state as bytes. With `base` (a stored full state's file name and
    the state), a mapping that is an overlay of the base's is stored as its
    changes alone: one changed service costs bytes, not 6 MB."""
    base_bulk = _bulk(base[1]) if base is not None else {}
    sections: dict[str, tuple[str, int, int, Any]] = {}
    blobs: list[bytes] = []
    offset = 0
    delta = False
    for name, mapping in _bulk(desired).items():
        if isinstance(mapping, Overlay) and mapping.base is base_bulk.get(name):
            kind, extra, parts = "delta", None, [marshal.dumps(mapping.changes())]
            delta = True
        elif name.startswith("tables/"):
            keys, values, key_size, value_size = SortedTable.of(mapping)
            kind, extra, parts = "sorted", (key_size, value_size, len(keys)), [keys, values]
        else:
            as_dict = mapping if isinstance(mapping, dict) else dict(mapping.items())
            kind, extra, parts = "marshal", None, [marshal.dumps(as_dict)]
        size = sum(len(p) for p in parts)
        sections[name] = (kind, offset, size, extra)
        blobs += parts
        offset += size
    rows = _entries_delta(desired, base[1]) if base is not None else None
    if rows is not None:
        sections[_ENTRIES] = ("entries-delta", offset, len(rows), None)
        delta = True
    else:
        rows = _entries_blob(desired)
        if rows is not None:
            sections[_ENTRIES] = ("entries", offset, len(rows), None)
    if rows is not None:
        blobs.append(rows)
    skeleton = _skeleton(desired, rows is not None)
    manifest = pickle.dumps((skeleton, sections), protocol=pickle.HIGHEST_PROTOCOL)
    base_name = base[0].encode() if base is not None and delta else b""
    return _HEADER.pack(_MAGIC, len(manifest), base_name) + manifest + b"".join(blobs)


_SAFE_BUILTINS = frozenset({"frozenset", "set", "tuple", "list", "dict", "bytes", "int", "str"})

# A DesiredState's fields in the order a pickle lists them, now and in the
# layout states were stored in while recognition hints were fields of the
# state (stored always empty; reconciler.plan.state.Recognition now).
_LAYOUT = tuple(f.name for f in dataclasses.fields(DesiredState))
_LAYOUT_BEFORE_AGENT = tuple(n for n in _LAYOUT if n != "agent")
_LAYOUT_BEFORE_HEALTH = tuple(n for n in _LAYOUT_BEFORE_AGENT if n != "health_checks")
_LAYOUT_WITH_HINTS = (
    "node", "enabled", "objects", "warnings", "build", "errors", "tables", "table_info",
    "nat_index", "table_base", "kernel_digests", "kernel_dumps", "not_enforced",
)  # fmt: skip


class _StoredState:
    """Takes a DesiredState's place while a skeleton loads, so that a state
    stored in either layout loads (see as_state); pickle gives it the field
    values as a list (a slotted dataclass's state) or by name."""

    __slots__ = ("values",)

    def __setstate__(self, values: Any) -> None:
        self.values = values

    def as_state(self) -> DesiredState | None:
        values = self.values
        if isinstance(values, tuple) and len(values) == 2 and isinstance(values[1], dict):
            named = values[1]  # (None, {slot: value})
        elif isinstance(values, list):
            layouts = (_LAYOUT, _LAYOUT_BEFORE_AGENT, _LAYOUT_BEFORE_HEALTH, _LAYOUT_WITH_HINTS)
            # Two layouts may have as many fields: the hints layout holds a
            # mapping (table_base) where the others hold not_enforced, a tuple.
            hinted = _LAYOUT_WITH_HINTS.index("table_base")
            matching = [
                layout for layout in layouts if len(layout) == len(values)
                and (layout is _LAYOUT_WITH_HINTS) == isinstance(values[hinted], Mapping)
            ]  # fmt: skip
            if not matching:
                return None
            named = dict(zip(matching[0], values, strict=True))
        else:
            return None
        named.setdefault("policy_index", None)  # stored before states carried one
        named.setdefault("health_checks", {})  # nor health checks
        named.setdefault("agent", None)  # nor the agent's settings
        if not set(_LAYOUT) <= named.keys():
            return None
        return DesiredState(**{name: named[name] for name in _LAYOUT})


def _enum_member(cls: Any, name: str) -> Any:
    """getattr, as a pickle may ask for it, limited to a member of one of our enums."""
    if (
        isinstance(cls, type)
        and issubclass(cls, enum.Enum)
        and cls.__module__.startswith("reconciler.")
        and isinstance(name, str)
        and name in cls.__members__
    ):
        return cls.__members__[name]
    raise pickle.UnpicklingError(f"getattr({cls!r}, {name!r}) may not run while loading a state")


class _Unpickler(pickle.Unpickler):
    """Loads a state's skeleton and nothing else: only our own dataclasses and
    enums and plain containers may be named, so a crafted file cannot make
    loading it call anything (pickle's usual way to run code)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (DesiredState.__module__, DesiredState.__name__):
            return _StoredState
        if module == "builtins" and name in _SAFE_BUILTINS:
            return super().find_class(module, name)
        if (module, name) == ("builtins", "getattr"):
            # Some Python versions pickle an enum member as getattr(EnumClass, name):
            # allowed for our enums' members and nothing else.
            return _enum_member
        if module.startswith("reconciler.") and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and (
                dataclasses.is_dataclass(found) or issubclass(found, enum.Enum)
            ):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} may not be loaded from a stored state")


def base_of(data: bytes) -> str | None:
    """The file a stored delta builds on, from its header alone."""
    if len(data) < _HEADER.size or data[:4] != _MAGIC:
        return None
    return _HEADER.unpack_from(data)[2].rstrip(b"\0").decode() or None


def decode(
    data: bytes, base: DesiredState | None = None, as_base: bool = False
) -> DesiredState | None:
    """The state, or None for anything that is not one of ours (or a delta
    whose base is not given). Mappings are loaded when first used. `as_base`:
    the state is read only as a delta's base, so its policy index (each
    state carries its own) is left unread."""
    if len(data) < _HEADER.size:
        return None
    magic, size, base_name = _HEADER.unpack_from(data)
    if magic != _MAGIC or (base_name.strip(b"\0") and base is None):
        return None
    stored, sections = _Unpickler(io.BytesIO(data[_HEADER.size : _HEADER.size + size])).load()
    skeleton = stored.as_state() if isinstance(stored, _StoredState) else None
    if skeleton is None:
        return None
    blob = data[_HEADER.size + size :]
    base_bulk = _bulk(base) if base is not None else {}
    bulk: dict[str, Mapping[Any, Any]] = {}
    objects = skeleton.objects
    for name, (kind, offset, length, extra) in sections.items():
        part = blob[offset : offset + length]
        if kind == "entries":
            objects = {**objects, **_entries_of(part)}
        elif kind == "entries-delta" and base is not None:
            objects = {**_entries_after(part, base), **objects}
        elif kind == "sorted":
            key_size, value_size, keys_len = extra
            bulk[name] = SortedTable(part[:keys_len], part[keys_len:], key_size, value_size)
        elif kind == "marshal":
            bulk[name] = Lazy.marshalled(part)
        elif kind == "delta" and name in base_bulk:
            changes, removed = marshal.loads(part)
            bulk[name] = Overlay.restored(base_bulk[name], changes, removed)
        else:
            return None
    index = skeleton.nat_index
    if index is not None:
        index = dataclasses.replace(index, **{n: bulk.pop(f"index/{n}") for n in _INDEX_BULK})
    info = bulk.pop("table_info")
    stored_index = bulk.pop(_POLICY_INDEX, None)
    policy_index = None
    if stored_index is not None and not as_base and len(stored_index):
        policy_index = PolicyIndex.from_plain(dict(stored_index))
    tables = {name.split("/", 1)[1]: table for name, table in bulk.items()}
    return dataclasses.replace(
        skeleton, objects=objects, tables=tables, table_info=info, nat_index=index,
        policy_index=policy_index,
    )  # fmt: skip


# The applied record of a directory: which state the kernel was converged to,
# and the digests of the kernel's NAT tables right after (RawTable.digest).
# A later observation with the same digests needs no table comparison at all.
APPLIED = "applied"
# With it, in a file of its own (TABLES), the dumps the apply wrote over
# (AppliedDump, WrittenDump): verify then need not read the tables back at all.
TABLES = "applied.tables"
Applied = tuple[str, dict[str, str], Mapping[str, AppliedDump | WrittenDump]]
# A state as the store hands it out: the state, and beside it what recognises
# its tables in the kernel (the applied record's marks when it is the applied
# one; what it was stored with by this process).
Loaded = tuple[DesiredState, Recognition]


def _fields_of(dump: AppliedDump | WrittenDump) -> tuple[Any, ...]:
    """A recorded dump as plain values for marshal (_dump_of reads them)."""
    if isinstance(dump, WrittenDump):
        return ("written", dump.rest, dump.key_size, dump.value_size, dict(dump.written))
    return (dump.keys, dump.values, dump.key_size, dump.value_size, sorted(dump.written))


def _dump_of(fields: tuple[Any, ...]) -> AppliedDump | WrittenDump:
    if fields[0] == "written":
        _, rest, ks, vs, written = fields
        return WrittenDump(rest, ks, vs, written)
    keys, values, ks, vs, written = fields
    return AppliedDump(keys, values, ks, vs, frozenset(written))


class StateStore:
    """The states stored in one directory (one code version's, under a cache
    directory) and what the process that owns this object knows of them.

    It keeps the newest state in memory (with the Recognition it was stored
    with), and the full state the next one is
    written as a delta against. With `defer_writes` (--watch) it holds back
    writing until flush(), which the watcher calls when it is idle: a pass
    never waits for a 10,000-service state to be encoded and written (a
    thread would not help: encoding holds the GIL)."""

    def __init__(self, directory: Path, defer_writes: bool = False) -> None:
        self.directory = directory
        self.defer_writes = defer_writes
        self._newest: tuple[Path, DesiredState, Recognition] | None = None
        # the full (not delta) state last read or written here
        self._base: tuple[Path, DesiredState] | None = None
        self._applied: Applied | None = None
        self._applied_read = False
        self._pending: tuple[Path, DesiredState, int] | None = None
        self._pending_applied: Applied | None = None

    @classmethod
    def under(cls, cache_dir: Path, defer_writes: bool = False) -> StateStore:
        # One directory per code version: states written by other code (other
        # fields, other semantics) are never loaded, not even as "the latest".
        return cls(cache_dir / "desired" / code_fingerprint(), defer_writes)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def flush(self) -> None:
        """Write what deferred writing held back: the newest state, then which
        state was applied (never a record naming an unwritten state)."""
        if self._pending is not None:
            path, desired, keep = self._pending
            self._pending = None
            self._write(path, desired, keep)
        if self._pending_applied is not None:
            record, self._pending_applied = self._pending_applied, None
            self._write_applied(record)

    def _applied_record(self) -> Applied | None:
        if not self._applied_read:
            self._applied_read = True
            try:
                text = (self.directory / APPLIED).read_text()
                name, _, digests = text.partition("\n")
                loaded = json.loads(digests) if digests.strip() else {}
                state = name.strip()
                dumps = Lazy(lambda: self._read_dumps(state))
                self._applied = (state, loaded, dumps) if state else None
            except (OSError, ValueError):
                self._applied = None
        return self._applied

    def _read_dumps(self, state: str) -> dict[str, AppliedDump | WrittenDump]:
        """The dumps recorded with the apply of `state`, if they belong to it."""
        try:
            recorded, tables = marshal.loads((self.directory / TABLES).read_bytes())
            if recorded != state:
                return {}
            return {name: _dump_of(fields) for name, fields in tables.items()}
        except (OSError, EOFError, ValueError, TypeError):
            return {}

    def _as_loaded(self, path: Path, state: DesiredState, known: Recognition) -> Loaded:
        """The state, with the kernel's marks recorded if it is the applied one."""
        record = self._applied_record()
        if record is not None and record[0] == path.name:
            known = dataclasses.replace(known, kernel_digests=record[1], kernel_dumps=record[2])
        return state, known

    def load(self, key: str) -> Loaded | None:
        """The state stored under `key`, or None (not stored, or unreadable)."""
        return self._load(self.path(key))

    def _load(self, path: Path) -> Loaded | None:
        kept = self._newest
        if kept is not None and kept[0] == path:
            return self._as_loaded(path, kept[1], kept[2])
        state = self._read(path)
        if state is None:
            return None
        self._newest = (path, state, UNRECOGNISED)
        return self._as_loaded(path, state, UNRECOGNISED)

    def _read(self, path: Path) -> DesiredState | None:
        """A stored state, full or a delta on top of its (full) base."""
        try:
            data = path.read_bytes()
            base_name = base_of(data)
            base = None
            if base_name is not None:
                full = self._base
                if full is not None and full[0].name == base_name:
                    base = full[1]
                else:
                    base_data = (path.parent / base_name).read_bytes()
                    if base_of(base_data) is not None:
                        return None  # bases are full states, never deltas
                    base = decode(base_data, as_base=True)
                    if base is None:
                        return None
                    self._base = (path.parent / base_name, base)
            state = decode(data, base)
        except Exception:  # noqa: BLE001 - a cache must never make a plan fail
            return None
        if state is not None and base_name is None:
            self._base = (path, state)
        return state

    def latest(self) -> Loaded | None:
        """A stored state to build on: the one last applied (the kernel holds
        its tables, so a diff against it is cheap), else the newest. Any
        stored state is a valid base for an incremental compile."""
        record = self._applied_record()
        kept = self._newest
        if kept is not None and (record is None or record[0] == kept[0].name):
            return self._as_loaded(*kept)
        if record is not None and (self.directory / record[0]).exists():
            state = self._load(self.directory / record[0])
            if state is not None:
                return state
        if not self.directory.is_dir():
            return None
        stored = sorted(self.directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        return self._load(stored[-1]) if stored else None

    def applied(self) -> DesiredState | None:
        """The state this node last applied, while it is stored; else None."""
        record = self._applied_record()
        if record is None:
            return None
        kept = self._newest
        if kept is not None and kept[0].name == record[0]:
            return kept[1]
        path = self.directory / record[0]
        loaded = self._load(path) if path.exists() else None
        return loaded[0] if loaded is not None else None

    def note_applied(
        self,
        desired: DesiredState,
        digests: dict[str, str] | None = None,
        dumps: Mapping[str, AppliedDump | WrittenDump] | None = None,
    ) -> None:
        """Remember that the kernel now holds `desired` (if this store holds
        it), and how to recognise its NAT tables: the digests they had right
        after, or the dumps the apply wrote over."""
        kept = self._newest
        # The caller's state is the stored one, or one made of it for this
        # kernel: slots kept where the interfaces hold them, hooks left out
        # where a foreign object blocks them. Those replace only the objects;
        # the tables stay the stored state's own.
        if kept is None or (
            kept[1].objects is not desired.objects and kept[1].tables is not desired.tables
        ):
            return
        record = (kept[0].name, dict(digests or {}), dict(dumps or {}))
        self._applied, self._applied_read = record, True
        if self.defer_writes:
            self._pending_applied = record
        else:
            self._write_applied(record)

    def _write_applied(self, record: Applied) -> None:
        """The dumps first, then the record naming the state (a dump names its
        state too, so a record and dumps of different applies never pair up)."""
        name, digests, dumps = record
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tables = {t: _fields_of(d) for t, d in dumps.items()}
            _replace(self.directory / TABLES, marshal.dumps((name, tables)))
            text = name + "\n" + json.dumps(digests, sort_keys=True) + "\n"
            _replace(self.directory / APPLIED, text.encode())
        except OSError:
            pass

    def store(
        self, key: str, desired: DesiredState, known: Recognition = UNRECOGNISED, keep: int = 8
    ) -> None:
        """Store `desired` under `key`; `known` is kept with it in memory only."""
        path = self.path(key)
        self._newest = (path, desired, known)
        if self.defer_writes:
            self._pending = (path, desired, keep)
        else:
            self._write(path, desired, keep)

    def _write(self, path: Path, desired: DesiredState, keep: int) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            full = self._base
            base = (full[0].name, full[1]) if full is not None and full[0].exists() else None
            data = encode(desired, base)
            _replace(path, data, path.with_suffix(f".{os.getpid()}.tmp"))
            if base_of(data) is None:
                self._base = (path, desired)
            self._prune(path, keep)
        except OSError:
            pass

    def _prune(self, path: Path, keep: int) -> None:
        """Keep the few most recent states (one per recent commit or edit) and
        the full states they build on; drop the directories of other code versions."""
        stored = sorted(path.parent.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
        kept = stored[-keep:]
        needed = {p.name for p in kept}
        for state in kept:
            with open(state, "rb") as fh:
                base = base_of(fh.read(_HEADER.size))
            if base is not None:
                needed.add(base)
        if self._base is not None:
            needed.add(self._base[0].name)
        # the state the kernel holds: what names its removals and recognises
        # its tables, however many plans of other configurations came after
        applied = self._applied_record()
        if applied is not None:
            needed.add(applied[0])
            with contextlib.suppress(OSError), open(path.parent / applied[0], "rb") as fh:
                if (base := base_of(fh.read(_HEADER.size))) is not None:
                    needed.add(base)
        for stale in stored:
            if stale.name not in needed:
                stale.unlink(missing_ok=True)
        for other in path.parent.parent.iterdir():
            if other == path.parent:
                continue
            if other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
            else:
                other.unlink(missing_ok=True)
