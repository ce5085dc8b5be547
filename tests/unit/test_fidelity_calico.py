"""What Calico accepts and refuses, where we used to differ: each case is a
whole file and the exact lines we print (`file:line: Kind/name: field:
message`), none for a document Calico accepts.

Read against projectcalico/calico: api/pkg/lib/numorstring (protocol.go,
uint8orstring.go), libcalico-go/lib/validator/v3/validator.go and
libcalico-go/lib/selector/tokenizer/tokenizer.go."""

from __future__ import annotations

import textwrap

import pytest

from reconciler.config import selector
from reconciler.config.validate import validate_file


def lines(text: str) -> list[str]:
    result = validate_file("cfg.yaml", textwrap.dedent(text).lstrip().encode())
    return [d.render() for d in result.diagnostics]


def gnp(rule: str, labels: str = "") -> str:
    """A policy whose one ingress rule starts at line 8 (line 9 with `labels`)."""
    meta = f"  labels:\n    {labels}\n" if labels else ""
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: p\n"
        + meta
        + "spec:\n  selector: all()\n  ingress:\n    - action: Allow\n"
        + textwrap.indent(rule, "      ")
    )


WEP = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node1-k8s-pod-eth0
  namespace: default
spec:
  node: node1
  orchestrator: k8s
  workload: pod
  endpoint: eth0
  interfaceName: cali1
  ipNetworks: [10.0.0.1/32]
  ports:
"""

HEP = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: h
spec:
  node: node1
  interfaceName: eth0
  ports:
"""

PORT_NAME_RULE = (
    "a port name is at most 15 lower-case letters, digits and '-', with a letter, "
    "no '--', not starting or ending with '-'"
)


# -- B2: a quoted protocol number is the number (Uint8OrString.UnmarshalJSON)


@pytest.mark.parametrize("protocol", ['"17"', "'6'", '"017"'])
def test_quoted_protocol_number_is_accepted(protocol: str) -> None:
    assert lines(gnp(f"protocol: {protocol}\ndestination:\n  ports: [53]")) == []
    assert lines(gnp('protocol: "255"')) == []


def test_quoted_number_out_of_range_is_refused() -> None:
    assert lines(gnp('protocol: "0"')) == [
        "cfg.yaml:9: GlobalNetworkPolicy/p: spec.ingress[0].protocol: '0' is not valid: "
        "TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite, or an IP protocol number 1-255 "
        "(which may be quoted)."
    ]


def test_quoted_icmp_number_does_not_allow_ports() -> None:
    assert lines(gnp('protocol: "1"\ndestination:\n  ports: [53]')) == [
        "cfg.yaml:11: GlobalNetworkPolicy/p: spec.ingress[0].destination.ports: "
        "rules that specify ports must set protocol to TCP, UDP or SCTP"
    ]


# -- B3: endpoint ports take TCP, UDP and SCTP by number (SupportsPorts)


@pytest.mark.parametrize("protocol", ["6", "17", "132", '"6"'])
def test_endpoint_port_protocol_by_number(protocol: str) -> None:
    port = f"    - name: web\n      protocol: {protocol}\n      port: 80\n"
    assert lines(WEP + port) == []
    assert lines(HEP + port) == []


def test_endpoint_port_protocol_without_ports_is_refused() -> None:
    port = "    - name: web\n      protocol: 1\n      port: 80\n"
    assert lines(WEP + port) == [
        "cfg.yaml:15: WorkloadEndpoint/default/node1-k8s-pod-eth0: spec.ports[0].protocol: "
        "1 is not valid: TCP, UDP or SCTP, by name or number (6, 17, 132; a number may be quoted)."
    ]


# -- C: what Calico refuses


