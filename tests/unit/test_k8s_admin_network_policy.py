"""Kubernetes AdminNetworkPolicy and BaselineAdminNetworkPolicy as the
Calico GlobalNetworkPolicy Calico v3.31 makes of them. The conversion
tests are named after the cases of libcalico-go's adminnetworkpolicy_test.go
(and its update processor's) that they mirror, with the same inputs and
the same expected selectors, ports, actions, order and types."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.config.calico_rules import KUBERNETES_VIEW
from reconciler.config.k8s_admin_network_policy import ADMIN_KIND, BASELINE_KIND, to_calico
from reconciler.config.load import load, with_lines
from reconciler.config.model import Resource
from reconciler.config.source import from_paths
from reconciler.config.validate import validate_document, validate_file, validate_source

ORCH = "projectcalico.org/orchestrator == 'k8s'"
LABELS = {"matchLabels": {"label": "value", "label2": "value2"}}
NS_LABELS = "label == 'value' && label2 == 'value2'"


def anp(spec: dict[str, Any], name: str = "test.policy") -> Resource:
    body = {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "AdminNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    return Resource(ADMIN_KIND, name, None, body, "a.yaml", 1)


def banp(spec: dict[str, Any]) -> Resource:
    body = {
        "apiVersion": "policy.networking.k8s.io/v1alpha1",
        "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": spec,
    }
    return Resource(BASELINE_KIND, "default", None, body, "b.yaml", 1)


def converted(resource: Resource) -> dict[str, Any]:
    """The converted spec; the source is valid and so is every conversion,
    as a Calico GlobalNetworkPolicy."""
    assert validate_document(resource) == [], resource.body
    calico = to_calico(resource)
    # (written under its converted name it is calicoctl's view of the
    # Kubernetes object, refused as a document: judged on all else)
    found = [d for d in validate_document(calico) if KUBERNETES_VIEW not in d.message]
    assert found == [], calico.body
    return dict(calico.spec)


def ns_peer(labels: dict[str, str]) -> dict[str, Any]:
    return {"namespaces": {"matchLabels": labels}}


def pods_peer(pods: dict[str, str], namespaces: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "pods": {
            "namespaceSelector": {"matchLabels": namespaces or {}},
            "podSelector": {"matchLabels": pods},
        }
    }


PORT_80 = {"portNumber": {"port": 80}}


def test_should_parse_a_basic_k8s_admin_network_policy_to_a_global_network_policy():
    resource = to_calico(
        anp(
            {
                "priority": 100,
                "subject": {"namespaces": LABELS},
                "ingress": [
                    {
                        "name": "The first ingress rule",
                        "action": "Allow",
                        "ports": [PORT_80],
                        "from": [ns_peer({"k": "v", "k2": "v2"})],
                    }
                ],
            }
        )
    )
    assert resource.key == ("GlobalNetworkPolicy", None, "kanp.adminnetworkpolicy.test.policy")
    assert resource.body["apiVersion"] == "projectcalico.org/v3"
    assert resource.body["metadata"] == {"name": "kanp.adminnetworkpolicy.test.policy"}
    assert resource.spec == {
        "tier": "adminnetworkpolicy",
        "order": 100,
        "selector": ORCH,
        "namespaceSelector": NS_LABELS,
        "ingress": [
            {
                "action": "Allow",
                "protocol": "TCP",  # defaulted to TCP
                "source": {"namespaceSelector": "k == 'v' && k2 == 'v2'"},
                "destination": {"ports": [80]},
            },
        ],
        "types": ["Ingress"],
    }


def test_should_parse_a_k8s_admin_network_policy_with_no_ports():
    spec = converted(
        anp(
            {
                "priority": 200,
                "subject": {"namespaces": LABELS},
                "ingress": [{"action": "Pass", "from": [ns_peer({"k": "v", "k2": "v2"})]}],
                "egress": [{"action": "Deny", "to": [ns_peer({"k3": "v3", "k4": "v4"})]}],
            }
        )
    )
    # no protocol where no ports are given
    assert spec["ingress"] == [
        {"action": "Pass", "source": {"namespaceSelector": "k == 'v' && k2 == 'v2'"}}
    ]
    assert spec["egress"] == [
        {"action": "Deny", "destination": {"namespaceSelector": "k3 == 'v3' && k4 == 'v4'"}}
    ]
    assert spec["types"] == ["Ingress", "Egress"]


def test_should_parse_an_admin_network_policy_with_no_rules():
    spec = converted(anp({"priority": 500, "subject": {"namespaces": LABELS}}))
    assert spec["namespaceSelector"] == NS_LABELS and spec["order"] == 500
    assert "ingress" not in spec and "egress" not in spec


def test_should_parse_an_admin_network_policy_with_namespaces_subject_and_multiple_peers():
    spec = converted(
        anp(
            {
                "priority": 600,
                "subject": {"namespaces": LABELS},
                "ingress": [
                    {"action": "Pass", "from": [ns_peer({"k": "v"}), pods_peer({"k2": "v2"})]}
                ],
                "egress": [
                    {
                        "action": "Deny",
                        "to": [ns_peer({"k3": "v3"}), pods_peer({"k5": "v5"}, {"k4": "v4"})],
                    }
                ],
            }
        )
    )
    assert (spec["selector"], spec["namespaceSelector"]) == (ORCH, NS_LABELS)
    assert [r["source"] for r in spec["ingress"]] == [
        {"namespaceSelector": "k == 'v'"},
        {"selector": f"{ORCH} && k2 == 'v2'", "namespaceSelector": "all()"},
    ]
    assert [r["destination"] for r in spec["egress"]] == [
        {"namespaceSelector": "k3 == 'v3'"},
        {"selector": f"{ORCH} && k5 == 'v5'", "namespaceSelector": "k4 == 'v4'"},
    ]
    assert spec["types"] == ["Ingress", "Egress"]


def test_should_parse_an_admin_network_policy_with_pods_subject_and_multiple_peers():
    spec = converted(
        anp(
            {
                "priority": 600,
                "subject": {
                    "pods": {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"label2": "value2"}},
                    }
                },
                "ingress": [
                    {"action": "Pass", "from": [ns_peer({"k": "v"}), pods_peer({"k2": "v2"})]}
                ],
            }
        )
    )
    assert spec["namespaceSelector"] == "all()"
    assert spec["selector"] == f"{ORCH} && label2 == 'value2'"
    assert spec["ingress"][1]["source"]["selector"] == f"{ORCH} && k2 == 'v2'"


def test_should_parse_a_k8s_admin_network_policy_with_a_does_not_exist_expression():
    spec = converted(
        anp(
            {
                "priority": 600,
                "subject": {"pods": {"namespaceSelector": {}, "podSelector": LABELS}},
                "ingress": [
                    {
                        "action": "Allow",
                        "ports": [PORT_80],
                        "from": [
                            {
                                "pods": {
                                    "namespaceSelector": {},
                                    "podSelector": {
                                        "matchExpressions": [
                                            {"key": "toast", "operator": "DoesNotExist"}
                                        ]
                                    },
                                }
                            }
                        ],
                    }
                ],
            }
        )
    )
    assert spec["selector"] == f"{ORCH} && label == 'value' && label2 == 'value2'"
    assert spec["ingress"] == [
        {
            "action": "Allow",
            "protocol": "TCP",
            "source": {"selector": f"{ORCH} && ! has(toast)", "namespaceSelector": "all()"},
            "destination": {"ports": [80]},
        },
    ]
    assert spec["types"] == ["Ingress"]


def test_should_parse_an_admin_network_policy_with_multiple_peers_and_ports():
    """Protocol groups outside, peers inside: TCP 80 for each peer, then
    UDP 20-30 for each."""
    ports = [PORT_80, {"portRange": {"start": 20, "end": 30, "protocol": "UDP"}}]
    peers = [ns_peer({"k": "v"}), pods_peer({"k2": "v2"})]
    spec = converted(
        anp(
            {
                "priority": 600,
                "subject": {"namespaces": LABELS},
                "ingress": [{"action": "Pass", "ports": ports, "from": peers}],
            }
        )
    )
    assert [(r["protocol"], r["destination"]["ports"], r["source"]) for r in spec["ingress"]] == [
        ("TCP", [80], {"namespaceSelector": "k == 'v'"}),
        ("TCP", [80], {"selector": f"{ORCH} && k2 == 'v2'", "namespaceSelector": "all()"}),
        ("UDP", ["20:30"], {"namespaceSelector": "k == 'v'"}),
        ("UDP", ["20:30"], {"selector": f"{ORCH} && k2 == 'v2'", "namespaceSelector": "all()"}),
    ]


def test_ports_of_a_protocol_merge_into_ranges():
    ports = [PORT_80, {"portRange": {"start": 2000, "end": 3000}}, {"portNumber": {"port": 81}}]
    spec = converted(
        anp(
            {
                "priority": 1,
                "subject": {"namespaces": {}},
                "egress": [{"action": "Deny", "ports": ports, "to": [ns_peer({})]}],
            }
        )
    )
    assert spec["egress"] == [
        {
            "action": "Deny",
            "protocol": "TCP",
            "destination": {"ports": ["80:81", "2000:3000"], "namespaceSelector": "all()"},
        },
    ]


@pytest.mark.parametrize(
    "subject",
    [{"namespaces": {}}, {"pods": {"namespaceSelector": {}, "podSelector": {}}}],
    ids=["empty namespaces in Subject", "empty podSelector in Subject"],
)
def test_should_parse_an_admin_network_policy_with_an_empty_subject(subject):
    spec = converted(anp({"priority": 500, "subject": subject}))
    assert (spec["selector"], spec["namespaceSelector"]) == (ORCH, "all()")


def test_should_parse_an_admin_network_policy_with_a_rule_with_namespace_selector():
    spec = converted(
        anp(
            {
                "priority": 600,
                "subject": {
                    "pods": {
                        "namespaceSelector": {},
                        "podSelector": {"matchLabels": {"label": "value"}},
                    }
                },
                "ingress": [
                    {
                        "action": "Allow",
                        "from": [ns_peer({"namespaceRole": "dev", "namespaceFoo": "bar"})],
                    }
                ],
            }
        )
    )
    assert spec["selector"] == f"{ORCH} && label == 'value'"
    assert spec["ingress"][0]["source"] == {
        "namespaceSelector": "namespaceFoo == 'bar' && namespaceRole == 'dev'"
    }


def test_should_parse_an_admin_network_policy_with_a_rule_with_pod_selector():
    spec = converted(
        anp(
            {
                "priority": 600,
                "subject": {"namespaces": {}},
                "egress": [
                    {
                        "action": "Allow",
                        "to": [pods_peer({"namespaceRole": "dev", "namespaceFoo": "bar"})],
                    }
                ],
            }
        )
    )
    assert spec["egress"][0]["destination"] == {
        "selector": f"{ORCH} && namespaceFoo == 'bar' && namespaceRole == 'dev'",
        "namespaceSelector": "all()",
    }
    assert spec["types"] == ["Egress"]


def test_should_parse_an_admin_network_policy_with_a_rule_with_empty_selectors():
    spec = converted(
        anp(
            {
                "priority": 600,
                "subject": {"namespaces": {}},
                "ingress": [{"action": "Allow", "from": [{"namespaces": {"matchLabels": {}}}]}],
                "egress": [{"action": "Pass", "to": [pods_peer({})]}],
            }
        )
    )
    assert spec["ingress"][0]["source"] == {"namespaceSelector": "all()"}
    assert spec["egress"][0]["destination"] == {"selector": ORCH, "namespaceSelector": "all()"}


def test_should_parse_an_admin_network_policy_with_a_rule_with_both_namespaces_and_pods():
    spec = converted(
        anp(
            {
                "priority": 1000,
                "subject": {"namespaces": {}},
                "ingress": [
                    {
                        "action": "Deny",
                        "from": [
                            pods_peer(
                                {"podA": "B", "podC": "D"},
                                {"namespaceRole": "dev", "namespaceFoo": "bar"},
                            )
                        ],
                    }
                ],
            }
        )
    )
    assert spec["order"] == 1000
    assert spec["ingress"][0] == {
        "action": "Deny",
        "source": {
            "selector": f"{ORCH} && podA == 'B' && podC == 'D'",
            "namespaceSelector": "namespaceFoo == 'bar' && namespaceRole == 'dev'",
        },
    }


def test_should_parse_an_admin_network_policy_with_a_subject_with_match_expressions():
    spec = converted(
        anp(
            {
                "priority": 500,
                "subject": {
                    "namespaces": {
                        "matchExpressions": [{"key": "k", "operator": "In", "values": ["v1", "v2"]}]
                    }
                },
            }
        )
    )
    assert (spec["selector"], spec["namespaceSelector"]) == (ORCH, "k in { 'v1', 'v2' }")


def test_update_processor_an_admin_network_policy_with_no_rule_selectors():
    spec = converted(
        anp(
            {
                "priority": 1000,
                "subject": {"namespaces": {}},
                "egress": [{"action": "Allow", "to": [{"namespaces": {}}], "ports": [PORT_80]}],
            }
        )
    )
    assert spec == {
        "tier": "adminnetworkpolicy",
        "order": 1000,
        "selector": ORCH,
        "namespaceSelector": "all()",
        "types": ["Egress"],
        "egress": [
            {
                "action": "Allow",
                "protocol": "TCP",
                "destination": {"ports": [80], "namespaceSelector": "all()"},
            }
        ],
    }


def test_a_baseline_policy_is_kbanp_default_in_the_baseline_tier_without_an_order():
    resource = to_calico(
        banp(
            {
                "subject": {"namespaces": {}},
                "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                "egress": [{"action": "Allow", "to": [pods_peer({"app": "dns"})]}],
            }
        )
    )
    assert resource.key == ("GlobalNetworkPolicy", None, "kbanp.baselineadminnetworkpolicy.default")
    assert resource.spec == {
        "tier": "baselineadminnetworkpolicy",
        "selector": ORCH,
        "namespaceSelector": "all()",
        "ingress": [{"action": "Deny", "source": {"namespaceSelector": "all()"}}],
        "egress": [
            {
                "action": "Allow",
                "destination": {
                    "selector": f"{ORCH} && app == 'dns'",
                    "namespaceSelector": "all()",
                },
            }
        ],
        "types": ["Ingress", "Egress"],
    }


ANP_TEXT = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: guard
spec:
  priority: 7
  subject:
    namespaces: {matchLabels: {team: shop}}
  ingress:
  - name: no-other
    action: Deny
    from:
    - pods:
        namespaceSelector: {}
        podSelector: {matchLabels: {app: other}}
    ports:
    - portNumber: {port: 8080}
"""


