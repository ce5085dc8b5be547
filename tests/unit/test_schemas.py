"""The JSON Schemas under schemas/ and the example config repository.

Every schema must behave the same under jsonschema (used to explain a
failure) and fastjsonschema (used on the happy path), so each case is run
through both and they must agree.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas"
EXAMPLES = ROOT / "examples" / "cluster-config"

CALICO = "projectcalico.org/v3"
KINDS = {
    "FelixConfiguration": CALICO,
    "IPPool": CALICO,
    "GlobalNetworkPolicy": CALICO,
    "NetworkPolicy": CALICO,
    "GlobalNetworkSet": CALICO,
    "NetworkSet": CALICO,
    "HostEndpoint": CALICO,
    "WorkloadEndpoint": CALICO,
    "Profile": CALICO,
    "Tier": CALICO,
    "Service": "v1",
    "EndpointSlice": "discovery.k8s.io/v1",
    "Namespace": "v1",
}
NAMESPACED = {"NetworkPolicy", "NetworkSet", "WorkloadEndpoint", "Service", "EndpointSlice"}

_SCHEMAS: dict[str, dict[str, Any]] = {}
_FAST: dict[str, Callable[[Any], Any]] = {}
_FULL: dict[str, jsonschema.Draft7Validator] = {}


def schema(kind: str) -> dict[str, Any]:
    if kind not in _SCHEMAS:
        _SCHEMAS[kind] = json.loads((SCHEMA_DIR / f"{kind}.json").read_text(encoding="utf-8"))
    return _SCHEMAS[kind]


def fast(kind: str) -> Callable[[Any], Any]:
    if kind not in _FAST:
        _FAST[kind] = fastjsonschema.compile(schema(kind))
    return _FAST[kind]


def full(kind: str) -> jsonschema.Draft7Validator:
    if kind not in _FULL:
        _FULL[kind] = jsonschema.Draft7Validator(schema(kind))
    return _FULL[kind]


def fast_error(kind: str, doc: Any) -> fastjsonschema.JsonSchemaValueException | None:
    try:
        fast(kind)(doc)
    except fastjsonschema.JsonSchemaValueException as err:
        return err
    return None


def errors(kind: str, doc: Any) -> list[jsonschema.ValidationError]:
    """jsonschema's errors, after checking that fastjsonschema agrees on validity."""
    found = list(full(kind).iter_errors(doc))
    fast_err = fast_error(kind, doc)
    assert (fast_err is None) == (not found), (
        f"validators disagree on {kind}: jsonschema={[e.message for e in found]} "
        f"fastjsonschema={fast_err}"
    )
    return found


# ---------------------------------------------------------------- schemas themselves


def walk_objects(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk_objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk_objects(value, f"{path}/{i}")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_is_valid_draft7(kind: str) -> None:
    s = schema(kind)
    assert s["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(s)
    fast(kind)  # compiles


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_top_level(kind: str) -> None:
    s = schema(kind)
    assert s["properties"]["apiVersion"] == {"const": KINDS[kind]}
    assert s["properties"]["kind"] == {"const": kind}
    assert set(s["required"]) >= {"apiVersion", "kind", "metadata"}
    assert s["additionalProperties"] is False
    meta = s["definitions"]["metadata"]
    assert ("namespace" in meta["properties"]) == (kind in NAMESPACED)
    assert ("namespace" in meta.get("required", [])) == (kind in NAMESPACED)
    assert ("status" in s["properties"]) == (kind in ("Service", "Namespace"))
    assert ("spec" in s["properties"]) == (kind != "EndpointSlice")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_is_closed_and_portable(kind: str) -> None:
    """Fixed-field objects reject unknown fields; no `format`; only local refs."""
    for path, node in walk_objects(schema(kind)):
        assert "format" not in node or path.endswith("/properties"), path
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref.startswith("#/definitions/"), path
        if isinstance(node.get("properties"), dict) and node.get("type") == "object":
            assert node.get("additionalProperties") is False, f"{kind}: {path} is open"


# ---------------------------------------------------------------- the example repository


def example_documents() -> list[tuple[str, int, dict[str, Any]]]:
    yaml = YAML(typ="safe")
    docs = []
    for path in sorted(EXAMPLES.rglob("*.y*ml")):
        with path.open(encoding="utf-8") as fh:
            for i, doc in enumerate(yaml.load_all(fh)):
                if doc is not None:
                    docs.append((str(path.relative_to(EXAMPLES)), i, doc))
    return docs


EXAMPLE_DOCS = example_documents()


@pytest.mark.parametrize(
    "doc", [d for _, _, d in EXAMPLE_DOCS], ids=[f"{f}#{i}" for f, i, _ in EXAMPLE_DOCS]
)
def test_example_document_is_valid(doc: dict[str, Any]) -> None:
    assert doc.get("kind") in KINDS
    found = errors(doc["kind"], doc)
    assert not found, [f"{list(e.absolute_path)}: {e.message}" for e in found]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, _, d in EXAMPLE_DOCS if d.get("kind") == kind]


def test_examples_cover_every_kind() -> None:
    assert {d["kind"] for _, _, d in EXAMPLE_DOCS} == set(KINDS)


def test_examples_demo_node_contents() -> None:
    felix = {d["metadata"]["name"]: d["spec"] for d in by_kind("FelixConfiguration")}
    assert felix["default"]["bpfEnabled"] is True
    assert "node.node-1" in felix

    weps = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d for d in by_kind("WorkloadEndpoint")
    }
    on_node_1 = {key for key, d in weps.items() if d["spec"]["node"] == "node-1"}
    assert on_node_1 == {("shop", "frontend-0"), ("shop", "backend-0")}
    assert any(d["spec"]["node"] == "node-2" for d in weps.values())
    front, back = weps[("shop", "frontend-0")], weps[("shop", "backend-0")]
    assert (front["spec"]["interfaceName"], front["spec"]["ipNetworks"]) == (
        "cali-front0",
        ["10.65.0.10/32"],
    )
    assert (back["spec"]["interfaceName"], back["spec"]["ipNetworks"]) == (
        "cali-back0",
        ["10.65.0.20/32"],
    )
    assert front["metadata"]["labels"]["app"] == "frontend"
    assert back["metadata"]["labels"]["app"] == "backend"

    heps = [d["spec"] for d in by_kind("HostEndpoint")]
    assert {"node": "node-1", "interfaceName": "eth0", "expectedIPs": ["192.168.50.1"]}.items() <= (
        heps[0].items()
    )

    services = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"] for d in by_kind("Service")
    }
    backend = services[("shop", "backend")]
    assert backend["clusterIP"] == "10.96.0.50"
    assert backend["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]
    dns = services[("kube-system", "kube-dns")]
    assert dns["clusterIP"] == "10.96.0.10"
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}

    gnps = {d["metadata"]["name"]: d["spec"] for d in by_kind("GlobalNetworkPolicy")}
    assert any(s.get("doNotTrack") and s.get("applyOnForward") for s in gnps.values())
    assert any(s.get("preDNAT") for s in gnps.values())
    assert any(s.get("tier") == "security" for s in gnps.values())


