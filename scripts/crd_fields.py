"""Write the API field list (tests/data/calico_api_fields.json) from Calico's CRDs.

    python scripts/crd_fields.py CALICO_CHECKOUT/api/config/crd [OUT.json]

Each kind's `spec` becomes one dotted path per field with its OpenAPI type:
`[]` names an array's items, `{}` a map's values, and `int-or-string` a field
that takes both. tests/unit/test_api_fields.py checks every schema under
schemas/ against that list, so a field Calico has and we lack fails a test.
The list is committed: CI has no network and no Calico checkout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

# Kinds whose schemas live under schemas/ and follow a Calico CRD.
KINDS = (
    "FelixConfiguration",
    "IPPool",
    "Tier",
    "HostEndpoint",
    "NetworkSet",
    "GlobalNetworkSet",
    "GlobalNetworkPolicy",
    "NetworkPolicy",
    "Profile",
)


def type_of(node: Mapping[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    return str(node.get("type", "object"))


def fields(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    """(path, type) of every field below `node`, depth first."""
    for name, child in (node.get("properties") or {}).items():
        child_path = f"{path}.{name}"
        yield child_path, type_of(child)
        yield from _below(child, child_path)


def _below(node: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    items = node.get("items")
    if isinstance(items, Mapping):
        yield f"{path}[]", type_of(items)
        yield from _below(items, f"{path}[]")
    values = node.get("additionalProperties")
    if isinstance(values, Mapping):
        yield f"{path}{{}}", type_of(values)
    yield from fields(node, path)


def crd_fields(crd: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    kind = crd["spec"]["names"]["kind"]
    (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
    spec = version["schema"]["openAPIV3Schema"]["properties"].get("spec", {})
    return kind, dict(sorted(_below(spec, "spec")))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    crd_dir = Path(argv[0])
    out = (
        Path(argv[1])
        if len(argv) > 1
        else Path(__file__).parents[1] / "tests/data/calico_api_fields.json"
    )
    yaml = YAML(typ="safe")
    data: dict[str, Any] = {"_about": json.loads(out.read_text())["_about"] if out.exists() else ""}
    for path in sorted(crd_dir.glob("*.yaml")):
        kind, found = crd_fields(yaml.load(path.read_text(encoding="utf-8")))
        if kind in KINDS:
            data[kind] = found
    missing = set(KINDS) - set(data)
    if missing:
        print(f"no CRD for {', '.join(sorted(missing))} under {crd_dir}", file=sys.stderr)
        return 1
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