def test_lines_point_at_the_kubernetes_fields():
    (resource,) = load(ANP_TEXT.encode(), "a.yaml").resources
    assert resource.kind == ADMIN_KIND and resource.namespace is None
    calico = to_calico(resource)
    assert (calico.file, calico.line) == ("a.yaml", 1)
    expected = {
        ("metadata", "name"): 4,
        ("spec", "order"): 6,
        ("spec", "selector"): 7,
        ("spec", "namespaceSelector"): 7,
        ("spec", "ingress", 0): 10,
        ("spec", "ingress", 0, "action"): 11,
        ("spec", "ingress", 0, "source"): 13,
        ("spec", "ingress", 0, "source", "selector"): 15,
        ("spec", "ingress", 0, "destination", "ports", 0): 16,
    }
    assert {path: calico.line_of(path) for path in expected} == expected


# ---------------------------------------------------------------- validation


def _diagnostics(kind: str, name: str, spec_yaml: str) -> list[str]:
    text = (
        f"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: {kind}\n"
        f"metadata: {{name: {name}}}\nspec:\n"
    ) + textwrap.indent(textwrap.dedent(spec_yaml), "  ")
    result = validate_file("p.yaml", text.encode())
    # an invalid policy is never converted: nothing of it could be enforced
    assert [r.kind for r in result.resources] == ["Kubernetes" + kind]
    return [d.render() for d in result.diagnostics]