# ---------------------------------------------------------------- bad cases

# One minimal valid document per kind; each bad case breaks exactly one thing.
BASE: dict[str, dict[str, Any]] = {
    "FelixConfiguration": {
        "apiVersion": CALICO,
        "kind": "FelixConfiguration",
        "metadata": {"name": "default"},
        "spec": {
            "bpfEnabled": True,
            "bpfConntrackTimeouts": {"tcpEstablished": "1h0m0s"},
            "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}],
        },
    },
    "IPPool": {
        "apiVersion": CALICO,
        "kind": "IPPool",
        "metadata": {"name": "pool"},
        "spec": {"cidr": "10.65.0.0/16", "allowedUses": ["Workload"]},
    },
    "GlobalNetworkPolicy": {
        "apiVersion": CALICO,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "allow-web"},
        "spec": {
            "selector": "all()",
            "types": ["Ingress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "TCP",
                    "icmp": {"type": 8},
                    "source": {"nets": ["10.0.0.0/8"], "serviceAccounts": {"names": ["a"]}},
                    "destination": {"ports": [80, "8000:8080", "http"]},
                    "http": {"paths": [{"exact": "/"}]},
                }
            ],
        },
    },
    "NetworkPolicy": {
        "apiVersion": CALICO,
        "kind": "NetworkPolicy",
        "metadata": {"name": "np", "namespace": "shop"},
        "spec": {"selector": "app == 'web'", "ingress": [{"action": "Allow"}]},
    },
    "GlobalNetworkSet": {
        "apiVersion": CALICO,
        "kind": "GlobalNetworkSet",
        "metadata": {"name": "set"},
        "spec": {"nets": ["192.0.2.0/24"], "allowedEgressDomains": ["*.example.com"]},
    },
    "NetworkSet": {
        "apiVersion": CALICO,
        "kind": "NetworkSet",
        "metadata": {"name": "set", "namespace": "shop"},
        "spec": {"nets": ["2001:db8::/32"]},
    },
    "HostEndpoint": {
        "apiVersion": CALICO,
        "kind": "HostEndpoint",
        "metadata": {"name": "hep"},
        "spec": {
            "node": "node-1",
            "interfaceName": "eth0",
            "expectedIPs": ["192.168.50.1"],
            "ports": [{"name": "ssh", "protocol": "TCP", "port": 22}],
        },
    },
    "WorkloadEndpoint": {
        "apiVersion": CALICO,
        "kind": "WorkloadEndpoint",
        "metadata": {"name": "wep", "namespace": "shop"},
        "spec": {
            "node": "node-1",
            "interfaceName": "cali-front0",
            "ipNetworks": ["10.65.0.10/32"],
            "ipNATs": [{"internalIP": "10.65.0.10", "externalIP": "192.0.2.10"}],
            "mac": "ee:ee:ee:ee:ee:ee",
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        },
    },
    "Profile": {
        "apiVersion": CALICO,
        "kind": "Profile",
        "metadata": {"name": "kns.shop"},
        "spec": {"labelsToApply": {"projectcalico.org/name": "shop"}},
    },
    "Tier": {
        "apiVersion": CALICO,
        "kind": "Tier",
        "metadata": {"name": "security"},
        "spec": {"order": 100, "defaultAction": "Pass"},
    },
    "Service": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "backend", "namespace": "shop"},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.0.50",
            "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
        },
        "status": {"loadBalancer": {}},
    },
    "EndpointSlice": {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "backend-abc12",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "backend"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.65.0.20"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
    },
    "Namespace": {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"env": "prod"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    },
}

