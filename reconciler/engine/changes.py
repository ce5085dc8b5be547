"""Resource-level change summary: which Calico and Kubernetes resources a
new commit changes against the one last applied, field by field, as Argo
CD's diff view shows them (computed with deepdiff):

    GlobalNetworkPolicy/allow-web: spec.ingress[0].source.selector: "a" -> "b"
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reconciler.config.source import Source
from reconciler.config.validate import validate_source

_REPORTS = {
    "values_changed": "~",
    "type_changes": "~",
    "dictionary_item_added": "+",
    "dictionary_item_removed": "-",
    "iterable_item_added": "+",
    "iterable_item_removed": "-",
}


def field_path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def diff_bodies(ref: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per changed field of one resource."""
    from deepdiff import DeepDiff

    tree = DeepDiff(dict(old), dict(new), view="tree")
    lines = []
    for report, symbol in _REPORTS.items():
        for level in tree.get(report, []):
            where = field_path(level.path(output_format="list"))
            if symbol == "~":
                lines.append(f"{ref}: {where}: {_show(level.t1)} -> {_show(level.t2)}")
            elif symbol == "+":
                lines.append(f"{ref}: {where}: added {_show(level.t2)}")
            else:
                lines.append(f"{ref}: {where}: removed (was {_show(level.t1)})")
    return sorted(lines)


def resources(source: Source, cache_dir: Path | None) -> dict[str, Mapping[str, Any]] | None:
    """Every resource's body by Kind/[ns/]name, or None when the source is invalid."""
    result = validate_source(source, cache_dir)
    if not result.ok:
        return None
    return {r.ref: r.body for r in result.resources}


def resource_changes(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    lines = []
    for ref in sorted(set(old) | set(new)):
        if ref not in old:
            lines.append(f"+ {ref}")
        elif ref not in new:
            lines.append(f"- {ref}")
        elif old[ref] != new[ref]:
            lines += [f"~ {line}" for line in diff_bodies(ref, old[ref], new[ref])]
    return lines