SUBJECT = "subject: {namespaces: {}}\n"
REF = "p.yaml:{}: KubernetesAdminNetworkPolicy/p: "


@pytest.mark.parametrize(
    ("spec", "line", "expected"),
    [
        (SUBJECT, 4, "spec: 'priority' is a required property"),
        (
            "priority: 1001\n" + SUBJECT,
            5,
            "spec.priority: 1001 is greater than the maximum of 1000",
        ),
        ("priority: -1\n" + SUBJECT, 5, "spec.priority: -1 is less than the minimum of 0"),
        (
            "priority: 1\nsubject: {}\n",
            6,
            "spec.subject: must set exactly one of namespaces or pods",
        ),
        (
            "priority: 1\nsubject: {namespaces: {}, pods: {namespaceSelector: {}, podSelector: {}}}"
            "\n",
            6,
            "spec.subject: must set exactly one of namespaces or pods, not namespaces and pods",
        ),
        (
            "priority: 1\n" + SUBJECT + "ingress:\n- {action: Log, from: [{namespaces: {}}]}\n",
            8,
            "spec.ingress[0].action: 'Log' is not one of 'Allow', 'Deny', 'Pass'",
        ),
        (
            "priority: 1\n" + SUBJECT + "ingress:\n- {action: Allow, from: []}\n",
            8,
            "spec.ingress[0].from: [] should be non-empty",
        ),
        (
            "priority: 1\n" + SUBJECT + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
            "  ports: [{portRange: {start: 30, end: 20}}]\n",
            10,
            "spec.egress[0].ports[0].portRange.end: must be greater than start: 20 is not above 30 "
            "(a single port is a portNumber)",
        ),
        (
            "priority: 1\n" + SUBJECT + "egress:\n- action: Deny\n  to: [{namespaces: {}}]\n"
            "  ports: [{namedPort: http}]\n",
            10,
            "spec.egress[0].ports[0].namedPort: a named port is not enforced by this node: give "
            "the port's number as portNumber",
        ),
        (
            "priority: 1\n"
            + SUBJECT
            + "egress:\n- action: Allow\n  to: [{networks: [10.0.0.0/8]}]\n",
            9,
            "spec.egress[0].to[0].networks: a networks peer is not enforced by this node (Calico's "
            "conversion of it is not reproduced here): write the CIDRs as nets of a "
            "GlobalNetworkPolicy rule instead",
        ),
        (
            "priority: 1\n" + SUBJECT + "egress:\n- action: Deny\n  to: [{nodes: {}}]\n",
            9,
            "spec.egress[0].to[0].nodes: a nodes peer is not enforced by this node (Calico's "
            "conversion of it is not reproduced here): select the nodes' addresses with nets in a "
            "GlobalNetworkPolicy instead",
        ),
        (
            "priority: 1\nsubject: {namespaces: {matchExpressions: [{key: a, operator: In}]}}\n",
            6,
            "spec.subject.namespaces.matchExpressions[0].values: must be specified when operator "
            "is In: list the values the label may (In) or may not (NotIn) have",
        ),
        (
            "priority: 1\n" + SUBJECT + "ingress:\n- {action: Allow, from: [{nodes: {}}]}\n",
            8,
            "spec.ingress[0].from[0].nodes: a nodes peer is of egress rules only (to)",
        ),
    ],
)
def test_what_the_api_or_this_node_refuses_is_refused(spec, line, expected):
    found = _diagnostics("AdminNetworkPolicy", "p", spec)
    assert found == [REF.format(line) + expected]