DELETE = object()

# (kind, path to change, new value or DELETE, failing keyword, path of the failure)
# fmt: off
BAD_CASES: list[tuple[str, tuple[Any, ...], Any, str, tuple[Any, ...]]] = [
    # top level and metadata
    ("Namespace", ("metadata", "namespace"), "shop", "additionalProperties", ("metadata",)),
    ("Namespace", ("metadata", "name"), "shop.eu", "pattern", ("metadata", "name")),
    ("Namespace", ("metadata", "labels", "env"), "a b", "pattern", ("metadata", "labels", "env")),
    ("Namespace", ("apiVersion",), "v2", "const", ("apiVersion",)),
    ("Tier", ("apiVersion",), "projectcalico.org/v1", "const", ("apiVersion",)),
    ("Tier", ("kind",), "GlobalNetworkPolicy", "const", ("kind",)),
    ("Tier", ("metadata",), DELETE, "required", ()),
    ("Tier", ("extra",), 1, "additionalProperties", ()),
    ("Tier", ("metadata", "name"), DELETE, "required", ("metadata",)),
    ("Tier", ("metadata", "name"), "Security", "pattern", ("metadata", "name")),
    ("Tier", ("metadata", "name"), "a" * 254, "maxLength", ("metadata", "name")),
    ("Tier", ("metadata", "namespace"), "shop", "additionalProperties", ("metadata",)),
    ("NetworkPolicy", ("metadata", "namespace"), DELETE, "required", ("metadata",)),
    ("Tier", ("metadata", "labels", "app"), 1, "type", ("metadata", "labels", "app")),
    ("Tier", ("metadata", "labels", "bad key!"), "x", "propertyNames", ("metadata", "labels")),
    ("Tier", ("metadata", "annotations", "note"), True, "type",
     ("metadata", "annotations", "note")),
    ("Tier", ("metadata", "generation"), "1", "type", ("metadata", "generation")),
    # FelixConfiguration
    ("FelixConfiguration", ("spec", "bpfEnabeld"), True, "additionalProperties", ("spec",)),
    ("FelixConfiguration", ("spec", "bpfEnabled"), "true", "type", ("spec", "bpfEnabled")),
    ("FelixConfiguration", ("spec", "bpfLogLevel"), "Verbose", "enum", ("spec", "bpfLogLevel")),
    ("FelixConfiguration", ("spec", "bpfConnectTimeLoadBalancing"), "UDP", "enum",
     ("spec", "bpfConnectTimeLoadBalancing")),
    ("FelixConfiguration", ("spec", "bpfHostNetworkedNATWithoutCTLB"), "On", "enum",
     ("spec", "bpfHostNetworkedNATWithoutCTLB")),
    ("FelixConfiguration", ("spec", "bpfExternalServiceMode"), "Direct", "enum",
     ("spec", "bpfExternalServiceMode")),
    ("FelixConfiguration", ("spec", "bpfEnforceRPF"), "Lax", "pattern", ("spec", "bpfEnforceRPF")),
    ("FelixConfiguration", ("spec", "defaultEndpointToHostAction"), "ACCEPT", "enum",
     ("spec", "defaultEndpointToHostAction")),
    ("FelixConfiguration", ("spec", "logSeverityScreen"), "Verbose", "enum",
     ("spec", "logSeverityScreen")),
    ("FelixConfiguration", ("spec", "logSeverityFile"), "info", "enum",
     ("spec", "logSeverityFile")),
    ("FelixConfiguration", ("spec", "iptablesFilterDenyAction"), "Accept", "enum",
     ("spec", "iptablesFilterDenyAction")),
    ("FelixConfiguration", ("spec", "nftablesFilterAllowAction"), "Drop", "enum",
     ("spec", "nftablesFilterAllowAction")),
    ("FelixConfiguration", ("spec", "awsSrcDstCheck"), "Disabled", "enum",
     ("spec", "awsSrcDstCheck")),
    ("FelixConfiguration", ("spec", "windowsManageFirewallRules"), "On", "enum",
     ("spec", "windowsManageFirewallRules")),
    ("FelixConfiguration", ("spec", "wireguardInterfaceNameV6"), "a-name-too-long-x", "pattern",
     ("spec", "wireguardInterfaceNameV6")),
    ("FelixConfiguration", ("spec", "prometheusMetricsHost"), "bad host", "pattern",
     ("spec", "prometheusMetricsHost")),
    ("FelixConfiguration", ("spec", "bpfLogFilters", "bad iface!"), "tcp", "propertyNames",
     ("spec", "bpfLogFilters")),
    ("FelixConfiguration", ("spec", "bpfForceTrackPacketsFromIfaces"), ["docker 0"], "pattern",
     ("spec", "bpfForceTrackPacketsFromIfaces", 0)),
    ("FelixConfiguration", ("spec", "kubeNodePortRanges"), [1, 2, 3, 4, 5, 6, 7, 8], "maxItems",
     ("spec", "kubeNodePortRanges")),
    ("FelixConfiguration", ("spec", "healthTimeoutOverrides"), [{"name": "x"}], "required",
     ("spec", "healthTimeoutOverrides", 0)),
    ("FelixConfiguration", ("spec", "routeTableRanges"), [{"min": 1}], "required",
     ("spec", "routeTableRanges", 0)),
    ("FelixConfiguration", ("spec", "logActionRateLimit"), "10/week", "pattern",
     ("spec", "logActionRateLimit")),
    ("FelixConfiguration", ("spec", "iptablesMarkMask"), 1 << 32, "maximum",
     ("spec", "iptablesMarkMask")),
    ("FelixConfiguration", ("spec", "bpfMapSizeConntrack"), 0, "minimum",
     ("spec", "bpfMapSizeConntrack")),
    ("FelixConfiguration", ("spec", "bpfMapSizeNATFrontend"), 1 << 30, "maximum",
     ("spec", "bpfMapSizeNATFrontend")),
    ("FelixConfiguration", ("spec", "bpfMapSizeIfState"), 1.5, "type",
     ("spec", "bpfMapSizeIfState")),
    ("FelixConfiguration", ("spec", "bpfConntrackTimeouts", "tcpEstablished"), "1 hour",
     "anyOf", ("spec", "bpfConntrackTimeouts", "tcpEstablished")),
    ("FelixConfiguration", ("spec", "bpfConntrackTimeouts", "tcpEstablished"), 3600,
     "anyOf", ("spec", "bpfConntrackTimeouts", "tcpEstablished")),
    ("FelixConfiguration", ("spec", "bpfConntrackTimeouts", "tcpIdle"), "1h",
     "additionalProperties", ("spec", "bpfConntrackTimeouts")),
    ("FelixConfiguration", ("spec", "reportingInterval"), "30", "pattern",
     ("spec", "reportingInterval")),
    ("FelixConfiguration", ("spec", "failsafeInboundHostPorts", 0, "port"), 70000, "maximum",
     ("spec", "failsafeInboundHostPorts", 0, "port")),
    ("FelixConfiguration", ("spec", "failsafeInboundHostPorts", 0, "port"), DELETE, "required",
     ("spec", "failsafeInboundHostPorts", 0)),
    ("FelixConfiguration", ("spec", "failsafeInboundHostPorts", 0, "protocol"), "ICMP", "enum",
     ("spec", "failsafeInboundHostPorts", 0, "protocol")),
    ("FelixConfiguration", ("spec", "failsafeInboundHostPorts", 0, "net"), "not-a-cidr",
     "anyOf", ("spec", "failsafeInboundHostPorts", 0, "net")),
    ("FelixConfiguration", ("spec", "failsafeInboundHostPorts", 0, "cidr"), "10.0.0.0/8",
     "additionalProperties", ("spec", "failsafeInboundHostPorts", 0)),
    ("FelixConfiguration", ("spec", "healthPort"), 0, "minimum", ("spec", "healthPort")),
    # IPPool
    ("IPPool", ("spec",), DELETE, "required", ()),
    ("IPPool", ("spec", "cidr"), DELETE, "required", ("spec",)),
    ("IPPool", ("spec", "cidr"), "10.65.0.0/33", "pattern", ("spec", "cidr")),
    ("IPPool", ("spec", "cidr"), "2001:db8::/129", "pattern", ("spec", "cidr")),
    ("IPPool", ("spec", "ipipMode"), "always", "enum", ("spec", "ipipMode")),
    ("IPPool", ("spec", "vxlanMode"), "Sometimes", "enum", ("spec", "vxlanMode")),
    ("IPPool", ("spec", "natOutgoing"), "yes", "type", ("spec", "natOutgoing")),
    ("IPPool", ("spec", "allowedUses", 0), "Pods", "enum", ("spec", "allowedUses", 0)),
    ("IPPool", ("spec", "assignmentMode"), "Auto", "enum", ("spec", "assignmentMode")),
    ("IPPool", ("spec", "blockSize"), 129, "maximum", ("spec", "blockSize")),
    # policies and rules
    ("GlobalNetworkPolicy", ("spec", "order"), "10", "type", ("spec", "order")),
    ("GlobalNetworkPolicy", ("spec", "types", 0), "Inbound", "enum", ("spec", "types", 0)),
    ("GlobalNetworkPolicy", ("spec", "types"), ["Ingress", "Ingress"], "uniqueItems",
     ("spec", "types")),
    ("GlobalNetworkPolicy", ("spec", "types"), [], "minItems", ("spec", "types")),
    ("GlobalNetworkPolicy", ("spec", "doNotTrack"), "true", "type", ("spec", "doNotTrack")),
    ("GlobalNetworkPolicy", ("spec", "performanceHints"), ["Preload"], "enum",
     ("spec", "performanceHints", 0)),
    ("GlobalNetworkPolicy", ("spec", "tier"), "Security", "pattern", ("spec", "tier")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "action"), DELETE, "required",
     ("spec", "ingress", 0)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "action"), "Accept", "enum",
     ("spec", "ingress", 0, "action")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "actions"), "Allow", "additionalProperties",
     ("spec", "ingress", 0)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "protocol"), "tcp", "anyOf",
     ("spec", "ingress", 0, "protocol")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "protocol"), 0, "anyOf",
     ("spec", "ingress", 0, "protocol")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "notProtocol"), 256, "anyOf",
     ("spec", "ingress", 0, "notProtocol")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "ipVersion"), 5, "enum",
     ("spec", "ingress", 0, "ipVersion")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "icmp", "type"), 255, "maximum",
     ("spec", "ingress", 0, "icmp", "type")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "icmp", "code"), 256, "maximum",
     ("spec", "ingress", 0, "icmp", "code")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "notICMP"), {"kind": 8},
     "additionalProperties", ("spec", "ingress", 0, "notICMP")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "source", "nets", 0), "10.0.0.0/40",
     "pattern", ("spec", "ingress", 0, "source", "nets", 0)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "source", "net"), ["10.0.0.0/8"],
     "additionalProperties", ("spec", "ingress", 0, "source")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "destination", "ports", 0), 65536, "anyOf",
     ("spec", "ingress", 0, "destination", "ports", 0)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "destination", "ports", 1), "8000-8080",
     "anyOf", ("spec", "ingress", 0, "destination", "ports", 1)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "destination", "ports", 2), "HTTP", "anyOf",
     ("spec", "ingress", 0, "destination", "ports", 2)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "destination", "notPorts"),
     ["a-very-long-port-name"], "anyOf", ("spec", "ingress", 0, "destination", "notPorts", 0)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "source", "serviceAccounts", "name"), "a",
     "additionalProperties", ("spec", "ingress", 0, "source", "serviceAccounts")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "destination", "services"), {"port": 80},
     "additionalProperties", ("spec", "ingress", 0, "destination", "services")),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "http", "paths", 0),
     {"exact": "/", "prefix": "/a"}, "maxProperties", ("spec", "ingress", 0, "http", "paths", 0)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "http", "paths", 0), {"regex": "/"},
     "additionalProperties", ("spec", "ingress", 0, "http", "paths", 0)),
    ("GlobalNetworkPolicy", ("spec", "ingress", 0, "metadata", "annotations", "a"), 1, "type",
     ("spec", "ingress", 0, "metadata", "annotations", "a")),
    ("GlobalNetworkPolicy", ("spec", "selector"), "x" * 1025, "maxLength", ("spec", "selector")),
    ("NetworkPolicy", ("spec", "preDNAT"), True, "additionalProperties", ("spec",)),
    ("NetworkPolicy", ("spec", "namespaceSelector"), "all()", "additionalProperties", ("spec",)),
    ("NetworkPolicy", ("spec", "egress"), {"action": "Allow"}, "type", ("spec", "egress")),
    # network sets
    ("GlobalNetworkSet", ("spec", "nets", 0), "192.0.2.0/24/8", "pattern", ("spec", "nets", 0)),
    ("GlobalNetworkSet", ("spec", "allowedEgressDomains", 0), "", "minLength",
     ("spec", "allowedEgressDomains", 0)),
    ("NetworkSet", ("spec", "allowedEgressDomains"), ["a.com"], "additionalProperties",
     ("spec",)),
    ("NetworkSet", ("spec", "nets"), "10.0.0.0/8", "type", ("spec", "nets")),
    # endpoints
    ("HostEndpoint", ("spec", "node"), DELETE, "required", ("spec",)),
    ("HostEndpoint", ("spec",), {"node": "node-1"}, "anyOf", ("spec",)),
    ("HostEndpoint", ("spec", "interfaceName"), "an-interface-name-too-long", "anyOf",
     ("spec", "interfaceName")),
    ("HostEndpoint", ("spec", "expectedIPs", 0), "192.168.50.1/24", "pattern",
     ("spec", "expectedIPs", 0)),
    ("HostEndpoint", ("spec", "ports", 0, "name"), DELETE, "required", ("spec", "ports", 0)),
    ("HostEndpoint", ("spec", "ports", 0, "protocol"), "ICMP", "anyOf",
     ("spec", "ports", 0, "protocol")),
    ("HostEndpoint", ("spec", "ports", 0, "port"), 0, "minimum", ("spec", "ports", 0, "port")),
    ("WorkloadEndpoint", ("spec", "node"), DELETE, "required", ("spec",)),
    ("WorkloadEndpoint", ("spec", "ipNetworks", 0), "10.65.0.300/32x", "pattern",
     ("spec", "ipNetworks", 0)),
    ("WorkloadEndpoint", ("spec", "ipNATs", 0, "externalIP"), DELETE, "required",
     ("spec", "ipNATs", 0)),
    ("WorkloadEndpoint", ("spec", "mac"), "ee:ee:ee:ee:ee", "pattern", ("spec", "mac")),
    ("WorkloadEndpoint", ("spec", "interfaceName"), "cali/front", "pattern",
     ("spec", "interfaceName")),
    ("WorkloadEndpoint", ("spec", "ports", 0, "hostPort"), 65536, "maximum",
     ("spec", "ports", 0, "hostPort")),
    ("WorkloadEndpoint", ("spec", "ports", 0, "hostIP"), "localhost", "pattern",
     ("spec", "ports", 0, "hostIP")),
    ("WorkloadEndpoint", ("spec", "ipv4Gateway"), "10.65.0", "pattern", ("spec", "ipv4Gateway")),
    ("WorkloadEndpoint", ("spec", "labels"), {"app": "x"}, "additionalProperties", ("spec",)),
    # Profile and Tier
    ("Profile", ("spec", "ingress"), [{"protocol": "TCP"}], "required", ("spec", "ingress", 0)),
    ("Profile", ("spec", "labelsToApply", "app"), 1, "type", ("spec", "labelsToApply", "app")),
    ("Profile", ("spec", "selector"), "all()", "additionalProperties", ("spec",)),
    ("Tier", ("spec", "defaultAction"), "Allow", "enum", ("spec", "defaultAction")),
    ("Tier", ("spec", "order"), "first", "type", ("spec", "order")),
    # Service
    ("Service", ("spec",), DELETE, "required", ()),
    ("Service", ("spec", "type"), "Headless", "enum", ("spec", "type")),
    ("Service", ("spec", "clusterIP"), "10.96.0", "pattern", ("spec", "clusterIP")),
    ("Service", ("spec", "clusterIPs"), ["none"], "pattern", ("spec", "clusterIPs", 0)),
    ("Service", ("spec", "ports", 0, "port"), DELETE, "required", ("spec", "ports", 0)),
    ("Service", ("spec", "ports", 0, "port"), 0, "minimum", ("spec", "ports", 0, "port")),
    ("Service", ("spec", "ports", 0, "protocol"), "ICMP", "enum",
     ("spec", "ports", 0, "protocol")),
    ("Service", ("spec", "ports", 0, "targetPort"), 70000, "anyOf",
     ("spec", "ports", 0, "targetPort")),
    ("Service", ("spec", "ports", 0, "targetPort"), "8080", "anyOf",
     ("spec", "ports", 0, "targetPort")),
    ("Service", ("spec", "ports", 0, "nodePort"), -1, "minimum",
     ("spec", "ports", 0, "nodePort")),
    ("Service", ("spec", "ports", 0, "name"), "HTTP", "pattern", ("spec", "ports", 0, "name")),
    ("Service", ("spec", "sessionAffinity"), "Client", "enum", ("spec", "sessionAffinity")),
    ("Service", ("spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"), 86401,
     "maximum", ("spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds")),
    ("Service", ("spec", "externalTrafficPolicy"), "Node", "enum",
     ("spec", "externalTrafficPolicy")),
    ("Service", ("spec", "internalTrafficPolicy"), "local", "enum",
     ("spec", "internalTrafficPolicy")),
    ("Service", ("spec", "externalIPs"), ["example.com"], "pattern", ("spec", "externalIPs", 0)),
    ("Service", ("spec", "ipFamilies"), ["IPv4", "IPv4"], "uniqueItems", ("spec", "ipFamilies")),
    ("Service", ("spec", "ipFamilyPolicy"), "DualStack", "enum", ("spec", "ipFamilyPolicy")),
    ("Service", ("status", "loadBalancer", "ingress"), [{"ip": "1.2.3.4", "vip": True}],
     "additionalProperties", ("status", "loadBalancer", "ingress", 0)),
    ("Service", ("status", "loadBalancer", "ingress"), [{"ipMode": "Direct"}], "enum",
     ("status", "loadBalancer", "ingress", 0, "ipMode")),
    # EndpointSlice
    ("EndpointSlice", ("addressType",), DELETE, "required", ()),
    ("EndpointSlice", ("addressType",), "IP", "enum", ("addressType",)),
    ("EndpointSlice", ("spec",), {}, "additionalProperties", ()),
    ("EndpointSlice", ("endpoints", 0, "addresses"), [], "minItems", ("endpoints", 0, "addresses")),
    ("EndpointSlice", ("endpoints", 0, "addresses"), DELETE, "required", ("endpoints", 0)),
    ("EndpointSlice", ("endpoints", 0, "addresses", 0), "2001:db8::1", "pattern",
     ("endpoints", 0, "addresses", 0)),
    ("EndpointSlice", ("endpoints", 0, "conditions", "ready"), "true", "type",
     ("endpoints", 0, "conditions", "ready")),
    ("EndpointSlice", ("endpoints", 0, "conditions", "healthy"), True, "additionalProperties",
     ("endpoints", 0, "conditions")),
    ("EndpointSlice", ("endpoints", 0, "node"), "node-1", "additionalProperties",
     ("endpoints", 0)),
    ("EndpointSlice", ("ports", 0, "port"), 65536, "maximum", ("ports", 0, "port")),
    ("EndpointSlice", ("ports", 0, "protocol"), "tcp", "enum", ("ports", 0, "protocol")),
]
# fmt: on


