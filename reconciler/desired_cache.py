"""Compiled desired states on disk, one directory per code version.

A state is stored under the hash of its inputs, so an identical plan loads it
instead of validating and compiling; the newest state is also the base that
reconciler.nat_compile.update applies a services-only change to. At 10,000
services a state holds 110,000 NAT entries, so the format is built for
loading fast: the bulk (tables, table info, the NAT index's maps) as one
marshal blob of plain dicts, the rest (objects, warnings) pickled.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import json
import marshal
import os
import pickle
import shutil
import struct
from pathlib import Path
from typing import Any

from reconciler.state import DesiredState

SUFFIX = ".state"
_HEADER = struct.Struct("<4sQ")  # magic, length of the pickled part
_MAGIC = b"RCL1"
_INDEX_BULK = ("files", "owners", "feeders", "ids")


@functools.cache
def code_fingerprint() -> str:
    """Hash of the reconciler's code and schemas: what decides a desired state."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted([*here.glob("*.py"), *(here.parent / "schemas").glob("*.json")]):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def cache_path(cache_dir: Path | None, key: str) -> Path | None:
    # One directory per code version: states written by other code (older
    # fields, other semantics) are never loaded, not even as "the latest".
    if cache_dir is None:
        return None
    return cache_dir / "desired" / code_fingerprint() / f"{key}{SUFFIX}"


def encode(desired: DesiredState) -> bytes:
    index = desired.nat_index
    bulk: dict[str, Any] = {"tables": {k: dict(v) for k, v in desired.tables.items()}}
    bulk["table_info"] = {k: dict(v) for k, v in desired.table_info.items()}
    if index is not None:
        bulk["index"] = {name: dict(getattr(index, name)) for name in _INDEX_BULK}
        index = dataclasses.replace(index, **{name: {} for name in _INDEX_BULK})
    skeleton = dataclasses.replace(
        desired, tables={}, table_info={}, nat_index=index, table_base={}, kernel_digests={}
    )
    head = pickle.dumps(skeleton, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(_MAGIC, len(head)) + head + marshal.dumps(bulk)


def decode(data: bytes) -> DesiredState | None:
    """The state, or None for anything that is not one of ours."""
    if len(data) < _HEADER.size:
        return None
    magic, size = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        return None
    skeleton = pickle.loads(data[_HEADER.size : _HEADER.size + size])
    if not isinstance(skeleton, DesiredState):
        return None
    bulk = marshal.loads(data[_HEADER.size + size :])
    index = skeleton.nat_index
    if index is not None:
        index = dataclasses.replace(index, **bulk["index"])
    return dataclasses.replace(
        skeleton, tables=bulk["tables"], table_info=bulk["table_info"], nat_index=index
    )


# A long-running process (--watch) keeps the newest state per directory in
# memory and writes states to disk when it is idle, so a pass never waits for
# the ~100 ms a 10,000-service state takes to encode and write (a thread
# would not help: encoding holds the GIL).
_newest: dict[Path, tuple[Path, DesiredState]] = {}
_deferred: dict[Path, tuple[Path, DesiredState, int]] | None = None


def defer_writes() -> None:
    global _deferred
    if _deferred is None:
        _deferred = {}
        atexit.register(flush)


# The applied record, per directory: which state the kernel was converged
# to, and the digests of the kernel's NAT tables right after (RawTable.digest).
# A later observation with the same digests needs no table comparison at all.
APPLIED = "applied"
Applied = tuple[str, dict[str, str]]
_applied: dict[Path, Applied | None] = {}
_applied_pending: dict[Path, Applied] = {}


def flush() -> None:
    """Write what defer_writes() held back: the newest state per directory,
    then which state was applied (never a record naming an unwritten state)."""
    while _deferred:
        _, (path, desired, keep) = _deferred.popitem()
        _write(path, desired, keep)
    while _applied_pending:
        directory, record = _applied_pending.popitem()
        _write_applied(directory, record)


def _applied_record(directory: Path) -> Applied | None:
    if directory not in _applied:
        try:
            name, _, digests = (directory / APPLIED).read_text().partition("\n")
            loaded = json.loads(digests) if digests.strip() else {}
            _applied[directory] = (name.strip(), loaded) if name.strip() else None
        except (OSError, ValueError):
            _applied[directory] = None
    return _applied[directory]


def _as_loaded(path: Path, state: DesiredState) -> DesiredState:
    """The state, with the kernel digests recorded if it is the applied one."""
    record = _applied_record(path.parent)
    if record is not None and record[0] == path.name and record[1]:
        return dataclasses.replace(state, kernel_digests=record[1])
    return state


def load(path: Path) -> DesiredState | None:
    kept = _newest.get(path.parent)
    if kept is not None and kept[0] == path:
        return _as_loaded(path, kept[1])
    try:
        state = decode(path.read_bytes())
    except Exception:  # noqa: BLE001 - a cache must never make a plan fail
        return None
    if state is None:
        return None
    _newest[path.parent] = (path, state)
    return _as_loaded(path, state)


def latest(path: Path | None) -> DesiredState | None:
    """A stored state next to `path` to build on: the one last applied (the
    kernel holds its tables, so a diff against it is cheap), else the newest.
    Any stored state is a valid base for an incremental compile."""
    if path is None:
        return None
    record = _applied_record(path.parent)
    kept = _newest.get(path.parent)
    if kept is not None and (record is None or record[0] == kept[0].name):
        return _as_loaded(kept[0], kept[1])
    if record is not None and (path.parent / record[0]).exists():
        state = load(path.parent / record[0])
        if state is not None:
            return state
    if not path.parent.is_dir():
        return None
    stored = sorted(path.parent.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)
    return load(stored[-1]) if stored else None


def note_applied(desired: DesiredState, digests: dict[str, str] | None = None) -> None:
    """Remember that the kernel now holds `desired` (if this process stored
    it), and the digests its NAT tables had right after."""
    for directory, (path, state) in _newest.items():
        # the caller may hold a copy carrying kernel digests: same objects inside
        if state.objects is desired.objects:
            record = (path.name, dict(digests or {}))
            _applied[directory] = record
            if _deferred is None:
                _write_applied(directory, record)
            else:
                _applied_pending[directory] = record


def _write_applied(directory: Path, record: Applied) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f"{APPLIED}.{os.getpid()}.tmp"
        tmp.write_text(record[0] + "\n" + json.dumps(record[1], sort_keys=True) + "\n")
        tmp.replace(directory / APPLIED)
    except OSError:
        pass


def store(path: Path, desired: DesiredState, keep: int = 8) -> None:
    _newest[path.parent] = (path, desired)
    if _deferred is None:
        _write(path, desired, keep)
    else:
        _deferred[path.parent] = (path, desired, keep)


def _write(path: Path, desired: DesiredState, keep: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(encode(desired))
        tmp.replace(path)
        # keep the few most recent states (one per recent commit or edit), and
        # drop the directories of other code versions
        old = sorted(path.parent.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime)[:-keep]
        for stale in old:
            stale.unlink(missing_ok=True)
        for other in path.parent.parent.iterdir():
            if other == path.parent:
                continue
            if other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
            else:
                other.unlink(missing_ok=True)
    except OSError:
        pass