def test_a_baseline_policy_is_named_default_and_allows_or_denies():
    found = _diagnostics(
        "BaselineAdminNetworkPolicy",
        "base",
        SUBJECT + "ingress:\n- {action: Pass, from: [{namespaces: {}}]}\n",
    )
    ref = "p.yaml:{}: KubernetesBaselineAdminNetworkPolicy/base: "
    assert found == [
        ref.format(7) + "spec.ingress[0].action: 'Pass' is not one of 'Allow', 'Deny'",
        ref.format(3) + "metadata.name: must be 'default', not 'base': a cluster has one "
        "BaselineAdminNetworkPolicy, named default",
    ]


def test_too_many_rules_are_refused():
    rules = "".join("- {action: Deny, from: [{namespaces: {}}]}\n" for _ in range(101))
    (message,) = _diagnostics(
        "AdminNetworkPolicy", "p", "priority: 1\n" + SUBJECT + "ingress:\n" + rules
    )
    assert message.startswith(REF.format(7) + "spec.ingress: ") and "is too long" in message


@pytest.mark.parametrize(
    "kind,ref,article",
    [("AdminNetworkPolicy", "KubernetesAdminNetworkPolicy", "an"),
     ("BaselineAdminNetworkPolicy", "KubernetesBaselineAdminNetworkPolicy", "a")],
)  # fmt: skip
def test_cluster_scoped_a_namespace_is_refused_saying_why(kind, ref, article):
    result = validate_file(
        "p.yaml",
        f"apiVersion: policy.networking.k8s.io/v1alpha1\n"
        f"kind: {kind}\nmetadata: {{name: default, namespace: a}}\n"
        f"spec: {{priority: 1, subject: {{namespaces: {{}}}}}}\n".encode(),
    )
    assert [d.render() for d in result.diagnostics if "namespace:" in d.render()] == [
        f"p.yaml:3: {ref}/default: metadata.namespace: {article} {kind} is cluster-scoped, "
        "in no namespace: remove metadata.namespace"
    ]