def keyword_of(error: jsonschema.ValidationError) -> str:
    # jsonschema blames the key's own subschema (e.g. `pattern`) for a bad
    # property name; fastjsonschema blames `propertyNames`. Use the latter.
    if "propertyNames" in error.absolute_schema_path:
        return "propertyNames"
    return str(error.validator)


def mutate(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    parent: Any = doc
    for key in path[:-1]:
        parent = parent.setdefault(key, {}) if isinstance(parent, dict) else parent[key]
    if value is DELETE:
        del parent[path[-1]]
    elif isinstance(parent, list) and path[-1] == len(parent):
        parent.append(value)
    else:
        parent[path[-1]] = value
    return doc


@pytest.mark.parametrize("kind", sorted(BASE))
def test_base_documents_are_valid(kind: str) -> None:
    assert not errors(kind, BASE[kind])


def test_every_kind_has_bad_cases() -> None:
    assert {case[0] for case in BAD_CASES} == set(KINDS)


@pytest.mark.parametrize(
    ("kind", "path", "value", "keyword", "where"),
    BAD_CASES,
    ids=[f"{c[0]}:{'.'.join(map(str, c[1]))}:{c[3]}" for c in BAD_CASES],
)
def test_bad_case(
    kind: str, path: tuple[Any, ...], value: Any, keyword: str, where: tuple[Any, ...]
) -> None:
    doc = mutate(BASE[kind], path, value)
    found = errors(kind, doc)
    assert found, f"{kind} accepted {path}={value!r}"
    got = [(keyword_of(e), tuple(e.absolute_path)) for e in found]
    assert got == [(keyword, where)], got
    # fastjsonschema stops at its first error: it must name the same place.
    fast_err = fast_error(kind, doc)
    assert fast_err is not None
    assert fast_err.path[1:] == [str(p) for p in where], fast_err.path
    assert fast_err.rule == keyword, fast_err.rule


# ---------------------------------------------------------------- value-level checks


def spec_value(kind: str, field: str, value: Any) -> dict[str, Any]:
    return mutate(BASE[kind], ("spec", field), value)


@pytest.mark.parametrize(
    "value",
    [
        "10.0.0.1",
        "10.0.0.0/8",
        "0.0.0.0/0",
        "::",
        "::/0",
        "2001:db8::/32",
        "fe80::1/128",
        "::ffff:192.0.2.1",
    ],
)
def test_cidr_pattern_accepts(value: str) -> None:
    assert not errors("NetworkSet", spec_value("NetworkSet", "nets", [value]))


@pytest.mark.parametrize(
    "value", ["", "10.0.0.0/", "10.0.0/8", "10.0.0.0/33", "2001:db8::/129", "host", "10.0.0.0 /8"]
)
def test_cidr_pattern_rejects(value: str) -> None:
    assert errors("NetworkSet", spec_value("NetworkSet", "nets", [value]))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("30s", True),
        ("1h0m0s", True),
        ("500ms", True),
        ("1.5h", True),
        ("10m", True),
        ("0s", True),
        ("", False),
        ("30", False),
        ("1 h", False),
        ("1d", False),
        ("-5s", False),
    ],
)
def test_duration_pattern(value: str, ok: bool) -> None:
    doc = mutate(BASE["FelixConfiguration"], ("spec", "bpfConntrackTimeouts", "udpTimeout"), value)
    assert (not errors("FelixConfiguration", doc)) == ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (0, True),
        (65535, True),
        (65536, False),
        (-1, False),
        ("80", True),
        ("1:65535", True),
        ("http", True),
        ("http-alt", True),
        ("h2c", True),
        ("web-8080", True),
        ("-http", False),
        ("http-", False),
        ("123", True),
        ("a" * 15, True),
        ("a" * 16, False),
        ("HTTP", False),
        ("80:", False),
        (True, False),
        (8.5, False),
    ],
)
def test_rule_port_forms(value: Any, ok: bool) -> None:
    doc = mutate(
        BASE["GlobalNetworkPolicy"], ("spec", "ingress", 0, "destination", "ports"), [value]
    )
    assert (not errors("GlobalNetworkPolicy", doc)) == ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("TCP", True),
        ("UDP", True),
        ("ICMP", True),
        ("ICMPv6", True),
        ("SCTP", True),
        ("UDPLite", True),
        (1, True),
        (255, True),
        (0, False),
        (256, False),
        ("tcp", False),
        ("GRE", False),
        (True, False),
    ],
)
def test_rule_protocol_forms(value: Any, ok: bool) -> None:
    doc = mutate(BASE["GlobalNetworkPolicy"], ("spec", "ingress", 0, "protocol"), value)
    assert (not errors("GlobalNetworkPolicy", doc)) == ok


