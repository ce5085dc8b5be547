"""A node's observed state as a file: `reconcile --snapshot > node.json` on
the node, `reconcile --plan --observed node.json` anywhere (CI), with no
root and no kernel access. Plain values in, plain values out: everything a
plan reads from the kernel (links, our objects, foreign filters, the bulk
NAT tables) and the host facts compile needs (the cgroup's id, CONFIG_HZ).

Values round-trip exactly (a tuple stays a tuple, bytes stay bytes), so the
plan made from a snapshot equals the one made from the kernel it was taken
from."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import nat_types as nat
from reconciler.plan.notes import NO_NOTES, RemovalNotes
from reconciler.plan.state import Link, Obj, ObjKind, ObservedState, RawTable

SNAPSHOT_VERSION = 1


class SnapshotError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Snapshot:
    node: str
    bpffs_root: str
    taken_at: str
    observed: ObservedState
    links: tuple[Link, ...]
    host: Mapping[str, Any]  # Host.facts() (reconciler.compile.host)
    # what names the entries it holds, from the node's applied record
    notes: RemovalNotes = NO_NOTES


def _enc(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return {"$tuple": [_enc(v) for v in value]}
    if isinstance(value, list):
        return [_enc(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _enc(v) for k, v in value.items()}
    return value


def _dec(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return base64.b64decode(value["$bytes"])
        if set(value) == {"$tuple"}:
            return tuple(_dec(v) for v in value["$tuple"])
        return {k: _dec(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dec(v) for v in value]
    return value


def _raw(table: Mapping[bytes, bytes]) -> tuple[bytes, bytes, int, int]:
    """A table's two buffers: as the kernel ordered them when it was read
    from the kernel (what the applied-table proof compares), else sorted."""
    if isinstance(table, RawTable):
        return table._keys, table._values, table._ks, table._vs
    keys = sorted(table)
    if not keys:
        return b"", b"", 0, 0
    values = [table[k] for k in keys]
    return b"".join(keys), b"".join(values), len(keys[0]), len(values[0])


def dump(snapshot: Snapshot) -> dict[str, Any]:
    tables = {}
    for name in sorted(snapshot.observed.tables):
        keys, values, ks, vs = _raw(snapshot.observed.tables[name])
        tables[name] = {
            "key_size": ks,
            "value_size": vs,
            "keys": base64.b64encode(keys).decode(),
            "values": base64.b64encode(values).decode(),
        }
    from reconciler.version import version

    return {
        "kind": "reconcile.snapshot",
        "format_version": SNAPSHOT_VERSION,
        "version": version(),
        "node": snapshot.node,
        "bpffs_root": snapshot.bpffs_root,
        "taken_at": snapshot.taken_at,
        "host": _enc(dict(snapshot.host)),
        "links": [
            {"name": link.name, "ifindex": link.ifindex, "addresses": list(link.addresses)}
            for link in snapshot.links
        ],
        "objects": [
            {
                "address": o.address,
                "kind": o.kind.value,
                "attrs": _enc(o.attrs),
                "info": _enc(o.info),
            }
            for o in sorted(snapshot.observed.objects.values(), key=lambda o: o.address)
        ],
        "foreign": list(snapshot.observed.foreign),
        "tables": tables,
        "notes": {
            "entries": {a: _enc(o.info) for a, o in sorted(snapshot.notes.objects.items())},
            "services": {str(i): _enc(info) for i, info in sorted(snapshot.notes.services.items())},
        },
    }


def _notes(data: Any, objects: Mapping[str, Obj]) -> RemovalNotes:
    """The notes of a snapshot's entries (none in a snapshot without them)."""
    if data is None:
        return NO_NOTES
    data = _mapping(data, "notes")
    named = _mapping(data.get("entries", {}), "notes.entries")
    services = _mapping(data.get("services", {}), "notes.services")
    return RemovalNotes(
        {a: Obj(a, ObjKind.ENTRY, objects[a].attrs, _mapping(_dec(info), "a note"))
         for a, info in named.items() if a in objects},
        {int(i): _mapping(_dec(info), "a note") for i, info in services.items()},
    )  # fmt: skip


def load(data: Mapping[str, Any], where: str = "snapshot") -> Snapshot:
    """A Snapshot from dump()'s output; SnapshotError names what is wrong."""
    if not isinstance(data, Mapping) or data.get("format_version") != SNAPSHOT_VERSION:
        found = data.get("format_version") if isinstance(data, Mapping) else type(data).__name__
        raise SnapshotError(
            f"{where}: not a snapshot of format {SNAPSHOT_VERSION} (found {found!r}); "
            "make one with reconcile --snapshot"
        )
    try:
        objects = {
            o["address"]: Obj(o["address"], ObjKind(o["kind"]), _dec(o["attrs"]), _dec(o["info"]))
            for o in data["objects"]
        }
        tables: dict[str, Mapping[bytes, bytes]] = {}
        for name, t in _mapping(data["tables"], "tables").items():
            tables[name] = _table(name, t)
        links = tuple(
            Link(link["name"], int(link["ifindex"]), tuple(link["addresses"]))
            for link in data["links"]
        )
        return Snapshot(
            str(data["node"]),
            str(data["bpffs_root"]),
            str(data.get("taken_at", "")),
            ObservedState(objects, tuple(data["foreign"]), tables),
            links,
            _mapping(_dec(data["host"]), "host"),
            _notes(data.get("notes"), objects),
        )
    except KeyError as exc:
        raise SnapshotError(f"{where}: malformed snapshot: no field {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: malformed snapshot: {type(exc).__name__}: {exc}") from exc


def _mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{field} is a {type(value).__name__}, not an object")
    return value


def _table(name: str, t: Mapping[str, Any]) -> RawTable:
    """A table's buffers, refused (ValueError) unless they hold whole entries."""
    keys = base64.b64decode(t["keys"], validate=True)
    values = base64.b64decode(t["values"], validate=True)
    ks, vs = int(t["key_size"]), int(t["value_size"])
    whole = ks > 0 and vs > 0 and len(keys) % ks == 0 and len(values) == len(keys) // ks * vs
    if (keys or values) and not whole:  # empty buffers: an empty table, whatever the sizes
        raise ValueError(f"table {name}: its buffers do not hold whole {ks}/{vs}-byte entries")
    layout = _LAYOUTS.get(name)
    if keys and layout is not None and (ks, vs) != layout:
        raise ValueError(
            f"table {name}: {ks}/{vs}-byte entries, not this version's {layout[0]}/{layout[1]} "
            "(a snapshot of another version?)"
        )
    return RawTable(keys, values, ks, vs)


# The entry sizes of the tables a snapshot carries raw (entries.TABLE_MAPS),
# as this version's datapath lays them out (each C struct's layout, by its
# name): entries of other sizes would not decode.
_LAYOUTS = {
    name: (nat.CODECS[f"{name}_key"].size, nat.CODECS[f"{name}_val"].size)
    for name in entries.TABLE_MAPS
}


# A snapshot of a node at the scale the README names (10,000 services, their
# policy) is tens of MiB; a file far bigger is not one, and parsing it would
# take memory several times its size.
MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024


def read(path: str) -> Snapshot:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SNAPSHOT_BYTES + 1)
            if len(raw) > MAX_SNAPSHOT_BYTES:
                raise SnapshotError(
                    f"{path}: more than {MAX_SNAPSHOT_BYTES // (1024 * 1024)} MiB: not a "
                    "snapshot reconcile --snapshot wrote"
                )
            data = json.loads(raw)
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise SnapshotError(f"{path}: not JSON: {exc}") from exc
    return load(data, path)