def test_an_unknown_field_of_a_subject_or_peer_is_told_once():
    """A subject or peer takes one field; an unknown one beside it is told
    as unknown, not also as one field too many."""
    result = validate_file(
        "p.yaml",
        b"apiVersion: policy.networking.k8s.io/v1alpha1\n"
        b"kind: AdminNetworkPolicy\nmetadata: {name: p}\n"
        b"spec:\n  priority: 1\n  subject: {namespaces: {}, foo: 1}\n"
        b"  ingress:\n  - {name: d, action: Deny, from: [{namespaces: {}, bar: 2}]}\n"
        b"  - {name: e, action: Deny, from: [{namespaces: {},\n"
        b"      pods: {podSelector: {}, namespaceSelector: {}}, baz: 3}]}\n",
    )
    ref = "p.yaml:{}: KubernetesAdminNetworkPolicy/p: spec."
    assert len(result.diagnostics) == 4
    assert {d.render() for d in result.diagnostics} == {
        ref.format(6) + "subject.foo: unknown field 'foo'",
        ref.format(8) + "ingress[0].from[0].bar: unknown field 'bar'",
        ref.format(10) + "ingress[1].from[0].baz: unknown field 'baz'",
        ref.format(9) + "ingress[1].from[0]: {namespaces: {}, ...} has too many properties",
    }


