"""The plan: an immutable, serialisable value that apply consumes."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.files import replace_atomically
from reconciler.plan.diff import Change, summarize

FORMAT_VERSION = 1
DOCUMENT_KIND = "reconcile.plan"  # each JSON document type has its own kind and version (docs/)


class PlanFileError(Exception):
    pass


def save_problem(path: str) -> str | None:
    """Why a plan could not be saved at `path`, asked before planning (a
    plan takes long to make and must not be lost at the end); None if
    nothing stands in the way that can be seen beforehand."""
    if not path:
        return "an empty file name"
    if os.path.isdir(path):
        return "is a directory"
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        return f"{parent} is not a directory" if os.path.exists(parent) else f"no {parent}"
    if not os.access(parent, os.W_OK):
        return f"cannot write in {parent}"
    # opened as the save will open it (what permissions alone do not tell:
    # /proc, a read-only mount), and left as it was found
    existed = os.path.lexists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc})"
    if not existed:
        os.unlink(path)
    return None


# A saved plan that adds 10,000 services' entries is tens of MiB; a file far
# bigger is not one, and parsing it would take memory several times its size.
MAX_PLAN_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Plan:
    node: str
    source: Mapping[str, Any]  # identity, description, and how to re-read it
    bpffs_root: str
    observed_fingerprint: str
    changes: tuple[Change, ...]
    build: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    foreign: tuple[str, ...] = ()
    # validated but not acted on by this node (DesiredState.not_enforced)
    not_enforced: tuple[str, ...] = ()
    # the reconcile version that made the plan
    version: str = ""

    @property
    def empty(self) -> bool:
        return not self.changes

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": DOCUMENT_KIND,
            "format_version": FORMAT_VERSION,
            "node": self.node,
            "source": dict(self.source),
            "bpffs_root": self.bpffs_root,
            "observed_fingerprint": self.observed_fingerprint,
            "build": dict(self.build),
            "summary": summarize(self.changes),
            "changes": [c.as_json() for c in self.changes],
            "warnings": list(self.warnings),
            "foreign": list(self.foreign),
            "not_enforced": list(self.not_enforced),
            "version": self.version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        if not isinstance(data, Mapping):
            raise PlanFileError(f"not a plan file: a JSON {type(data).__name__}, not an object")
        if data.get("format_version") != FORMAT_VERSION:
            raise PlanFileError(
                f"plan format_version {data.get('format_version')!r} is not {FORMAT_VERSION}"
            )
        if "source" in data and not isinstance(data["source"], Mapping):
            raise PlanFileError("not a plan file: its source is not an object")
        try:
            return cls(
                data["node"],
                data["source"],
                data["bpffs_root"],
                data["observed_fingerprint"],
                tuple(Change.from_json(c) for c in data["changes"]),
                data.get("build", {}),
                tuple(data.get("warnings", ())),
                tuple(data.get("foreign", ())),
                tuple(data.get("not_enforced", ())),
                str(data.get("version", "")),
            )
        except KeyError as exc:
            raise PlanFileError(f"not a plan file: it has no {exc} field") from exc
        except (TypeError, ValueError) as exc:
            raise PlanFileError(f"not a plan file: {exc}") from exc

    def dump(self, path: str) -> None:
        """Write the plan to `path` whole or not at all: into a temporary
        file beside it, then renamed over it. PlanFileError if it cannot be."""
        text = json.dumps(self.as_json(), indent=2, sort_keys=True) + "\n"
        try:
            replace_atomically(Path(path), text)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise PlanFileError(f"{path}: the plan could not be saved: {reason}") from exc

    @classmethod
    def read(cls, path: str) -> Plan:
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_PLAN_BYTES + 1)
            if len(raw) > MAX_PLAN_BYTES:
                raise PlanFileError(
                    f"more than {MAX_PLAN_BYTES // (1024 * 1024)} MiB: not a plan --out wrote"
                )
            return cls.from_json(json.loads(raw))
        except (OSError, ValueError, PlanFileError) as exc:  # ValueError: not JSON, not UTF-8
            raise PlanFileError(f"{path}: {exc}") from exc