@pytest.mark.parametrize("value", ["", "None", "10.96.0.1", "fd00::10"])
def test_service_cluster_ip_forms(value: str) -> None:
    assert not errors("Service", mutate(BASE["Service"], ("spec", "clusterIP"), value))


def test_endpointslice_kubectl_nulls_and_fqdn() -> None:
    doc = mutate(BASE["EndpointSlice"], ("endpoints",), None)
    doc["ports"] = None
    assert not errors("EndpointSlice", doc)
    fqdn = mutate(BASE["EndpointSlice"], ("addressType",), "FQDN")
    fqdn["endpoints"][0]["addresses"] = ["db.example.com"]
    assert not errors("EndpointSlice", fqdn)
    v6 = mutate(BASE["EndpointSlice"], ("addressType",), "IPv6")
    v6["endpoints"][0]["addresses"] = ["2001:db8::20"]
    assert not errors("EndpointSlice", v6)


def test_kubectl_round_trip_metadata() -> None:
    doc = mutate(
        BASE["Service"],
        ("metadata",),
        {
            "name": "backend",
            "namespace": "shop",
            "uid": "0b6a4d5e-8c1f-4a53-9b8e-3d0f2c1a7e61",
            "resourceVersion": "12345",
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "generation": 3,
        },
    )
    assert not errors("Service", doc)
    assert not errors("Service", mutate(doc, ("metadata", "creationTimestamp"), None))