@pytest.mark.parametrize("kind", ["AdminNetworkPolicy", "BaselineAdminNetworkPolicy"])
def test_another_version_is_refused_naming_the_one_calico_enforces(kind):
    result = load(
        f"apiVersion: policy.networking.k8s.io/v1alpha2\nkind: {kind}\n"
        "metadata: {name: default}\n",
        "p.yaml",
    )
    assert result.resources == ()
    (d,) = result.diagnostics
    assert (d.line, d.path, d.message) == (
        1,
        "apiVersion",
        (
            f"{kind} of policy.networking.k8s.io/v1alpha2 is not a version Calico v3.31 enforces: "
            "write apiVersion: policy.networking.k8s.io/v1alpha1"
        ),
    )


CALICO_TWIN = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: kanp.adminnetworkpolicy.guard}
spec: {tier: adminnetworkpolicy, selector: all()}
"""


def test_a_calico_policy_named_as_a_converted_one_is_a_duplicate_naming_both_files(tmp_path):
    (tmp_path / "a-calico.yaml").write_text(CALICO_TWIN)
    (tmp_path / "b-anp.yaml").write_text(ANP_TEXT)
    result = validate_source(from_paths([str(tmp_path)]), None, jobs=1)
    assert [d.render() for d in result.errors] == [
        f"{tmp_path}/a-calico.yaml:3: GlobalNetworkPolicy/kanp.adminnetworkpolicy.guard: "
        "metadata.name: 'kanp.adminnetworkpolicy.guard' is calicoctl's view of the Kubernetes "
        "AdminNetworkPolicy guard (calicoctl refuses to create it): keep the "
        "policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy guard and delete this "
        "GlobalNetworkPolicy",
        f"{tmp_path}/b-anp.yaml:1: GlobalNetworkPolicy/kanp.adminnetworkpolicy.guard: "
        f"metadata.name: duplicate resource: also defined at {tmp_path}/a-calico.yaml:1 "
        "(kanp.adminnetworkpolicy.guard is also the name Calico gives the Kubernetes "
        "AdminNetworkPolicy guard: a projectcalico.org/v3 GlobalNetworkPolicy of that name is "
        "calicoctl's view of it; keep the policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy "
        "guard and delete the GlobalNetworkPolicy)",
    ]


def test_the_converted_policy_survives_the_validation_cache(tmp_path: Path):
    config, cache = tmp_path / "config", tmp_path / "cache"
    config.mkdir()
    (config / "a.yaml").write_text(ANP_TEXT)
    fresh = validate_source(from_paths([str(config)]), cache, jobs=1)
    cached = validate_source(from_paths([str(config)]), cache, jobs=1)
    assert cached.cached_files == 1 and fresh.ok and cached.ok
    (first,), (second,) = fresh.resources, cached.resources
    assert second == first and second.name == "kanp.adminnetworkpolicy.guard"
    assert with_lines(second).line_of(("spec", "order")) == 6


@pytest.mark.parametrize(
    "spec",
    [
        "[]",
        "{priority: x, subject: 5, ingress: x, egress: [1, [], {to: 5, ports: [x]}]}",
        "{subject: {pods: 3}, ingress: [{from: [{pods: {podSelector: 5}}], ports: [{portRange: "
        "{start: x, end: [1]}}]}]}",
        "{subject: {namespaces: {matchExpressions: [5, {operator: In, values: x}]}}}",
    ],
)
def test_odd_shapes_are_findings_never_a_crash(spec):
    result = validate_file(
        "p.yaml",
        (
            "apiVersion: policy.networking.k8s.io/v1alpha1\n"
            "kind: AdminNetworkPolicy\n"
            f"metadata: {{name: p}}\nspec: {spec}\n"
        ).encode(),
    )
    assert result.diagnostics and not result.ok
    assert [r.kind for r in result.resources] == [ADMIN_KIND]
