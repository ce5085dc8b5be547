"""Every field of Calico's API is in our schemas, with its type, and no more;
likewise the Kubernetes kinds we read (Service, EndpointSlice, NetworkPolicy).

The list of the API's fields (tests/data/calico_api_fields.json) is taken
from Calico's CRDs by scripts/crd_fields.py; the Kubernetes one
(tests/data/k8s_api_fields.json) from the official client's models by
scripts/k8s_fields.py. A field the API has and a schema lacks fails here, not
in a user's CI run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
API = json.loads((ROOT / "tests" / "data" / "calico_api_fields.json").read_text())
KINDS = sorted(k for k in API if not k.startswith("_"))
K8S = json.loads((ROOT / "tests" / "data" / "k8s_api_fields.json").read_text())
K8S_KINDS = sorted(k for k in K8S if not k.startswith("_"))
_ENVELOPE = ("apiVersion", "kind", "metadata")  # checked by other tests
# A Kubernetes kind's schema file, where its name is not the kind's: Calico
# has a NetworkPolicy kind of its own.
K8S_SCHEMAS = {"NetworkPolicy": "KubernetesNetworkPolicy"}

# Fields we accept beyond the CRDs, and why.
ACCEPTED_EXTRAS = {
    # Older releases' GlobalNetworkSet had it; configs written for them still validate.
    ("GlobalNetworkSet", "spec.allowedEgressDomains"),
    ("GlobalNetworkSet", "spec.allowedEgressDomains[]"),
}

# The release validation agrees with. Until the list is regenerated from it
# (its `_source` names the ref), the fields that Calico's v3.32.0 release notes
# introduce are refused here: on master, not in v3.31. Found there:
# FelixConfiguration's selector-scoped configuration (nodeSelector, a tech
# preview), the Istio ambient mode settings and the Maglev table sizes.
# Accepted for want of evidence either way: liveMigrationRouteConvergenceTime
# and programClusterRoutes (v3.32's live migration and route hand-off work, but
# the notes do not say these FelixConfiguration fields were new).
PIN = "v3.31"
POST_PIN = {
    ("FelixConfiguration", "spec.nodeSelector"),
    ("FelixConfiguration", "spec.istioAmbientMode"),
    ("FelixConfiguration", "spec.istioDSCPMark"),
    ("FelixConfiguration", "spec.bpfMaglevMaxEndpointsPerService"),
    ("FelixConfiguration", "spec.bpfMaglevMaxServices"),
}

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _schema(kind: str) -> dict[str, Any]:
    return json.loads((ROOT / "schemas" / f"{kind}.json").read_text())


def _resolve(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _alternatives(root: Mapping[str, Any], node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The node itself and every branch of its anyOf/oneOf/allOf, resolved."""
    node = _resolve(root, node)
    out = [node]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in node.get(key, ()):
            out += _alternatives(root, branch)
    return out


