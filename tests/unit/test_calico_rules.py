"""Calico validator rules beyond the schemas (reconciler.config.calico_rules), each
with a case Calico accepts and one it refuses, and the message we give."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.config import selector
from reconciler.config.model import Resource
from reconciler.config.semantic import HTTP_NOT_ENFORCEABLE, check


def res(kind: str, spec: dict[str, Any], name: str = "x", **meta: Any) -> Resource:
    namespace = "shop" if kind == "NetworkPolicy" else None
    body = {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": {"name": name, **meta}}
    body["spec"] = spec
    return Resource(kind, name, namespace, body, "f.yaml", 1)


def msgs(resource: Resource) -> list[tuple[str, str]]:
    """Calico's findings (this dataplane's refusal of any http match aside:
    test_an_http_match_is_refused_as_no_node_can_enforce_it)."""
    return [
        (".".join(map(str, f.path)), f.message)
        for f in check(resource)
        if f.severity.value == "error" and f.message != HTTP_NOT_ENFORCEABLE
    ]


def test_an_http_match_is_refused_as_no_node_can_enforce_it() -> None:
    ok = res("NetworkPolicy", {"ingress": [rule(protocol="TCP", http={"methods": ["GET"]})]})
    assert [(f.path, f.message) for f in check(ok)] == [
        (("spec", "ingress", 0, "http"), HTTP_NOT_ENFORCEABLE)
    ]


def rule(**fields: Any) -> dict[str, Any]:
    return {"action": "Allow", **fields}


POOL = {"cidr": "10.65.0.0/16"}

# (id, resource, [(path, message)]): [] means Calico accepts it.
CASES: list[tuple[str, Resource, list[tuple[str, str]]]] = [
    # IP pools
    ("pool ok", res("IPPool", {**POOL, "ipipMode": "Always"}), []),
    (
        "pool ipip+vxlan",
        res("IPPool", {**POOL, "ipipMode": "Always", "vxlanMode": "CrossSubnet"}),
        [("spec.vxlanMode", "ipipMode and vxlanMode cannot both be enabled")],
    ),
    (
        "pool ipip v6",
        res("IPPool", {"cidr": "fd00::/48", "ipipMode": "CrossSubnet"}),
        [("spec.ipipMode", "IPIP is not supported on an IPv6 IP pool")],
    ),
    ("pool vxlan v6", res("IPPool", {"cidr": "fd00::/48", "vxlanMode": "Always"}), []),
    (
        "pool link-local v4",
        res("IPPool", {"cidr": "169.254.0.0/20"}),
        [("spec.cidr", "IP pool range overlaps with the link-local range 169.254.0.0/16")],
    ),
    (
        "pool link-local v6",
        res("IPPool", {"cidr": "fe80::/64"}),
        [("spec.cidr", "IP pool range overlaps with the link-local range fe80::/10")],
    ),
    (
        "pool block v4 low",
        res("IPPool", {**POOL, "blockSize": 19}),
        [("spec.blockSize", "IPv4 block size must be between 20 and 32")],
    ),
    (
        "pool block v6 low",
        res("IPPool", {"cidr": "fd00::/48", "blockSize": 112}),
        [("spec.blockSize", "IPv6 block size must be between 116 and 128")],
    ),
    ("pool block v6 ok", res("IPPool", {"cidr": "fd00::/48", "blockSize": 120}), []),
    (
        "pool smaller than default block",
        res("IPPool", {"cidr": "10.65.0.0/28"}),
        [
            (
                "spec.cidr",
                "IP pool /28 is smaller than its blocks (/26, the default): "
                "Calico IPAM needs at least one block",
            )
        ],
    ),
    (
        "pool smaller than block",
        res("IPPool", {"cidr": "10.65.0.0/24", "blockSize": 22}),
        [
            (
                "spec.cidr",
                "IP pool /24 is smaller than its blocks (/22): "
                "Calico IPAM needs at least one block",
            )
        ],
    ),
    ("disabled small pool", res("IPPool", {"cidr": "10.65.0.0/28", "disabled": True}), []),
    (
        "lb with workload",
        res("IPPool", {**POOL, "allowedUses": ["LoadBalancer", "Workload"]}),
        [("spec.allowedUses", "LoadBalancer cannot be used at the same time as Workload")],
    ),
    (
        "lb with vxlan",
        res("IPPool", {**POOL, "allowedUses": ["LoadBalancer"], "vxlanMode": "Always"}),
        [("spec.allowedUses", "a LoadBalancer pool cannot enable ipipMode or vxlanMode")],
    ),
    (
        "lb no bgp",
        res("IPPool", {**POOL, "allowedUses": ["LoadBalancer"], "disableBGPExport": True}),
        [("spec.disableBGPExport", "a LoadBalancer pool must export its routes over BGP")],
    ),
    (
        "lb node selector",
        res("IPPool", {**POOL, "allowedUses": ["LoadBalancer"], "nodeSelector": "a == 'b'"}),
        [("spec.nodeSelector", "a LoadBalancer pool's nodeSelector must be all()")],
    ),
    (
        "lb ok",
        res("IPPool", {**POOL, "allowedUses": ["LoadBalancer"], "nodeSelector": "all()"}),
        [],
    ),
    (
        "ns selector tunnel",
        res("IPPool", {**POOL, "allowedUses": ["Tunnel"], "namespaceSelector": "all()"}),
        [("spec.namespaceSelector", "namespaceSelector is only valid on Workload pools")],
    ),
    ("ns selector default uses", res("IPPool", {**POOL, "namespaceSelector": "all()"}), []),
    # tiers
    ("tier ok", res("Tier", {"order": 100}, name="security"), []),
    (
        "tier dot",
        res("Tier", {"order": 100}, name="sec.urity"),
        [
            (
                "metadata.name",
                "invalid tier name 'sec.urity': lower case letters, digits and '-' (no '.')",
            )
        ],
    ),
    (
        "default tier ok",
        res("Tier", {"order": 1_000_000, "defaultAction": "Deny"}, name="default"),
        [],
    ),
    (
        "default tier order",
        res("Tier", {"order": 100}, name="default"),
        [("spec.order", "the 'default' tier's order must be 1000000")],
    ),
    (
        "adminnetworkpolicy pass",
        res("Tier", {"order": 1000, "defaultAction": "Pass"}, name="adminnetworkpolicy"),
        [],
    ),
    (
        "adminnetworkpolicy deny",
        res("Tier", {"order": 1000}, name="adminnetworkpolicy"),
        [("spec.defaultAction", "the 'adminnetworkpolicy' tier must have default action 'Pass'")],
    ),
    (
        "kube-admin is an ordinary tier in v3.31",
        res("Tier", {"order": 5, "defaultAction": "Deny"}, name="kube-admin"),
        [],
    ),
    (
        "baselineadminnetworkpolicy order",
        res("Tier", {"order": 1000, "defaultAction": "Pass"}, name="baselineadminnetworkpolicy"),
        [("spec.order", "the 'baselineadminnetworkpolicy' tier's order must be 10000000")],
    ),
    # names and metadata
    (
        "gnp two dots",
        res("GlobalNetworkPolicy", {}, name="a.b.c"),
        [
            (
                "metadata.name",
                "invalid policy name 'a.b.c': lower case letters, digits and '-', at most one "
                "'.'",
            )
        ],
    ),
    (
        "gnp kanp prefix: calicoctl's view of an AdminNetworkPolicy",
        res("GlobalNetworkPolicy", {}, name="kanp.adminnetworkpolicy.a.b"),
        [
            (
                "metadata.name",
                "'kanp.adminnetworkpolicy.a.b' is calicoctl's view of the Kubernetes "
                "AdminNetworkPolicy a.b (calicoctl refuses to create it): keep the "
                "policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy a.b and delete this "
                "GlobalNetworkPolicy",
            )
        ],
    ),
    (
        "gnp kbanp prefix: calicoctl's view of the BaselineAdminNetworkPolicy",
        res("GlobalNetworkPolicy", {}, name="kbanp.baselineadminnetworkpolicy.default"),
        [
            (
                "metadata.name",
                "'kbanp.baselineadminnetworkpolicy.default' is calicoctl's view of the "
                "Kubernetes BaselineAdminNetworkPolicy default (calicoctl refuses to create "
                "it): keep the policy.networking.k8s.io/v1alpha1 BaselineAdminNetworkPolicy "
                "default and delete this GlobalNetworkPolicy",
            )
        ],
    ),
    (
        "np knp prefix: calicoctl's view of a Kubernetes NetworkPolicy",
        res("NetworkPolicy", {}, name="knp.default.a.b"),
        [
            (
                "metadata.name",
                "'knp.default.a.b' is calicoctl's view of the Kubernetes NetworkPolicy "
                "shop/a.b (calicoctl refuses to create it): keep the networking.k8s.io/v1 "
                "NetworkPolicy shop/a.b and delete this NetworkPolicy",
            )
        ],
    ),
    ("np ossg prefix", res("NetworkPolicy", {}, name="ossg.default.a.b"), []),
    ("a kanp. name on a NetworkPolicy is no view", res("NetworkPolicy", {}, name="kanp.a"), []),
    (
        "np two dots",
        res("NetworkPolicy", {}, name="a.b.c"),
        [
            (
                "metadata.name",
                "invalid policy name 'a.b.c': lower case letters, digits and '-', "
                "at most one '.', or the prefix 'ossg.default.'",
            )
        ],
    ),
    (
        "annotation key",
        res("Tier", {"order": 1}, name="t", annotations={"bad key": "v"}),
        [
            (
                "metadata.annotations.bad key",
                "invalid annotation key 'bad key': an optional DNS-subdomain "
                "prefix and '/', then at most 63 letters, digits, '-', '_' or '.'",
            )
        ],
    ),
    (
        "annotation key ok",
        res("Tier", {"order": 1}, name="t", annotations={"Example.com/Note": "v"}),
        [],
    ),
    (
        "annotations too big",
        res("Tier", {"order": 1}, name="t", annotations={"a": "x" * (256 * 1024)}),
        [("metadata.annotations", "total size of annotations is too large by 1 bytes")],
    ),
    (
        "set reserved label",
        res("GlobalNetworkSet", {}, labels={"projectcalico.org/namespace": "a"}),
        [
            (
                "metadata.labels.projectcalico.org/namespace",
                "projectcalico.org/namespace is not a valid label name: Calico sets it",
            )
        ],
    ),
    # services
    (
        "svc egress ok",
        res("NetworkPolicy", {"egress": [rule(destination={"services": {"name": "web"}})]}),
        [],
    ),
    (
        "svc egress source",
        res("NetworkPolicy", {"egress": [rule(source={"services": {"name": "web"}})]}),
        [("spec.egress.0.source.services", "services are not allowed in egress rule source")],
    ),
    (
        "svc ingress destination",
        res("NetworkPolicy", {"ingress": [rule(destination={"services": {"name": "web"}})]}),
        [
            (
                "spec.ingress.0.destination.services",
                "services are not allowed in ingress rule destination",
            )
        ],
    ),
    (
        "svc global needs namespace",
        res("GlobalNetworkPolicy", {"egress": [rule(destination={"services": {"name": "web"}})]}),
        [
            (
                "spec.egress.0.destination.services.namespace",
                "must specify a namespace in a global policy",
            )
        ],
    ),
    (
        "svc with selector",
        res(
            "NetworkPolicy",
            {"egress": [rule(destination={"services": {"name": "web"}, "selector": "all()"})]},
        ),
        [
            (
                "spec.egress.0.destination.services",
                "cannot specify selector/notSelector and services on the same rule",
            )
        ],
    ),
    (
        "svc with nets",
        res(
            "NetworkPolicy",
            {"ingress": [rule(source={"services": {"name": "web"}, "notNets": ["10.0.0.0/8"]})]},
        ),
        [
            (
                "spec.ingress.0.source.services",
                "cannot specify nets/notNets and services on the same rule",
            )
        ],
    ),
    (
        "svc with ports",
        res(
            "NetworkPolicy",
            {
                "egress": [
                    rule(protocol="TCP", destination={"services": {"name": "web"}, "ports": [80]})
                ]
            },
        ),
        [("spec.egress.0.destination.ports", "cannot specify ports with a service selector")],
    ),
    (
        "svc no name",
        res("NetworkPolicy", {"egress": [rule(destination={"services": {"namespace": "a"}})]}),
        [("spec.egress.0.destination.services", "must specify a service name")],
    ),
    # http
    (
        "http ok",
        res(
            "NetworkPolicy",
            {
                "ingress": [
                    rule(protocol="TCP", http={"methods": ["GET"], "paths": [{"prefix": "/api"}]})
                ]
            },
        ),
        [],
    ),
    (
        "http deny",
        res("NetworkPolicy", {"ingress": [{"action": "Deny", "http": {"methods": ["GET"]}}]}),
        [("spec.ingress.0.http", "HTTP match is only valid on Allow rules")],
    ),
    (
        "http udp",
        res("NetworkPolicy", {"ingress": [rule(protocol="UDP", http={"methods": ["GET"]})]}),
        [("spec.ingress.0.protocol", "rules with HTTP match must have protocol TCP or unset")],
    ),
    (
        "http egress",
        res("NetworkPolicy", {"egress": [rule(http={"methods": ["GET"]})]}),
        [("spec.egress.0.http", "HTTP match is not allowed in egress rules")],
    ),
    (
        "http dup methods",
        res("NetworkPolicy", {"ingress": [rule(http={"methods": ["GET", "GET"]})]}),
        [("spec.ingress.0.http.methods", "duplicate HTTP methods: ['GET', 'GET']")],
    ),
    (
        "http path chars",
        res("NetworkPolicy", {"ingress": [rule(http={"paths": [{"exact": "/a?b"}]})]}),
        [
            (
                "spec.ingress.0.http.paths.0",
                "invalid path '/a?b': must start with '/' and hold no '?', '#' or space",
            )
        ],
    ),
    (
        "http path both",
        res("NetworkPolicy", {"ingress": [rule(http={"paths": [{"exact": "/a", "prefix": "/"}]})]}),
        [("spec.ingress.0.http.paths.0", "set either 'exact' or 'prefix', not both")],
    ),
    # FelixConfiguration
    (
        "felix ok",
        res(
            "FelixConfiguration",
            {
                "routeTableRanges": [{"min": 1, "max": 250}],
                "externalNodesList": ["10.0.0.0/8"],
                "kubeNodePortRanges": ["30000:32767", 8080],
            },
            name="default",
        ),
        [],
    ),
    (
        "felix both route ranges",
        res(
            "FelixConfiguration",
            {"routeTableRange": {"min": 1, "max": 2}, "routeTableRanges": [{"min": 1, "max": 2}]},
            name="default",
        ),
        [("spec.routeTableRange", "cannot be set when routeTableRanges is also set")],
    ),
    (
        "felix route range",
        res("FelixConfiguration", {"routeTableRange": {"min": 1, "max": 251}}, name="default"),
        [("spec.routeTableRange", "must be a range of route table indices within 1..250")],
    ),
    (
        "felix route ranges",
        res("FelixConfiguration", {"routeTableRanges": [{"min": 0, "max": 70000}]}, name="default"),
        [
            ("spec.routeTableRanges.0", "cannot target indices < 1"),
            ("spec.routeTableRanges", "targets too many tables (at most 65535)"),
        ],
    ),
    (
        "felix inverted range",
        res("FelixConfiguration", {"routeTableRanges": [{"min": 9, "max": 3}]}, name="default"),
        [("spec.routeTableRanges.0", "min value cannot be greater than max value")],
    ),
    (
        "felix v6 external",
        res("FelixConfiguration", {"externalNodesList": ["fd00::/64"]}, name="default"),
        [("spec.externalNodesList.0", "'fd00::/64': only IPv4 CIDRs are allowed")],
    ),
    (
        "felix named node port",
        res("FelixConfiguration", {"kubeNodePortRanges": ["http"]}, name="default"),
        [("spec.kubeNodePortRanges.0", "node port ranges cannot hold named ports")],
    ),
    (
        "felix region",
        res("FelixConfiguration", {"openstackRegion": "Region_1"}, name="default"),
        [("spec.openstackRegion", "must be a valid DNS label")],
    ),
    (
        "felix regex",
        res("FelixConfiguration", {"mtuIfacePattern": "(eth"}, name="default"),
        [
            (
                "spec.mtuIfacePattern",
                "invalid regular expression: missing ), unterminated subpattern at position 0",
            )
        ],
    ),
]


@pytest.mark.parametrize(
    ("resource", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_calico_rule(resource: Resource, expected: list[tuple[str, str]]) -> None:
    assert msgs(resource) == expected


@pytest.mark.parametrize(
    "text",
    ["has(a.io/b/c)", "example.com/a/b == 'x'", 'a == "it\'s"', "a == 'say \"hi\"'", "global()"],
)
def test_selectors_calico_accepts(text: str) -> None:
    selector.parse(text)


def test_global_in_a_policy_selector_is_refused() -> None:
    found = msgs(res("GlobalNetworkPolicy", {"selector": "global()"}))
    assert found == [("spec.selector", "global() can only be used in a rule's namespaceSelector")]


def test_protocol_as_a_numeric_string_is_the_number() -> None:
    # Calico's Uint8OrString.UnmarshalJSON reads a quoted number as the number:
    # "6" is protocol 6, "0" is protocol 0 (refused), "256" an unknown name.
    from reconciler.config import schema

    def doc(protocol: object) -> dict[str, object]:
        return {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "p"},
            "spec": {"ingress": [{"action": "Allow", "protocol": protocol}]},
        }

    for ok in ("6", "17", "255", "017", 6):
        assert not schema.check("GlobalNetworkPolicy", doc(ok)), ok
    for bad in ("0", "256", "-1", "6.0", " 6"):
        assert schema.check("GlobalNetworkPolicy", doc(bad)), bad


def test_only_calico_v331s_reserved_tiers_need_no_tier_resource():
    """v3.31 creates default, adminnetworkpolicy and baselineadminnetworkpolicy;
    a policy in kube-admin (a name later releases reserve) needs its Tier."""
    from reconciler.config.calico_rules import tier_needed

    for reserved in ("default", "adminnetworkpolicy", "baselineadminnetworkpolicy"):
        assert tier_needed(res("GlobalNetworkPolicy", {"tier": reserved}, name="x")) is None
    for ordinary in ("kube-admin", "kube-baseline"):
        assert tier_needed(res("GlobalNetworkPolicy", {"tier": ordinary}, name="x")) == ordinary