def test_label_key_name_over_63_characters() -> None:
    key = "example.com/" + "a" * 64
    assert lines(gnp("protocol: TCP", labels=f"{key}: x")) == [
        f"cfg.yaml:5: GlobalNetworkPolicy/p: metadata.labels: '{key}' is not valid: "
        "a label key is an optional prefix (a DNS subdomain of at most 253 characters) and '/', "
        "then a name of 1-63 letters, digits, '-', '_' and '.' that starts and ends with "
        "a letter or digit"
    ]
    assert lines(gnp("protocol: TCP", labels=f"example.com/{'a' * 63}: x")) == []


def test_numeric_icmp_protocol_with_icmp_fields() -> None:
    # validateRule compares the protocol with ProtocolFromString("ICMP").
    assert lines(gnp("protocol: 1\nicmp:\n  type: 8")) == [
        "cfg.yaml:10: GlobalNetworkPolicy/p: spec.ingress[0].icmp: rules that specify ICMP "
        "fields must set protocol to ICMP or ICMPv6 by name, not the number 1"
    ]
    assert lines(gnp("protocol: ICMP\nicmp:\n  type: 8")) == []


def test_workload_endpoint_port_without_a_name() -> None:
    assert lines(WEP + "    - protocol: TCP\n      port: 80\n") == [
        "cfg.yaml:14: WorkloadEndpoint/default/node1-k8s-pod-eth0: spec.ports[0].name: "
        "a port needs a name unless it sets a hostPort"
    ]
    assert lines(WEP + "    - protocol: TCP\n      port: 80\n      hostPort: 8080\n") == []


def test_endpoint_port_name_with_a_double_dash() -> None:
    port = "    - name: a--b\n      protocol: TCP\n      port: 80\n"
    assert lines(WEP + port) == [
        "cfg.yaml:14: WorkloadEndpoint/default/node1-k8s-pod-eth0: spec.ports[0].name: "
        f"'a--b' is not valid: {PORT_NAME_RULE}"
    ]
    assert lines(HEP + port) == [
        f"cfg.yaml:9: HostEndpoint/h: spec.ports[0].name: 'a--b' is not valid: {PORT_NAME_RULE}"
    ]


def test_rule_metadata_annotation_keys() -> None:
    rule = 'metadata:\n  annotations:\n    "Bad Key!": x\n    good/key: v'
    assert lines(gnp(rule)) == [
        "cfg.yaml:11: GlobalNetworkPolicy/p: spec.ingress[0].metadata.annotations.Bad Key!: "
        "invalid annotation key 'Bad Key!': an optional DNS-subdomain prefix and '/', "
        "then at most 63 letters, digits, '-', '_' or '.'"
    ]


@pytest.mark.parametrize("field", ["failsafeInboundHostPorts", "failsafeOutboundHostPorts"])
def test_failsafe_protocol_is_upper_case(field: str) -> None:
    text = f"""\
    apiVersion: projectcalico.org/v3
    kind: FelixConfiguration
    metadata:
      name: default
    spec:
      {field}:
        - protocol: tcp
          port: 22
    """
    assert lines(text) == [
        f"cfg.yaml:7: FelixConfiguration/default: spec.{field}[0].protocol: "
        "'tcp' is not one of 'TCP', 'UDP', 'SCTP'; did you mean 'TCP'?"
    ]


# -- B4: selector spellings Calico's tokenizer reads


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("y notin {'b'}", selector.NotIn("y", frozenset({"b"}))),
        ("y not\t in{'b'}", selector.NotIn("y", frozenset({"b"}))),
        ("z startswith 'c'", selector.StartsWith("z", "c")),
        ("z starts  with'c'", selector.StartsWith("z", "c")),
        ("e endswith'x'", selector.EndsWith("e", "x")),
        ("c contains'x'", selector.Contains("c", "x")),
        ("i in{'a','b',}", selector.In("i", frozenset({"a", "b"}))),
        ("has( k ) && all( ) || global( )", None),
    ],
)
def test_selector_operators_as_calico_tokenizes_them(
    text: str, expected: selector.Selector | None
) -> None:
    parsed = selector.parse(text)
    if expected is not None:
        assert parsed == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("z startsx 'c'", "expected 'with' after 'starts' at column 9"),
        ("y notn {'b'}", "expected 'in' after 'not' at column 6"),
        ("y inx {'b'}", "expected '{' at column 5"),
        ("c containsx 'y'", "expected quoted string at column 11"),
        ("a has(b)", "expected operator after label 'a' at column 3"),
    ],
)
def test_selector_operator_spellings_calico_refuses(text: str, message: str) -> None:
    with pytest.raises(selector.SelectorError) as caught:
        selector.parse(text)
    assert str(caught.value) == message