def test_unknown_field_error_offers_the_allowed_names() -> None:
    """The engine's "did you mean" reads `properties` of the object that failed."""
    doc = mutate(BASE["FelixConfiguration"], ("spec", "bpfMapSizeConntrak"), 1000)
    (error,) = errors("FelixConfiguration", doc)
    assert error.validator == "additionalProperties"
    assert isinstance(error.schema, dict)
    assert "bpfMapSizeConntrack" in error.schema["properties"]


def _alternatives() -> Iterator[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """Every anyOf of every schema: where it is, its branches with any $ref
    resolved, and the schema that holds it."""

    def walk(node: Any, where: str, root: dict[str, Any]) -> Iterator[Any]:
        if isinstance(node, dict):
            if "anyOf" in node:
                branches = [
                    root["definitions"][b["$ref"].rsplit("/", 1)[-1]] if "$ref" in b else b
                    for b in node["anyOf"]
                ]
                yield where, branches, root
            for key, child in node.items():
                yield from walk(child, f"{where}/{key}", root)
        elif isinstance(node, list):
            for i, child in enumerate(node):
                yield from walk(child, f"{where}/{i}", root)

    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        yield from walk(schema, path.stem, schema)


def _samples(branch: dict[str, Any]) -> Any:
    """A strategy for values that `branch` accepts (the shapes our schemas' anyOf
    branches take: an enum, a bounded integer, a string with a pattern)."""
    from hypothesis import strategies as st

    if "enum" in branch:
        return st.sampled_from(branch["enum"])
    if branch.get("type") == "integer":
        return st.integers(branch.get("minimum", -(2**63)), branch.get("maximum", 2**63 - 1))
    assert branch.get("type") == "string", f"no sampler for {branch}"
    accepts = jsonschema.Draft7Validator(branch).is_valid
    pattern = branch.get("pattern", ".*").replace("(?=.*[a-z])", "")  # lookahead: filtered below
    return st.from_regex(pattern, fullmatch=True).filter(accepts)


# The anyOf fields that stand for Calico's "exactly one of": port, target
# port, protocol. (Elsewhere anyOf means what it says, e.g. a HostEndpoint
# names an interface, addresses, or both.)
EXACTLY_ONE = ("/definitions/port", "/targetPort", "/definitions/protocol")
ALTERNATIVES = [a for a in _alternatives() if a[0].endswith(EXACTLY_ONE)]


def test_every_port_and_protocol_field_is_checked_for_disjoint_alternatives():
    where = {w for w, _, _ in ALTERNATIVES}
    assert len(where) == 8
    assert {"GlobalNetworkPolicy/definitions/port", "NetworkPolicy/definitions/protocol",
            "Service/definitions/servicePort/properties/targetPort"} <= where  # fmt: skip


@pytest.mark.parametrize(
    ("where", "branches", "root"), ALTERNATIVES, ids=[a[0] for a in ALTERNATIVES]
)
def test_exactly_one_alternative_accepts_a_value(where, branches, root):
    """Those fields are written anyOf, not oneOf: for alternatives no value
    can fit twice the two accept the same documents, and anyOf lets the fast
    validator stop at the first branch that fits. So no value of one branch
    may fit another."""
    from hypothesis import given, settings

    checks = [jsonschema.Draft7Validator(b).is_valid for b in branches]

    def fits_only(own: int) -> Callable[[Any], None]:
        def check(value: Any) -> None:
            fits = [j for j, accepts in enumerate(checks) if accepts(value)]
            assert fits == [own], f"{where}: {value!r} fits branches {fits}"

        return check

    for i, branch in enumerate(branches):
        settings(max_examples=200, deadline=None, database=None)(
            given(_samples(branch))(fits_only(i))
        )()


@pytest.mark.parametrize("word,meant", [("yes", "true"), ("No", "false"), ("off", "false")])
def test_a_yaml_1_1_boolean_is_told_what_to_write(word, meant):
    """kubectl and calicoctl read yes/no/on/off as booleans (YAML 1.1);
    here they are strings: the message says so and what to write."""
    from reconciler.config.schema import check

    doc = {**BASE["IPPool"], "spec": {**BASE["IPPool"]["spec"], "natOutgoing": word}}
    [finding] = check("IPPool", doc)
    assert finding.path == ("spec", "natOutgoing")
    assert finding.message == (
        f"{word!r} is a string here, not a boolean (YAML 1.2 reads only true and false as "
        f"booleans): write {meant}"
    )
