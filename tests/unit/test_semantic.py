"""Semantic checks: each has a failing case (path + message) and a passing one."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.config.diagnostics import Finding, Path, Severity
from reconciler.config.model import Resource
from reconciler.config.semantic import check

ERROR, WARNING = Severity.ERROR, Severity.WARNING


def res(
    kind: str,
    spec: dict[str, Any] | None = None,
    *,
    name: str = "x",
    labels: dict[str, str] | None = None,
    **top: Any,
) -> Resource:
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    body: dict[str, Any] = {"kind": kind, "metadata": metadata, **top}
    if spec is not None:
        body["spec"] = spec
    return Resource(kind, name, None, body, "x.yaml", 1)


def gnp(spec: dict[str, Any], name: str = "x") -> Resource:
    return res("GlobalNetworkPolicy", spec, name=name)


def ingress(rule: dict[str, Any], kind: str = "GlobalNetworkPolicy") -> Resource:
    return res(kind, {"ingress": [{"action": "Allow", **rule}]})


def dst(**entity: Any) -> dict[str, Any]:
    return {"destination": entity}


I0 = ("spec", "ingress", 0)
SLICE_LABELS = {"kubernetes.io/service-name": "web"}

# (id, resource, path, message, severity)
FAILING: list[tuple[str, Resource, Path, str, Severity]] = [
    # -- selectors
    (
        "policy selector",
        gnp({"selector": "app == 'web' && (has(x)"}),
        ("spec", "selector"),
        "invalid selector: expected ')' at column 24",
        ERROR,
    ),
    (
        "rule destination selector",
        ingress(dst(selector="app = 'x'")),
        (*I0, "destination", "selector"),
        "invalid selector: expected '==' at column 5",
        ERROR,
    ),
    (
        "rule notSelector",
        ingress({"source": {"notSelector": "has(a"}}),
        (*I0, "source", "notSelector"),
        "invalid selector: expected ')' at column 6",
        ERROR,
    ),
    (
        "rule namespaceSelector",
        ingress({"source": {"namespaceSelector": "ns == prod"}}),
        (*I0, "source", "namespaceSelector"),
        "invalid selector: expected quoted string at column 7",
        ERROR,
    ),
    (
        "rule serviceAccounts selector",
        ingress({"source": {"serviceAccounts": {"selector": "role =="}}}),
        (*I0, "source", "serviceAccounts", "selector"),
        "invalid selector: expected quoted string at column 8",
        ERROR,
    ),
    (
        "policy serviceAccountSelector",
        res("NetworkPolicy", {"serviceAccountSelector": "!"}),
        ("spec", "serviceAccountSelector"),
        "invalid selector: expected expression at column 2",
        ERROR,
    ),
    (
        "ippool nodeSelector",
        res("IPPool", {"cidr": "10.0.0.0/16", "nodeSelector": "zone in {'a'"}),
        ("spec", "nodeSelector"),
        "invalid selector: expected ',' or '}' at column 13",
        ERROR,
    ),
    (
        "global() in a policy selector",
        gnp({"selector": "global()"}),
        ("spec", "selector"),
        "global() can only be used in a rule's namespaceSelector",
        ERROR,
    ),
    (
        "global() combined in a namespaceSelector",
        ingress({"source": {"namespaceSelector": "global() || has(x)"}}),
        (*I0, "source", "namespaceSelector"),
        "global() cannot be combined with other selectors",
        ERROR,
    ),
    # -- ports and protocols
    (
        "numeric ports need TCP/UDP/SCTP",
        ingress(dst(ports=[80])),
        (*I0, "destination", "ports"),
        "rules that specify ports must set protocol to TCP, UDP or SCTP",
        ERROR,
    ),
    (
        "named ports need TCP/UDP/SCTP",
        ingress({"protocol": "ICMP", **dst(ports=["http"])}),
        (*I0, "destination", "ports"),
        "rules that specify ports must set protocol to TCP, UDP or SCTP",
        ERROR,
    ),
    (
        "notPorts need protocol, not notProtocol",
        ingress({"notProtocol": "TCP", "source": {"notPorts": ["1000:2000"]}}),
        (*I0, "source", "notPorts"),
        "rules that specify ports must set protocol to TCP, UDP or SCTP",
        ERROR,
    ),
    (
        "inverted port range",
        ingress({"protocol": "TCP", **dst(ports=["2000:1000"])}),
        (*I0, "destination", "ports", 0),
        "inverted port range 2000:1000",
        ERROR,
    ),
    (
        "port above 65535",
        ingress({"protocol": "UDP", **dst(ports=[70000])}),
        (*I0, "destination", "ports", 0),
        "port 70000 is out of range 1-65535",
        ERROR,
    ),
    (
        "range end above 65535",
        ingress({"protocol": "SCTP", **dst(notPorts=[80, "1000:65536"])}),
        (*I0, "destination", "notPorts", 1),
        "port 65536 is out of range 1-65535",
        ERROR,
    ),
    (
        "port 0",
        ingress({"protocol": 6, **dst(ports=[0])}),
        (*I0, "destination", "ports", 0),
        "port 0 is out of range 1-65535",
        ERROR,
    ),
    (
        "half-open range",
        ingress({"protocol": "TCP", **dst(ports=["80:"])}),
        (*I0, "destination", "ports", 0),
        "invalid port range '80:': expected 'min:max'",
        ERROR,
    ),
    (
        "bad named port",
        ingress({"protocol": "TCP", **dst(ports=["HTTP"])}),
        (*I0, "destination", "ports", 0),
        "invalid named port 'HTTP': a port name is at most 15 lower-case letters, digits and"
        " '-', with a letter, no '--', not starting or ending with '-'",
        ERROR,
    ),
    # -- ICMP
    (
        "icmp code without type",
        ingress({"protocol": "ICMP", "icmp": {"code": 0}}),
        (*I0, "icmp", "code"),
        "ICMP code specified without an ICMP type",
        ERROR,
    ),
    (
        "icmp type 255",
        ingress({"protocol": "ICMPv6", "notICMP": {"type": 255}}),
        (*I0, "notICMP", "type"),
        "ICMP type 255 is invalid: must be 0-254",
        ERROR,
    ),
    (
        "icmp code 256",
        ingress({"protocol": "ICMP", "icmp": {"type": 3, "code": 256}}),
        (*I0, "icmp", "code"),
        "ICMP code 256 is invalid: must be 0-255",
        ERROR,
    ),
    (
        "icmp needs protocol ICMP",
        ingress({"protocol": "TCP", "icmp": {"type": 8}}),
        (*I0, "icmp"),
        "rules that specify ICMP fields must set protocol to ICMP or ICMPv6",
        ERROR,
    ),
    # Calico's validateRule asks no protocol of notICMP; an ICMP type is only
    # defined for ICMP packets, so no node could enforce it: an error here.
    (
        "notICMP with another protocol",
        ingress({"protocol": "TCP", "notICMP": {"type": 8}}),
        (*I0, "notICMP"),
        "Calico accepts notICMP with protocol TCP, but an ICMP type is only defined for ICMP "
        "packets: no node of this dataplane can enforce the rule; set protocol: ICMP",
        ERROR,
    ),
    (
        "notICMP without a protocol",
        ingress({"notICMP": {"type": 8, "code": 0}}),
        (*I0, "notICMP"),
        "Calico accepts notICMP with no protocol, but an ICMP type is only defined for ICMP "
        "packets: no node of this dataplane can enforce the rule; set protocol: ICMP",
        ERROR,
    ),
    (
        "ICMPv6 as notProtocol with ipVersion 4",
        ingress({"notProtocol": "ICMPv6", "ipVersion": 4}),
        (*I0, "ipVersion"),
        "notProtocol ICMPv6 requires ipVersion 6",
        ERROR,
    ),
    (
        "named ports need a protocol too",
        ingress(dst(ports=["http"])),
        (*I0, "destination", "ports"),
        "rules that specify ports must set protocol to TCP, UDP or SCTP",
        ERROR,
    ),
    (
        "ICMP with ipVersion 6",
        ingress({"protocol": "ICMP", "ipVersion": 6}),
        (*I0, "ipVersion"),
        "protocol ICMP requires ipVersion 4",
        ERROR,
    ),
    # -- addresses
    (
        "unparseable rule net",
        ingress({"source": {"nets": ["10.0.0.0/8", "10.0.0.300/24"]}}),
        (*I0, "source", "nets", 1),
        "invalid CIDR '10.0.0.300/24'",
        ERROR,
    ),
    (
        "rule net with host bits",
        ingress(dst(notNets=["10.1.2.3/16"])),
        (*I0, "destination", "notNets", 0),
        "'10.1.2.3/16' has host bits set: did you mean 10.1.0.0/16?",
        ERROR,
    ),
    (
        "rule mixes IPv4 and IPv6",
        ingress({"source": {"nets": ["10.0.0.0/8"]}, **dst(nets=["fd00::/8"])}),
        (*I0, "destination", "nets"),
        "rule contains both IPv4 and IPv6 CIDRs",
        ERROR,
    ),
    (
        "rule ipVersion vs CIDR",
        ingress({"ipVersion": 6, "source": {"nets": ["10.0.0.0/8"]}}),
        (*I0, "source", "nets"),
        "rule ipVersion 6 doesn't match CIDR version",
        ERROR,
    ),
    (
        "network set net",
        res("GlobalNetworkSet", {"nets": ["1.2.3.4/33"]}),
        ("spec", "nets", 0),
        "invalid CIDR '1.2.3.4/33'",
        ERROR,
    ),
    (
        "namespaced network set net",
        res("NetworkSet", {"nets": ["fd00::/8", "nope"]}),
        ("spec", "nets", 1),
        "invalid CIDR 'nope'",
        ERROR,
    ),
    (
        "host endpoint expectedIPs",
        res("HostEndpoint", {"node": "n1", "expectedIPs": ["10.0.0.1/32"]}),
        ("spec", "expectedIPs", 0),
        "invalid IP address '10.0.0.1/32'",
        ERROR,
    ),
    (
        "workload ipNetworks must be single addresses",
        res("WorkloadEndpoint", {"ipNetworks": ["10.0.0.0/24"]}),
        ("spec", "ipNetworks", 0),
        "IP network contains multiple addresses",
        ERROR,
    ),
    (
        "workload ipNetworks parse",
        res("WorkloadEndpoint", {"ipNetworks": ["10.0.0.x"]}),
        ("spec", "ipNetworks", 0),
        "invalid CIDR '10.0.0.x'",
        ERROR,
    ),
    (
        "ippool cidr parse",
        res("IPPool", {"cidr": "10.0.0.0/40"}),
        ("spec", "cidr"),
        "invalid CIDR '10.0.0.0/40'",
        ERROR,
    ),
    (
        "ippool cidr masked",
        res("IPPool", {"cidr": "10.0.0.1/16"}),
        ("spec", "cidr"),
        "IP pool CIDR is not strictly masked: did you mean 10.0.0.0/16?",
        ERROR,
    ),
    (
        "felix failsafe net",
        res(
            "FelixConfiguration",
            {"failsafeInboundHostPorts": [{"port": 22, "net": "x/8"}]},
            name="default",
        ),
        ("spec", "failsafeInboundHostPorts", 0, "net"),
        "invalid CIDR 'x/8'",
        ERROR,
    ),
    (
        "felix failsafe protocol",
        res(
            "FelixConfiguration",
            {"failsafeOutboundHostPorts": [{"port": 22, "protocol": "ICMP"}]},
            name="default",
        ),
        ("spec", "failsafeOutboundHostPorts", 0, "protocol"),
        "protocol must be TCP, UDP or SCTP",
        ERROR,
    ),
    (
        "felix natOutgoingAddress is IPv4",
        res("FelixConfiguration", {"natOutgoingAddress": "fd00::1"}, name="default"),
        ("spec", "natOutgoingAddress"),
        "'fd00::1' is not an IPv4 address",
        ERROR,
    ),
    (
        "service clusterIP",
        res("Service", {"clusterIP": "10.96.0.256"}),
        ("spec", "clusterIP"),
        "invalid IP address '10.96.0.256'",
        ERROR,
    ),
    (
        "service clusterIPs",
        res("Service", {"clusterIPs": ["10.96.0.1", "fd00::zz"]}),
        ("spec", "clusterIPs", 1),
        "invalid IP address 'fd00::zz'",
        ERROR,
    ),
    (
        "service externalIPs",
        res("Service", {"externalIPs": ["203.0.113.0/24"]}),
        ("spec", "externalIPs", 0),
        "invalid IP address '203.0.113.0/24'",
        ERROR,
    ),
    (
        "endpointslice address family",
        res(
            "EndpointSlice",
            labels=SLICE_LABELS,
            addressType="IPv4",
            endpoints=[{"addresses": ["10.0.0.1"]}, {"addresses": ["fd00::1"]}],
        ),
        ("endpoints", 1, "addresses", 0),
        "'fd00::1' is not an IPv4 address",
        ERROR,
    ),
    # -- preDNAT / doNotTrack
    (
        "preDNAT with doNotTrack",
        gnp({"preDNAT": True, "doNotTrack": True, "applyOnForward": True}),
        ("spec", "preDNAT"),
        "preDNAT and doNotTrack cannot both be true",
        ERROR,
    ),
    (
        "preDNAT with egress rules",
        gnp({"preDNAT": True, "applyOnForward": True, "egress": [{"action": "Allow"}]}),
        ("spec", "egress"),
        "a preDNAT policy cannot have egress rules",
        ERROR,
    ),
    (
        "preDNAT with Egress type",
        gnp({"preDNAT": True, "applyOnForward": True, "types": ["Ingress", "Egress"]}),
        ("spec", "types", 1),
        "a preDNAT policy cannot have the Egress type",
        ERROR,
    ),
    (
        "preDNAT without applyOnForward",
        gnp({"preDNAT": True}),
        ("spec", "applyOnForward"),
        "applyOnForward must be true when preDNAT or doNotTrack is true",
        ERROR,
    ),
    (
        "doNotTrack without applyOnForward",
        gnp({"doNotTrack": True, "applyOnForward": False}),
        ("spec", "applyOnForward"),
        "applyOnForward must be true when preDNAT or doNotTrack is true",
        ERROR,
    ),
    (
        "preDNAT on a namespaced policy",
        res("NetworkPolicy", {"preDNAT": True}),
        ("spec", "preDNAT"),
        "preDNAT is only valid on GlobalNetworkPolicy",
        ERROR,
    ),
    # -- types and tiers
    (
        "duplicate type",
        gnp({"types": ["Ingress", "Ingress"]}),
        ("spec", "types", 1),
        "'Ingress' type specified more than once",
        ERROR,
    ),
    (
        "rules for a direction not in types",
        gnp({"types": ["Ingress"], "egress": [{"action": "Deny"}]}),
        ("spec", "egress"),
        "egress rules are ignored: types does not include Egress",
        WARNING,
    ),
    (
        "tier without name prefix",
        gnp({"tier": "security"}, name="block-ssh"),
        ("metadata", "name"),
        "policy in tier 'security' must be named 'security.<name>'",
        ERROR,
    ),
    (
        "tier-like prefix in the default tier",
        res("NetworkPolicy", {}, name="security.block-ssh"),
        ("metadata", "name"),
        "name prefix 'security.' looks like a tier but the policy is in tier 'default': "
        "Calico releases that read the tier from the name disagree",
        WARNING,
    ),
    # -- FelixConfiguration
    (
        "felix name",
        res("FelixConfiguration", {}, name="node1"),
        ("metadata", "name"),
        "applies to no node: names are 'default' or 'node.<name>'",
        WARNING,
    ),
    (
        "bpfDataIfacePattern",
        res("FelixConfiguration", {"bpfDataIfacePattern": "^(eth|ens"}, name="default"),
        ("spec", "bpfDataIfacePattern"),
        "invalid regular expression: missing ), unterminated subpattern at position 1",
        ERROR,
    ),
    (
        "bpfL3IfacePattern",
        res("FelixConfiguration", {"bpfL3IfacePattern": "wg[0-"}, name="default"),
        ("spec", "bpfL3IfacePattern"),
        "invalid regular expression: unterminated character set at position 2",
        ERROR,
    ),
    (
        "interfaceExclude regex entry",
        res("FelixConfiguration", {"interfaceExclude": "kube-ipvs0,/veth(/"}, name="default"),
        ("spec", "interfaceExclude"),
        "invalid regular expression '/veth(/': missing ), unterminated subpattern at position 4",
        ERROR,
    ),
    (
        "regex Felix (RE2) cannot compile",
        res("FelixConfiguration", {"bpfDataIfacePattern": "^eth(?!0)"}, name="default"),
        ("spec", "bpfDataIfacePattern"),
        "regular expression uses lookaround or backreferences, which Calico (Go RE2) rejects",
        WARNING,
    ),
    # -- Service
    (
        "duplicate port name",
        res(
            "Service",
            {"ports": [{"name": "web", "port": 80}, {"name": "web", "port": 443}]},
        ),
        ("spec", "ports", 1, "name"),
        "duplicate port name 'web'",
        ERROR,
    ),
    (
        "duplicate port and protocol",
        res(
            "Service",
            {"ports": [{"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "TCP"}]},
        ),
        ("spec", "ports", 1),
        "duplicate port 53/TCP",
        ERROR,
    ),
    (
        "unnamed port among several",
        res("Service", {"ports": [{"name": "a", "port": 80}, {"port": 81}]}),
        ("spec", "ports", 1, "name"),
        "name is required when a Service has several ports",
        ERROR,
    ),
    (
        "nodePort on ClusterIP",
        res("Service", {"ports": [{"port": 80, "nodePort": 30080}]}),
        ("spec", "ports", 0, "nodePort"),
        "nodePort is only allowed when type is NodePort or LoadBalancer, not ClusterIP",
        ERROR,
    ),
    (
        "sessionAffinityConfig without ClientIP",
        res("Service", {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
        ("spec", "sessionAffinityConfig"),
        "sessionAffinityConfig has no effect unless sessionAffinity is ClientIP",
        WARNING,
    ),
    # -- EndpointSlice
    (
        "endpointslice without service label",
        res("EndpointSlice", addressType="IPv4", endpoints=[]),
        ("metadata", "labels"),
        "no kubernetes.io/service-name label: this slice belongs to no Service",
        WARNING,
    ),
]


@pytest.mark.parametrize(
    ("resource", "path", "message", "severity"),
    [case[1:] for case in FAILING],
    ids=[case[0] for case in FAILING],
)
def test_reports(resource: Resource, path: Path, message: str, severity: Severity) -> None:
    assert check(resource) == [Finding(path, message, severity)]


PASSING: list[tuple[str, Resource]] = [
    (
        "policy with every selector kind",
        gnp(
            {
                "selector": "app == 'web' && !has(legacy)",
                "serviceAccountSelector": "role in {'a', 'b'}",
                "namespaceSelector": "",
                "ingress": [
                    {
                        "action": "Allow",
                        "source": {
                            "selector": "all()",
                            "notSelector": "tier starts with 'db'",
                            "namespaceSelector": "global()",
                            "serviceAccounts": {"selector": "has(x)"},
                        },
                    }
                ],
            }
        ),
    ),
    (
        "ports with TCP/UDP/SCTP (names, numbers, ranges)",
        res(
            "NetworkPolicy",
            {
                "ingress": [
                    {"action": "Allow", "protocol": "TCP", **dst(ports=[80, "8080:8090", "http"])},
                    {"action": "Allow", "protocol": "udp", "source": {"notPorts": ["53", 1]}},
                    {"action": "Allow", "protocol": 132, **dst(ports=["1:65535"])},
                ]
            },
        ),
    ),
    (
        "ICMP fields with an ICMP protocol",
        ingress({"protocol": "ICMP", "ipVersion": 4, "icmp": {"type": 8, "code": 0}}),
    ),
    ("notICMP with ICMPv6", ingress({"protocol": "ICMPv6", "notICMP": {"type": 254}})),
    # Calico's validateRule compares ipVersion with the protocol's name, not its number.
    ("notICMP with protocol 1", ingress({"protocol": 1, "notICMP": {"type": 8}})),
    ("protocol 1 with ipVersion 6", ingress({"protocol": 1, "ipVersion": 6})),
    ("notProtocol 58 with ipVersion 4", ingress({"notProtocol": "58", "ipVersion": 4})),
    (
        "masked rule nets of one family",
        ingress(
            {
                "ipVersion": 4,
                "source": {"nets": ["10.0.0.0/8", "192.0.2.1"]},
                **dst(notNets=["192.0.2.0/24"]),
            }
        ),
    ),
    (
        "network set accepts unmasked CIDRs",
        res("GlobalNetworkSet", {"nets": ["10.1.2.3/8", "fd00::1"]}),
    ),
    ("host endpoint IPs", res("HostEndpoint", {"expectedIPs": ["10.0.0.1", "fd00::1"]})),
    (
        "workload single-address networks",
        res("WorkloadEndpoint", {"ipNetworks": ["10.0.0.1/32", "fd00::1"]}),
    ),
    ("ippool", res("IPPool", {"cidr": "10.244.0.0/16", "nodeSelector": "!has(edge)"})),
    (
        "profile rules",
        res("Profile", {"ingress": [{"action": "Allow", "protocol": "TCP", **dst(ports=[22])}]}),
    ),
    (
        "preDNAT done right",
        gnp(
            {
                "preDNAT": True,
                "applyOnForward": True,
                "types": ["Ingress"],
                "ingress": [{"action": "Deny"}],
            }
        ),
    ),
    ("doNotTrack done right", gnp({"doNotTrack": True, "applyOnForward": True, "egress": []})),
    ("types cover the rules", gnp({"types": ["Egress"], "egress": [{"action": "Allow"}]})),
    ("types omitted", gnp({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]})),
    ("tiered name", gnp({"tier": "security"}, name="security.block-ssh")),
    ("default tier prefix", res("NetworkPolicy", {"tier": "default"}, name="default.allow")),
    ("openstack-derived name", res("NetworkPolicy", {}, name="ossg.default.allow-dns")),
    (
        "felix default",
        res(
            "FelixConfiguration",
            {
                "bpfDataIfacePattern": "^((en|wl)[opsx].*|(eth|bond).*)",
                "bpfL3IfacePattern": "^wg[0-9]+$",
                "interfaceExclude": "kube-ipvs0,/^veth.*/",
                "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22, "net": "10.0.0.0/8"}],
                "natOutgoingAddress": "192.0.2.1",
            },
            name="default",
        ),
    ),
    ("felix per node", res("FelixConfiguration", {}, name="node.worker-1")),
    (
        "service",
        res(
            "Service",
            {
                "type": "NodePort",
                "clusterIP": "None",
                "externalIPs": ["203.0.113.7"],
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        ),
    ),
    ("single unnamed service port", res("Service", {"clusterIP": "", "ports": [{"port": 80}]})),
    (
        "endpointslice",
        res(
            "EndpointSlice",
            labels=SLICE_LABELS,
            addressType="IPv6",
            endpoints=[{"addresses": ["fd00::1"]}],
        ),
    ),
    (
        "FQDN endpointslice",
        res(
            "EndpointSlice",
            labels=SLICE_LABELS,
            addressType="FQDN",
            endpoints=[{"addresses": ["a.example"]}],
        ),
    ),
    ("unknown kind", res("Tier", {"order": 100})),
]


@pytest.mark.parametrize(
    "resource", [case[1] for case in PASSING], ids=[case[0] for case in PASSING]
)
def test_accepts(resource: Resource) -> None:
    assert check(resource) == []


ODD_VALUES: list[Any] = [None, 3, "text", True, [1, "a", None], {"k": [None]}, [[]], [{}]]
FIELDS = [
    "selector", "namespaceSelector", "serviceAccountSelector", "nodeSelector", "types",
    "ingress", "egress", "tier", "preDNAT", "cidr", "nets", "expectedIPs", "ipNetworks",
    "ports", "clusterIP", "clusterIPs", "externalIPs", "sessionAffinityConfig",
    "bpfDataIfacePattern", "interfaceExclude", "failsafeInboundHostPorts", "natOutgoingAddress",
]  # fmt: skip
KINDS = [
    "GlobalNetworkPolicy", "NetworkPolicy", "Profile", "IPPool", "GlobalNetworkSet",
    "HostEndpoint", "WorkloadEndpoint", "FelixConfiguration", "Service", "EndpointSlice",
]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_never_raises_on_schema_invalid_shapes(kind: str) -> None:
    for value in ODD_VALUES:
        for field in FIELDS:
            check(res(kind, {field: value}))
            check(res(kind, {"ingress": [{"source": {field: value}, field: value}]}))
            check(res(kind, {"ingress": [{"icmp": {"type": value, "code": value}}]}))
        check(res(kind, value))
        check(res(kind, None, addressType="IPv4", endpoints=value))


@pytest.mark.parametrize("kind", ["Tier", "GlobalNetworkPolicy", "NetworkPolicy"])
@pytest.mark.parametrize("order", [float("nan"), float("inf"), float("-inf")])
def test_an_order_must_be_a_finite_number(kind: str, order: float) -> None:
    spec: dict[str, Any] = {"order": order}
    found = [f for f in check(res(kind, spec)) if f.path == ("spec", "order")]
    assert found == [Finding(("spec", "order"), f"order must be a finite number, not {order}")]
    assert not [f for f in check(res(kind, {"order": 1e300})) if f.path == ("spec", "order")]


def test_a_field_judged_by_a_semantic_check_is_told_once() -> None:
    """The schema's pattern or range for the same field is left out: one
    message per field, the precise one."""
    from reconciler.config.validate import validate_file

    text = b"""\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: x}
spec:
  selector: all()
  ingress:
  - action: Allow
    protocol: TCP
    source: {nets: [10.0.0.0/33]}
    destination: {ports: [65536]}
"""
    found = sorted((d.line, d.path, d.message) for d in validate_file("p.yaml", text).diagnostics)
    assert found == [
        (9, "spec.ingress[0].source.nets[0]", "invalid CIDR '10.0.0.0/33'"),
        (10, "spec.ingress[0].destination.ports[0]", "port 65536 is out of range 1-65535"),
    ]