# -- D: selector error columns count from 1


def test_selector_error_column_is_one_based() -> None:
    text = """\
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata:
      name: p
    spec:
      selector: app = 'a'
    """
    assert lines(text) == [
        "cfg.yaml:6: GlobalNetworkPolicy/p: spec.selector: invalid selector: "
        "expected '==' at column 5"
    ]


# -- C: a policy's tier must exist (a whole-source check; see calico_rules.missing_tiers)


def test_policy_in_a_tier_no_tier_resource_names() -> None:
    from reconciler.config.calico_rules import missing_tiers
    from reconciler.config.load import load

    text = textwrap.dedent(
        """\
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata:
          name: security.a
        spec:
          tier: security
        ---
        apiVersion: projectcalico.org/v3
        kind: NetworkPolicy
        metadata:
          name: platform.b
          namespace: ns
        spec:
          tier: platform
        ---
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata:
          name: adminnetworkpolicy.c
        spec:
          tier: adminnetworkpolicy
        ---
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata:
          name: d
        spec:
          selector: all()
        """
    )
    resources = load(text.encode(), "cfg.yaml").resources
    found = [
        (r.ref, r.line_of(f.path), f.message)
        for r, f in missing_tiers(resources, ["security"])
    ]
    assert found == [
        (
            "NetworkPolicy/ns/platform.b",
            14,
            "tier 'platform' does not exist: no Tier resource is named 'platform' "
            "(Calico v3.31 creates only 'default', 'adminnetworkpolicy' and "
            "'baselineadminnetworkpolicy' itself)",
        )
    ]


def test_label_value_rule_in_words() -> None:
    assert lines(gnp("protocol: TCP", labels="app: -web")) == [
        "cfg.yaml:6: GlobalNetworkPolicy/p: metadata.labels.app: '-web' is not valid: "
        "a label value is empty or at most 63 letters, digits, '-', '_' and '.' "
        "that starts and ends with a letter or digit"
    ]
    assert lines(gnp("protocol: TCP", labels=f"app: {'a' * 64}")) == [
        f"cfg.yaml:6: GlobalNetworkPolicy/p: metadata.labels.app: '{'a' * 64}' is not valid: "
        "a label value is empty or at most 63 letters, digits, '-', '_' and '.' "
        "that starts and ends with a letter or digit"
    ]


def test_validation_refuses_a_policy_whose_tier_no_file_defines(tmp_path, capsys, monkeypatch):
    """The check spans files (the Tier may live in another one) and holds on
    a second run that answers every file from the validation cache."""
    from reconciler.cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "p.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
        "metadata: {name: platform.x}\nspec:\n  tier: platform\n  selector: all()\n"
    )
    message = (
        f"{cfg / 'p.yaml'}:5: GlobalNetworkPolicy/platform.x: spec.tier: tier 'platform' does "
        "not exist: no Tier resource is named 'platform' (Calico v3.31 creates only 'default', "
        "'adminnetworkpolicy' and 'baselineadminnetworkpolicy' itself)\n"
    )
    for _ in range(2):  # the second from the cache
        assert main(["--validate", str(cfg)]) == 1
        assert capsys.readouterr().out == message
    (cfg / "tier.yaml").write_text(
        "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: platform}\n"
        "spec: {order: 100}\n"
    )
    assert main(["--validate", str(cfg)]) == 0
