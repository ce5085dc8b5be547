"""Write the API field list (tests/data/calico_api_fields.json) from Calico's CRDs.

    git -C CALICO_CHECKOUT checkout release-v3.31     # the release we agree with
    python scripts/crd_fields.py CALICO_CHECKOUT/libcalico-go/config/crd \\
        --ref release-v3.31 --commit "$(git -C CALICO_CHECKOUT rev-parse HEAD)" [OUT.json]

(On master the v3 CRDs are api/config/crd/projectcalico.org_*.yaml; a release
branch has the crd.projectcalico.org_*.yaml ones under libcalico-go: both
carry the same v3 fields.) `--ref` and `--commit` are recorded in the list's
`_source`, so the test can say which Calico the schemas are checked against.

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
    import argparse

    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("crd_dir", type=Path)
    parser.add_argument("out", type=Path, nargs="?")
    parser.add_argument("--ref", required=True, help="the branch or tag checked out")
    parser.add_argument("--commit", required=True, help="its full commit id")
    args = parser.parse_args(argv)
    crd_dir = args.crd_dir
    out = args.out or Path(__file__).parents[1] / "tests/data/calico_api_fields.json"
    yaml = YAML(typ="safe")
    data: dict[str, Any] = {
        "_about": json.loads(out.read_text())["_about"] if out.exists() else "",
        "_source": {
            "repository": "projectcalico/calico",
            "ref": args.ref,
            "commit": args.commit,
            "path": "/".join(crd_dir.parts[-3:]),
        },
    }
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
