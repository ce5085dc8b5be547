"""Plain scalars kubectl's and calicoctl's YAML 1.1 reads otherwise than the
loader's YAML 1.2: a boolean word where a string is required is refused,
saying to quote it; a float is told as written."""

from __future__ import annotations

import pytest

from reconciler.config.validate import validate_file

NP = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: np, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{enabled: {value}}}}}
  ingress:
  - ports:
    - port: {port}
"""
REF = "p.yaml:{}: KubernetesNetworkPolicy/shop/np: "


def rendered(text: str) -> list[str]:
    return [d.render() for d in validate_file("p.yaml", text.encode()).diagnostics]


@pytest.mark.parametrize(("word", "meant"), [("yes", "true"), ("On", "true"), ("N", "false"),
                                             ("OFF", "false")])  # fmt: skip
def test_a_yaml_1_1_boolean_as_a_label_value_is_refused_saying_to_quote_it(word, meant):
    assert rendered(NP.format(value=word, port=80)) == [
        REF.format(5) + f"spec.podSelector.matchLabels.enabled: {word} is the boolean {meant} to "
        f"kubectl and calicoctl (YAML 1.1), which refuse it here, but the string {word!r} here "
        f'(YAML 1.2): quote it, "{word}", for the string'
    ]


@pytest.mark.parametrize("value", ['"yes"', "'on'", "nO", "yess", "true-ish"])
def test_a_quoted_word_or_one_go_reads_as_a_string_is_a_string(value):
    assert rendered(NP.format(value=value, port=80)) == []


def test_a_boolean_word_in_an_admin_policy_subject_and_a_port_name():
    text = (
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
        "metadata: {name: a}\nspec:\n  priority: 1\n"
        "  subject: {namespaces: {matchLabels: {x: on}}}\n"
    )
    [message] = rendered(text)
    assert message.startswith(
        "p.yaml:6: KubernetesAdminNetworkPolicy/a: spec.subject.namespaces.matchLabels.x: on is "
        "the boolean true to kubectl"
    )
    [message] = rendered(NP.format(value="a", port="no"))
    assert message.startswith(REF.format(8) + "spec.ingress[0].ports[0].port: no is the boolean")


def test_a_boolean_word_in_a_boolean_field_is_told_once_what_to_write():
    text = (
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
        "spec: {cidr: 10.0.0.0/16, natOutgoing: yes}\n"
    )
    assert rendered(text) == [
        "p.yaml:4: IPPool/p: spec.natOutgoing: 'yes' is a string here, not a boolean (YAML 1.2 "
        "reads only true and false as booleans): write true"
    ]


@pytest.mark.parametrize("port", ["1e3", "80.0", "+1.5E2"])
def test_a_float_is_told_as_written(port):
    [message] = rendered(NP.format(value="a", port=port))
    assert message.startswith(REF.format(8) + f"spec.ingress[0].ports[0].port: {port} is not valid")