def _types(root: Mapping[str, Any], node: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for alt in _alternatives(root, node):
        kind = alt.get("type")
        if isinstance(kind, str):
            found.add(kind)
        elif isinstance(kind, list):
            found.update(kind)
        for value in [*alt.get("enum", ()), *([alt["const"]] if "const" in alt else [])]:
            found.add(_JSON_TYPES.get(type(value), "null"))
        if "properties" in alt:
            found.add("object")
    return found


def schema_fields(
    root: Mapping[str, Any], node: Mapping[str, Any], path: str
) -> Iterator[tuple[str, set[str]]]:
    for alt in _alternatives(root, node):
        for name, child in alt.get("properties", {}).items():
            child_path = f"{path}.{name}"
            yield child_path, _types(root, child)
            yield from schema_fields(root, child, child_path)
        items = alt.get("items")
        if isinstance(items, Mapping):
            yield f"{path}[]", _types(root, items)
            yield from schema_fields(root, items, f"{path}[]")
        values = alt.get("additionalProperties")
        if isinstance(values, Mapping):
            yield f"{path}{{}}", _types(root, values)


def ours(kind: str) -> dict[str, set[str]]:
    root = _schema(kind)
    found: dict[str, set[str]] = {}
    for path, types in schema_fields(root, root["properties"]["spec"], "spec"):
        found.setdefault(path, set()).update(types)
    return found


def ours_k8s(kind: str, root: Mapping[str, Any] | None = None) -> dict[str, set[str]]:
    """A Kubernetes kind's fields: its top-level ones beside the envelope (an
    EndpointSlice has no spec) and everything below them."""
    root = root if root is not None else _schema(K8S_SCHEMAS.get(kind, kind))
    found: dict[str, set[str]] = {}
    for name, node in root["properties"].items():
        if name in _ENVELOPE:
            continue
        found.setdefault(name, set()).update(_types(root, node))
        for path, types in schema_fields(root, node, name):
            found.setdefault(path, set()).update(types)
    return found


def accepts(api_type: str, types: set[str]) -> bool:
    wanted = {"int-or-string": {"integer", "string"}}.get(api_type, {api_type})
    if api_type == "number":
        return bool(types & {"number", "integer"})
    return wanted <= types


@pytest.mark.parametrize("kind", KINDS)
def test_every_api_field_is_in_the_schema(kind: str) -> None:
    have = ours(kind)
    missing = sorted(p for p in API[kind] if p not in have and (kind, p) not in POST_PIN)
    assert not missing, f"{kind}: the schema lacks {missing}"
    wrong = {
        p: (t, sorted(have[p]))
        for p, t in API[kind].items()
        if (kind, p) not in POST_PIN and not accepts(t, have[p])
    }
    assert not wrong, f"{kind}: types differ (API, ours): {wrong}"


def test_the_list_names_its_source() -> None:
    source = API["_source"]
    assert source["repository"] == "projectcalico/calico" and source["ref"] and source["commit"]


@pytest.mark.parametrize(("kind", "path"), sorted(POST_PIN))
def test_fields_newer_than_the_pinned_release_are_refused(kind: str, path: str) -> None:
    assert path not in ours(kind)
    if PIN in API["_source"]["ref"]:
        # regenerated from the release: the field is gone, so is the need for POST_PIN
        assert path not in API[kind], f"{path} is in {API['_source']['ref']}: drop it from POST_PIN"
    else:
        assert path in API[kind], f"{path} is not in the list: POST_PIN names it for nothing"


@pytest.mark.parametrize("kind", KINDS)
def test_the_schema_has_no_field_the_api_lacks(kind: str) -> None:
    extra = sorted(p for p in ours(kind) if p not in API[kind] and (kind, p) not in ACCEPTED_EXTRAS)
    assert not extra, f"{kind}: not in Calico's API: {extra}"


def test_the_walk_finds_a_missing_field() -> None:
    """The check above can fail: drop one field and it is reported."""
    root = _schema("FelixConfiguration")
    del root["properties"]["spec"]["properties"]["bpfEnabled"]
    have = {p for p, _ in schema_fields(root, root["properties"]["spec"], "spec")}
    assert "spec.bpfEnabled" in API["FelixConfiguration"] and "spec.bpfEnabled" not in have


@pytest.mark.parametrize("kind", K8S_KINDS)
def test_every_kubernetes_field_is_in_the_schema(kind: str) -> None:
    have = ours_k8s(kind)
    missing = sorted(p for p in K8S[kind] if p not in have)
    assert not missing, f"{kind}: the schema lacks {missing}"
    wrong = {p: (t, sorted(have[p])) for p, t in K8S[kind].items() if not accepts(t, have[p])}
    assert not wrong, f"{kind}: types differ (API, ours): {wrong}"


@pytest.mark.parametrize("kind", K8S_KINDS)
def test_the_schema_has_no_field_kubernetes_lacks(kind: str) -> None:
    extra = sorted(p for p in ours_k8s(kind) if p not in K8S[kind])
    assert not extra, f"{kind}: not in the Kubernetes API: {extra}"


def test_the_kubernetes_walk_finds_a_missing_field() -> None:
    """Drop one nested Service field, one top-level EndpointSlice field and
    a NetworkPolicy rule's port field: each is reported."""
    root = _schema("Service")
    spec = root["properties"]["spec"]
    del _resolve(root, spec)["properties"]["trafficDistribution"]
    have = {p for p, _ in schema_fields(root, spec, "spec")}
    assert "spec.trafficDistribution" in K8S["Service"] and "spec.trafficDistribution" not in have
    root = _schema("EndpointSlice")
    del root["properties"]["addressType"]
    assert "addressType" in K8S["EndpointSlice"] and "addressType" not in ours_k8s("", root)
    root = _schema("KubernetesNetworkPolicy")
    del root["definitions"]["ports"]["items"]["properties"]["endPort"]
    end_port = "spec.ingress[].ports[].endPort"
    assert end_port in K8S["NetworkPolicy"] and end_port not in ours_k8s("", root)
