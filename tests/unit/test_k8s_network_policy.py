"""Kubernetes NetworkPolicy: converted as Calico's converter converts it
(each case named after the converter test it mirrors), validated as the API
server validates it, and placed at the user's file:line throughout."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.config.calico_rules import KUBERNETES_VIEW
from reconciler.config.k8s_network_policy import simplify_ports, to_calico
from reconciler.config.load import load, with_lines
from reconciler.config.model import Resource
from reconciler.config.source import from_paths
from reconciler.config.validate import validate_document, validate_file, validate_source

ORCH = "projectcalico.org/orchestrator == 'k8s'"


def knp(spec: dict[str, Any], name: str = "test.policy", namespace: str = "default") -> Resource:
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return Resource("KubernetesNetworkPolicy", name, namespace, body, "k.yaml", 1)


def converted(spec: dict[str, Any]) -> dict[str, Any]:
    """The converted spec; every conversion is also a valid Calico policy."""
    resource = to_calico(knp(spec))
    # (written under its converted name it is calicoctl's view of the
    # Kubernetes object, refused as a document: judged on all else)
    found = [d for d in validate_document(resource) if KUBERNETES_VIEW not in d.message]
    assert found == [], resource.body
    return dict(resource.spec)


INGRESS = ["Ingress"]


def test_name_namespace_tier_and_order():
    resource = to_calico(knp({"podSelector": {}}))
    assert resource.key == ("NetworkPolicy", "default", "knp.default.test.policy")
    assert resource.body["apiVersion"] == "projectcalico.org/v3"
    assert resource.body["metadata"] == {"name": "knp.default.test.policy", "namespace": "default"}
    assert resource.spec == {"order": 1000, "selector": ORCH, "types": INGRESS}
    assert "tier" not in resource.spec  # the default tier, as Calico leaves it


def test_empty_pod_selector():
    assert converted({"podSelector": {}, "policyTypes": ["Ingress"]})["selector"] == ORCH


def test_pod_selector_match_expressions():
    spec = converted({"podSelector": {"matchExpressions": [
        {"key": "k", "operator": "In", "values": ["v1", "v2"]},
        {"key": "k2", "operator": "NotIn", "values": ["a"]},
        {"key": "k3", "operator": "Exists"},
        {"key": "k4", "operator": "DoesNotExist"},
    ], "matchLabels": {"z": "1", "label": "value"}}})  # fmt: skip
    assert spec["selector"] == (
        f"{ORCH} && label == 'value' && z == '1' && k in {{ 'v1', 'v2' }} && "
        "k2 not in { 'a' } && has(k3) && ! has(k4)"
    )


def test_prefixed_keys_and_empty_values_are_quoted_as_calico_quotes_them():
    spec = converted({"podSelector": {
        "matchLabels": {"app.kubernetes.io/name": "x_y.z", "a": ""},
        "matchExpressions": [{"key": "k8s.io/a-b", "operator": "NotIn", "values": ["", "Q"]}],
    }})  # fmt: skip
    assert spec["selector"] == (
        f"{ORCH} && a == '' && app.kubernetes.io/name == 'x_y.z' && k8s.io/a-b not in {{ '', 'Q' }}"
    )


def test_namespace_selector():
    spec = converted({"podSelector": {"matchLabels": {"label": "value"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"namespaceRole": "dev", "namespaceFoo": "bar"}}}
    ]}]})  # fmt: skip
    assert spec["selector"] == f"{ORCH} && label == 'value'"
    assert spec["ingress"] == [{"action": "Allow", "source": {
        "selector": ORCH, "namespaceSelector": "namespaceFoo == 'bar' && namespaceRole == 'dev'"
    }}]  # fmt: skip


def test_nil_namespace_selector_stays_in_the_namespace():
    spec = converted({"ingress": [{"from": [{"podSelector": {}}]}]})
    assert spec["ingress"] == [{"action": "Allow", "source": {"selector": ORCH}}]


def test_empty_namespace_selector_is_all():
    spec = converted({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {}}}]}]})
    assert spec["ingress"][0]["source"] == {"selector": ORCH, "namespaceSelector": "all()"}


def test_pod_and_namespace_selectors():
    spec = converted({"ingress": [{"from": [{
        "namespaceSelector": {"matchLabels": {"namespaceRole": "dev"}},
        "podSelector": {"matchLabels": {"podC": "D", "podA": "B"}},
    }]}]})  # fmt: skip
    assert spec["ingress"][0]["source"] == {
        "selector": f"{ORCH} && podA == 'B' && podC == 'D'",
        "namespaceSelector": "namespaceRole == 'dev'",
    }


def test_multiple_peers_and_ports_protocol_major():
    """Calico's "multiple peers and ports": UDP 90 and TCP 80 from two
    peers are four rules, TCP's first, each protocol's rules peer by peer."""
    spec = converted({"ingress": [{
        "ports": [{"port": 90, "protocol": "UDP"}, {"port": 80, "protocol": "TCP"}],
        "from": [{"podSelector": {"matchLabels": {"k": "v"}}},
                 {"podSelector": {"matchLabels": {"k2": "v2"}}}],
    }]})  # fmt: skip
    k, k2 = f"{ORCH} && k == 'v'", f"{ORCH} && k2 == 'v2'"
    assert [(r["protocol"], r["source"]["selector"], r["destination"]["ports"])
            for r in spec["ingress"]] == [  # fmt: skip
        ("TCP", k, [80]), ("TCP", k2, [80]), ("UDP", k, [90]), ("UDP", k2, [90])
    ]


def test_ports_only_default_to_tcp():
    spec = converted({"ingress": [{"ports": [{"port": 80}]}]})
    assert spec["ingress"] == [{"action": "Allow", "protocol": "TCP",
                                "destination": {"ports": [80]}}]  # fmt: skip


def test_port_range_only():
    spec = converted({"ingress": [{"ports": [{"protocol": "TCP", "port": 32000,
                                              "endPort": 32768}]}]})  # fmt: skip
    assert spec["ingress"][0]["destination"] == {"ports": ["32000:32768"]}


def test_end_port_equal_to_port_is_the_port():
    spec = converted({"ingress": [{"ports": [{"port": 80, "endPort": 80}]}]})
    assert spec["ingress"][0]["destination"] == {"ports": [80]}


def test_named_port_beside_one_number_keeps_its_order():
    """Calico's "! has(toast)" case: [80, foo] stays as written."""
    spec = converted({"ingress": [{
        "ports": [{"port": 80}, {"port": "foo"}],
        "from": [{"podSelector": {"matchExpressions": [
            {"key": "toast", "operator": "DoesNotExist"}]}}],
    }]})  # fmt: skip
    assert spec["ingress"] == [{
        "action": "Allow", "protocol": "TCP",
        "source": {"selector": f"{ORCH} && ! has(toast)"},
        "destination": {"ports": [80, "foo"]},
    }]  # fmt: skip


