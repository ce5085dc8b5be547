"""Write the Kubernetes API field list (tests/data/k8s_api_fields.json) for
the Kubernetes kinds reconcile reads: Service and ServiceAccount (core/v1),
EndpointSlice (discovery.k8s.io/v1) and NetworkPolicy (networking.k8s.io/v1).

    pip download kubernetes==33.1.0 --no-deps -d DIR
    python scripts/k8s_fields.py DIR/kubernetes-33.1.0-py2.py3-none-any.whl [OUT.json]

The official Python client is generated from the Kubernetes OpenAPI document
(client 33.x is Kubernetes 1.33); each model's `openapi_types` and
`attribute_map` give every field's JSON name and type. The wheel is read as a
zip, never imported. Paths and types follow scripts/crd_fields.py: one dotted
path per field, `[]` an array's items, `{}` a map's values, `int-or-string`
a field that takes both (the client types IntOrString as `object`, the only
`object` these kinds have). tests/unit/test_api_fields.py walks schemas/
against the list, so a field Kubernetes has and we lack fails a test.
"""

from __future__ import annotations

import ast
import json
import sys
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# kind -> (model, the top-level fields to walk: the object's own, not its
# apiVersion/kind/metadata)
ROOTS = {
    "Service": ("V1Service", ("spec", "status")),
    "EndpointSlice": ("V1EndpointSlice", ("address_type", "endpoints", "ports")),
    "NetworkPolicy": ("V1NetworkPolicy", ("spec",)),
    "ServiceAccount": (
        "V1ServiceAccount",
        ("automount_service_account_token", "image_pull_secrets", "secrets"),
    ),
}
_SCALARS = {
    "str": "string",
    "int": "integer",
    "bool": "boolean",
    "float": "number",
    "datetime": "string",
    "object": "int-or-string",
}

Model = tuple[dict[str, str], dict[str, str]]  # openapi_types, attribute_map


def read_models(wheel: Path) -> dict[str, Model]:
    models: dict[str, Model] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith("kubernetes/client/models/") or not name.endswith(".py"):
                continue
            for node in ast.parse(archive.read(name)).body:
                if isinstance(node, ast.ClassDef):
                    found = _class_tables(node)
                    if len(found) == 2:
                        models[node.name] = (found["openapi_types"], found["attribute_map"])
    return models


def _class_tables(node: ast.ClassDef) -> dict[str, Any]:
    """A model class's `openapi_types` and `attribute_map` literals."""
    found: dict[str, Any] = {}
    for item in node.body:
        if not (isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name)):
            continue
        if item.targets[0].id in ("openapi_types", "attribute_map"):
            found[item.targets[0].id] = ast.literal_eval(item.value)
    return found


def _type(spec: str, models: Mapping[str, Model]) -> str:
    if spec.startswith("list["):
        return "array"
    if spec.startswith("dict("):
        return "object"
    if spec in models:
        return "object"
    return _SCALARS[spec]


def _below(spec: str, path: str, models: Mapping[str, Model]) -> Iterator[tuple[str, str]]:
    if spec.startswith("list["):
        inner = spec[5:-1]
        yield f"{path}[]", _type(inner, models)
        yield from _below(inner, f"{path}[]", models)
    elif spec.startswith("dict("):
        inner = spec[5:-1].split(",", 1)[1].strip()
        yield f"{path}{{}}", _type(inner, models)
    elif spec in models:
        types, names = models[spec]
        for attr, child in types.items():
            child_path = f"{path}.{names[attr]}"
            yield child_path, _type(child, models)
            yield from _below(child, child_path, models)


def kind_fields(kind: str, models: Mapping[str, Model]) -> dict[str, str]:
    model, tops = ROOTS[kind]
    types, names = models[model]
    found: dict[str, str] = {}
    for attr in tops:
        found[names[attr]] = _type(types[attr], models)
        found.update(_below(types[attr], names[attr], models))
    return dict(sorted(found.items()))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    wheel = Path(argv[0])
    out = (
        Path(argv[1])
        if len(argv) > 1
        else Path(__file__).parents[1] / "tests/data/k8s_api_fields.json"
    )
    models = read_models(wheel)
    data: dict[str, Any] = {
        "_about": (
            "Fields of the Kubernetes API kinds reconcile reads, one dotted path per field with "
            "its OpenAPI type, as scripts/crd_fields.py writes Calico's. Made by "
            f"scripts/k8s_fields.py from {wheel.name} (the official client, generated from "
            "the Kubernetes OpenAPI document)."
        ),
    }
    for kind in ROOTS:
        data[kind] = kind_fields(kind, models)
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