def test_ports_of_a_protocol_merge_into_ranges_named_first():
    assert simplify_ports([9090, 82, "foo", 80, "81:81", "8http"]) == [
        "foo", "8http", "80:82", 9090
    ]
    assert simplify_ports(["100:200", "150:300", 301]) == ["100:301"]
    assert simplify_ports([80]) == [80] and simplify_ports([80, 80]) == [80]


def test_an_empty_port_is_every_tcp_port_and_wins_over_single_ones():
    spec = converted({"ingress": [{"ports": [{"port": 80}, {}, {"protocol": "UDP", "port": 53}]}]})
    assert spec["ingress"] == [
        {"action": "Allow", "protocol": "TCP"},
        {"action": "Allow", "protocol": "UDP", "destination": {"ports": [53]}},
    ]


def test_no_ports_no_peers_is_everything():
    spec = converted({"ingress": [{}], "egress": [{}]})
    assert spec["ingress"] == [{"action": "Allow"}] and spec["egress"] == [{"action": "Allow"}]
    assert spec["types"] == ["Ingress", "Egress"]


def test_sctp():
    spec = converted({"egress": [{"ports": [{"protocol": "SCTP", "port": 9000}]}]})
    assert spec["egress"] == [{"action": "Allow", "protocol": "SCTP",
                               "destination": {"ports": [9000]}}]  # fmt: skip


def test_egress_peers_are_destinations_with_the_ports():
    spec = converted({"policyTypes": ["Egress"], "egress": [{
        "to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 5432}]}]})
    assert spec["egress"] == [{"action": "Allow", "protocol": "TCP", "destination": {
        "ports": [5432], "selector": f"{ORCH} && app == 'db'"}}]  # fmt: skip
    assert spec["types"] == ["Egress"] and "ingress" not in spec


def test_ip_block_cidr_and_except():
    spec = converted({"ingress": [{"from": [{"ipBlock": {
        "cidr": "192.168.0.5/16", "except": ["192.168.3.0/24", "192.168.4.0/24"]}}]}]})
    assert spec["ingress"][0]["source"] == {
        "nets": ["192.168.0.0/16"], "notNets": ["192.168.3.0/24", "192.168.4.0/24"]
    }
    v6 = converted({"egress": [{"to": [{"ipBlock": {"cidr": "2001:DB8::/32"}}]}]})
    assert v6["egress"][0]["destination"] == {"nets": ["2001:db8::/32"]}


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({}, ["Ingress"]),
        ({"egress": [{}]}, ["Ingress", "Egress"]),  # the API server's default
        ({"policyTypes": ["Egress"]}, ["Egress"]),
        ({"policyTypes": ["Egress", "Ingress"], "ingress": [{}]}, ["Ingress", "Egress"]),
    ],
)
def test_types_follow_policy_types_and_their_default(spec, types):
    assert converted(spec)["types"] == types


def test_lines_point_at_the_kubernetes_fields():
    text = textwrap.dedent("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata:
          name: web
          namespace: shop
        spec:
          podSelector:
            matchLabels: {app: web}
          ingress:
          - from:
            - podSelector: {matchLabels: {app: a}}
            - ipBlock:
                cidr: 10.0.0.0/8
            ports:
            - port: 80
        """)
    (resource,) = load(text, "k.yaml").resources
    assert resource.ref == "KubernetesNetworkPolicy/shop/web"
    calico = to_calico(resource)
    assert (calico.file, calico.line) == ("k.yaml", 1)
    assert calico.line_of(("metadata", "name")) == 4
    assert calico.line_of(("spec", "selector")) == 7
    assert calico.line_of(("spec", "ingress", 0, "source", "selector")) == 11
    assert calico.line_of(("spec", "ingress", 1, "source", "nets", 0)) == 13
    assert calico.line_of(("spec", "ingress", 1, "destination", "ports", 0)) == 14


# ---------------------------------------------------------------- validation


def _diagnostics(tmp_path: Path, spec_yaml: str) -> list[str]:
    text = ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            "metadata: {name: p, namespace: shop}\nspec:\n") + textwrap.indent(
        textwrap.dedent(spec_yaml), "  ")  # fmt: skip
    result = validate_file("p.yaml", text.encode())
    # an invalid policy is never converted: nothing of it could be enforced
    assert [r.kind for r in result.resources] == ["KubernetesNetworkPolicy"]
    return [d.render() for d in result.diagnostics]


REF = "p.yaml:{}: KubernetesNetworkPolicy/shop/p: "


@pytest.mark.parametrize(
    ("spec", "line", "expected"),
    [
        ("podSelector: {matchExpressions: [{key: a, operator: Equals, values: [x]}]}", 5,
         "spec.podSelector.matchExpressions[0].operator: 'Equals' is not one of 'In', 'NotIn', "
         "'Exists', 'DoesNotExist'"),
        ("podSelector: {matchExpressions: [{key: a, operator: In}]}", 5,
         "spec.podSelector.matchExpressions[0].values: must be specified when operator is In: "
         "list the values the label may (In) or may not (NotIn) have"),
        ("podSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}", 5,
         "spec.podSelector.matchExpressions[0].values: may not be specified when operator is "
         "Exists: remove values (or use In or NotIn)"),
        ("podSelector: {matchLabels: {app: 'a b'}}", 5,
         "spec.podSelector.matchLabels.app: 'a b' is not valid: a label value is empty or at "
         "most 63 letters, digits, '-', '_' and '.' that starts and ends with a letter or digit"),
        ("ingress:\n- ports:\n  - endPort: 90\n", 7,
         "spec.ingress[0].ports[0].endPort: may not be specified when port is not specified: "
         "port is the first port of the range"),
        ("ingress:\n- ports:\n  - {port: 90, endPort: 80}\n", 7,
         "spec.ingress[0].ports[0].endPort: must be greater than or equal to port: 80 is below 90"),
        ("egress:\n- ports:\n  - {port: http, endPort: 90}\n", 7,
         "spec.egress[0].ports[0].endPort: may not be specified when port is non-numeric "
         "('http'): a range is of port numbers"),
        ("ingress:\n- ports:\n  - {port: 0}\n", 7,
         "spec.ingress[0].ports[0].port: 0 is not valid: a port number (1-65535) or the name of "
         "a pod's port (at most 15 lower-case letters, digits and '-', with a letter); left "
         "out: every port of the protocol"),
        ("ingress:\n- ports:\n  - {protocol: ICMP}\n", 7,
         "spec.ingress[0].ports[0].protocol: 'ICMP' is not one of 'TCP', 'UDP', 'SCTP'"),
        ("ingress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/33}\n", 7,
         "spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.0/33' is not a valid CIDR (an address "
         "and a prefix length, such as 10.0.0.0/8 or 2001:db8::/32, without leading zeros)"),
        ("ingress:\n- from:\n  - ipBlock: {cidr: 010.0.0.0/8}\n", 7,
         "spec.ingress[0].from[0].ipBlock.cidr: '010.0.0.0/8' is not a valid CIDR (an address "
         "and a prefix length, such as 10.0.0.0/8 or 2001:db8::/32, without leading zeros)"),
        ("ingress:\n- from:\n  - ipBlock: {cidr: 10.0.0.1}\n", 7,
         "spec.ingress[0].from[0].ipBlock.cidr: '10.0.0.1' is not a valid CIDR: give a prefix "
         "length, such as 10.0.0.1/32"),
        ("ingress:\n- from:\n  - ipBlock:\n      cidr: 10.0.0.0/8\n      except: [11.0.0.0/24]\n",
         9, "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of cidr: "
         "11.0.0.0/24 is not inside 10.0.0.0/8 (or is all of it)"),
        ("ingress:\n- from:\n  - ipBlock:\n      cidr: 10.0.0.0/8\n      except: [10.0.0.0/8]\n",
         9, "spec.ingress[0].from[0].ipBlock.except[0]: must be a strict subset of cidr: "
         "10.0.0.0/8 is not inside 10.0.0.0/8 (or is all of it)"),
        ("ingress:\n- from:\n  - {}\n", 7,
         "spec.ingress[0].from[0]: must specify a peer: podSelector, namespaceSelector or "
         "ipBlock (leave the list out to allow every peer)"),
        ("ingress:\n- from:\n  - ipBlock: {cidr: 10.0.0.0/8}\n    podSelector: {}\n", 7,
         "spec.ingress[0].from[0]: may not specify both ipBlock and another peer: write the "
         "selectors as a peer of their own"),
        ("policyTypes: [Ingress, Egres]\n", 5,
         "spec.policyTypes[1]: 'Egres' is not one of 'Ingress', 'Egress'; did you mean 'Egress'?"),
        ("ingres: []\n", 5, "spec.ingres: unknown field 'ingres'; did you mean 'ingress'?"),
    ],
)
def test_what_kubernetes_refuses_is_refused(tmp_path, spec, line, expected):
    assert _diagnostics(tmp_path, spec) == [REF.format(line) + expected]


def test_rules_of_a_direction_policy_types_leaves_out_are_a_warning(tmp_path):
    result = validate_file("p.yaml", textwrap.dedent("""\
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: p, namespace: shop}
        spec:
          policyTypes: [Ingress]
          egress: [{}]
        """).encode())
    assert [d.render() for d in result.diagnostics] == [
        REF.format(6) + "spec.egress: warning: egress rules are ignored: policyTypes does not "
        "include Egress"
    ]
    (resource,) = result.resources  # a warning: converted and enforced
    assert resource.name == "knp.default.p" and resource.spec["types"] == ["Ingress"]


def test_namespace_is_required(tmp_path):
    result = validate_file("p.yaml", b"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                                     b"metadata: {name: p}\n")  # fmt: skip
    assert [d.render() for d in result.diagnostics] == [
        "p.yaml:3: KubernetesNetworkPolicy/p: metadata.namespace: required: a namespaced kind "
        "names its namespace (\"default\" is not assumed)"
    ]


@pytest.mark.parametrize(
    ("api_version", "kind", "expected"),
    [
        ("networking.k8s.io/v1beta1", "NetworkPolicy",
         "NetworkPolicy of networking.k8s.io/v1beta1 is not a version Kubernetes serves: write "
         "apiVersion: networking.k8s.io/v1"),
        ("extensions/v1beta1", "NetworkPolicy",
         "NetworkPolicy of extensions/v1beta1 is not a version Kubernetes serves: write "
         "apiVersion: networking.k8s.io/v1"),
        ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy",
         "ClusterNetworkPolicy of policy.networking.k8s.io/v1alpha2 is Kubernetes' network "
         "policy, which this node does not enforce: write it as a projectcalico.org/v3 "
         "GlobalNetworkPolicy (or list the file in ignorePaths of .reconcile.yaml if something "
         "else enforces it)"),
        ("crd.projectcalico.org/v1", "NetworkPolicy",
         "crd.projectcalico.org/v1 is the group Calico stores its resources in: write them as "
         "projectcalico.org/v3, as calicoctl does"),
    ],
)
def test_other_network_policy_apis_stay_refused(api_version, kind, expected):
    result = load(f"apiVersion: {api_version}\nkind: {kind}\n"
                  "metadata: {name: x, namespace: a}\n", "p.yaml")  # fmt: skip
    assert result.resources == ()
    (d,) = result.diagnostics
    assert (d.line, d.path, d.message) == (1, "apiVersion", expected)


def test_a_list_of_kubernetes_policies_is_read():
    text = textwrap.dedent("""\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: networking.k8s.io/v1
          kind: NetworkPolicy
          metadata: {name: a, namespace: shop}
          spec: {}
        """)
    (resource,) = validate_file("l.yaml", text.encode()).resources
    assert resource.key == ("NetworkPolicy", "shop", "knp.default.a") and resource.line == 4


# ---------------------------------------------------------------- the whole source


CALICO_TWIN = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: knp.default.web, namespace: shop}
spec: {selector: all()}
"""
KUBERNETES_WEB = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {}
"""


def test_a_calico_policy_named_as_a_converted_one_is_a_duplicate_naming_both_files(tmp_path):
    (tmp_path / "a-calico.yaml").write_text(CALICO_TWIN)
    (tmp_path / "b-k8s.yaml").write_text(KUBERNETES_WEB)
    (tmp_path / "c-other-ns.yaml").write_text(KUBERNETES_WEB.replace("shop", "other"))
    result = validate_source(from_paths([str(tmp_path)]), None, jobs=1)
    assert [d.render() for d in result.errors] == [
        f"{tmp_path}/a-calico.yaml:3: NetworkPolicy/shop/knp.default.web: metadata.name: "
        "'knp.default.web' is calicoctl's view of the Kubernetes NetworkPolicy shop/web "
        "(calicoctl refuses to create it): keep the networking.k8s.io/v1 NetworkPolicy shop/web "
        "and delete this NetworkPolicy",
        f"{tmp_path}/b-k8s.yaml:1: NetworkPolicy/shop/knp.default.web: metadata.name: duplicate "
        f"resource: also defined at {tmp_path}/a-calico.yaml:1 (knp.default.web is also the name "
        "Calico gives a Kubernetes NetworkPolicy web of the namespace: a projectcalico.org/v3 "
        "NetworkPolicy of that name is calicoctl's view of it; keep the networking.k8s.io/v1 "
        "NetworkPolicy web and delete the projectcalico.org/v3 one)",
    ]


def test_the_converted_policy_survives_the_validation_cache(tmp_path):
    """Validated once, then read from the cache: the same Calico policy, and
    its field lines found again in the file."""
    config, cache = tmp_path / "config", tmp_path / "cache"
    config.mkdir()
    (config / "k.yaml").write_text(KUBERNETES_WEB)
    fresh = validate_source(from_paths([str(config)]), cache, jobs=1)
    cached = validate_source(from_paths([str(config)]), cache, jobs=1)
    assert cached.cached_files == 1 and fresh.ok and cached.ok
    (first,), (second,) = fresh.resources, cached.resources
    assert second == first and second.name == "knp.default.web" and not second.lines
    assert with_lines(second).line_of(("spec", "selector")) == 5


@pytest.mark.parametrize(
    "kind",
    [
        "KubernetesNetworkPolicy",
        "KubernetesAdminNetworkPolicy",  # reconciler.config.k8s_admin_network_policy's
        "KubernetesBaselineAdminNetworkPolicy",
    ],
)
def test_the_schema_is_draft7_closed_and_compiles(kind):
    import jsonschema

    from reconciler.config.schema import _fast, schema_for
    from tests.unit.test_schemas import walk_objects

    schema = schema_for(kind)
    jsonschema.Draft7Validator.check_schema(schema)
    _fast(kind)
    for path, node in walk_objects(schema):
        assert str(node.get("$ref", "#/definitions/")).startswith("#/definitions/"), path
        if isinstance(node.get("properties"), dict) and node.get("type") == "object":
            assert node.get("additionalProperties") is False, path


@pytest.mark.parametrize(
    "spec",
    [
        "[]",
        "{ingress: x, egress: [1, [], {to: 5, ports: [x]}]}",
        "{ingress: [{from: [{ipBlock: {cidr: 5, except: 7}}], ports: [{port: [1], endPort: x}]}]}",
        "{podSelector: {matchExpressions: [5, {operator: In, values: x}]}, policyTypes: x}",
    ],
)
def test_odd_shapes_are_findings_never_a_crash(spec):
    result = validate_file("p.yaml", ("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                                      f"metadata: {{name: p, namespace: a}}\nspec: {spec}\n"
                                      ).encode())  # fmt: skip
    assert result.diagnostics and not result.ok
    assert [r.kind for r in result.resources] == ["KubernetesNetworkPolicy"]
