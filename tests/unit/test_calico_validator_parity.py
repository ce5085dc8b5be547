"""Calico validator rules on whole files: catch-all `notNets`, selector label
keys and FelixConfiguration health timeout overrides. Each rule has a case
Calico accepts (no diagnostic) and one it refuses, with the exact line we
print (`file:line: Kind/name: field: message`)."""

from __future__ import annotations

import textwrap

import pytest

from reconciler.config.validate import validate_file


def lines(text: str) -> list[str]:
    result = validate_file("cfg.yaml", textwrap.dedent(text).lstrip().encode())
    return [d.render() for d in result.diagnostics]


HEAD = "apiVersion: projectcalico.org/v3\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"


def gnp(rule: str) -> str:
    """A policy whose one ingress rule (at line 8) holds `rule`."""
    body = "  selector: all()\n  ingress:\n    - action: Allow\n"
    return (
        HEAD.format(kind="GlobalNetworkPolicy", name="p") + body + textwrap.indent(rule, "      ")
    )


CATCH_ALL = [
    ("source:\n  notNets: [10.0.0.0/8]", []),
    ("destination:\n  nets: [0.0.0.0/0]", []),
    ("source:\n  notNets: ['::/1']", []),
    (
        "source:\n  notNets: [10.0.0.0/8, 0.0.0.0/0]",
        [
            "cfg.yaml:10: GlobalNetworkPolicy/p: spec.ingress[0].source.notNets[1]: "
            "catch-all CIDR '0.0.0.0/0' in notNets matches no traffic (a logical contradiction)"
        ],
    ),
    (
        "destination:\n  notNets:\n    - '::/0'",
        [
            "cfg.yaml:11: GlobalNetworkPolicy/p: spec.ingress[0].destination.notNets[0]: "
            "catch-all CIDR '::/0' in notNets matches no traffic (a logical contradiction)"
        ],
    ),
    (
        "destination:\n  notNets:\n    - '0::0/0'",
        [
            "cfg.yaml:11: GlobalNetworkPolicy/p: spec.ingress[0].destination.notNets[0]: "
            "catch-all CIDR '0::0/0' in notNets matches no traffic (a logical contradiction)"
        ],
    ),
]


@pytest.mark.parametrize(("rule", "expected"), CATCH_ALL)
def test_catch_all_not_nets(rule: str, expected: list[str]) -> None:
    assert lines(gnp(rule)) == expected


def test_catch_all_not_nets_in_a_profile() -> None:
    text = """
    apiVersion: projectcalico.org/v3
    kind: Profile
    metadata:
      name: pr
    spec:
      egress:
        - action: Deny
          destination:
            notNets: [0.0.0.0/0]
    """
    assert lines(text) == [
        "cfg.yaml:9: Profile/pr: spec.egress[0].destination.notNets[0]: "
        "catch-all CIDR '0.0.0.0/0' in notNets matches no traffic (a logical contradiction)"
    ]


SELECTORS = [
    ("has(Example.COM/app)", []),
    ("Foo/bar == 'x'", []),
    ("example.com/a/B/c in {'x'}", []),
    (
        "has(app:x)",
        [
            "cfg.yaml:6: GlobalNetworkPolicy/p: spec.selector: invalid selector: "
            "expected ')' at column 8"
        ],
    ),
    (f"{'k' * 600} == 'x'", []),
    (
        "a == 'x' && B",
        [
            "cfg.yaml:6: GlobalNetworkPolicy/p: spec.selector: invalid selector: "
            "expected operator after label 'B' at column 14"
        ],
    ),
]


@pytest.mark.parametrize(("selector", "expected"), SELECTORS)
def test_selector_label_keys(selector: str, expected: list[str]) -> None:
    text = f"""
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkPolicy
    metadata:
      name: p
    spec:
      selector: "{selector}"
    """
    assert lines(text) == expected


def test_resource_label_keys_keep_the_kubernetes_rules() -> None:
    """The selector grammar is looser than the labels a resource may carry."""
    text = """
    apiVersion: projectcalico.org/v3
    kind: GlobalNetworkSet
    metadata:
      name: s
      labels:
        Example.COM/app: web
    spec:
      nets: [10.0.0.0/8]
    """
    assert lines(text) == [
        "cfg.yaml:5: GlobalNetworkSet/s: metadata.labels: 'Example.COM/app' is not valid: "
        "a label key is an optional prefix (a DNS subdomain of at most 253 characters) and '/', "
        "then a name of 1-63 letters, digits, '-', '_' and '.' that starts and ends with "
        "a letter or digit"
    ]


def felix(overrides: str) -> str:
    """The default FelixConfiguration with `overrides` from line 7."""
    body = "  healthTimeoutOverrides:\n" + textwrap.indent(overrides, "    ")
    return HEAD.format(kind="FelixConfiguration", name="default") + body


HEALTH = [
    ("- name: InternalDataplaneMainLoop\n  timeout: 90s", []),
    ("- name: int dataplane_2\n  timeout: 1m30s", []),
    ("- name: a\n  timeout: '0'", []),
    ("- name: a\n  timeout: -0s", []),
    (
        "- name: ''\n  timeout: 30s",
        [
            "cfg.yaml:7: FelixConfiguration/default: spec.healthTimeoutOverrides[0].name: "
            "invalid health timeout override name '': "
            "letters, digits, '_', '-' and spaces, at least one"
        ],
    ),
    (
        "- name: a.b\n  timeout: 30s",
        [
            "cfg.yaml:7: FelixConfiguration/default: spec.healthTimeoutOverrides[0].name: "
            "invalid health timeout override name 'a.b': "
            "letters, digits, '_', '-' and spaces, at least one"
        ],
    ),
    (
        "- name: a\n  timeout: -1.5s",
        [
            "cfg.yaml:8: FelixConfiguration/default: spec.healthTimeoutOverrides[0].timeout: "
            "timeout '-1.5s' must not be negative"
        ],
    ),
    (
        "- timeout: 30s",
        [
            "cfg.yaml:7: FelixConfiguration/default: spec.healthTimeoutOverrides[0]: "
            "'name' is a required property"
        ],
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), HEALTH)
def test_health_timeout_overrides(overrides: str, expected: list[str]) -> None:
    assert lines(felix(overrides)) == expected


def test_health_timeout_must_be_a_duration() -> None:
    found = lines(felix("- name: a\n  timeout: soon"))
    assert len(found) == 1 and found[0].startswith(
        "cfg.yaml:8: FelixConfiguration/default: spec.healthTimeoutOverrides[0].timeout: "
    ), found


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("bpfEnabled: true", []),
        ("bpfConntrackMode: BPFProgram", []),
        *[
            (
                f"{name}: {value}",
                [f"cfg.yaml:6: FelixConfiguration/default: spec.{name}: unknown field '{name}'"],
            )
            for name, value in [
                ("nodeSelector", "\"role == 'gpu'\""),
                ("istioAmbientMode", "Enabled"),
                ("istioDSCPMark", "23"),
                ("bpfMaglevMaxServices", "100"),
                ("bpfMaglevMaxEndpointsPerService", "100"),
            ]
        ],
    ],
)
def test_felix_fields_newer_than_v3_31_are_refused(field: str, expected: list[str]) -> None:
    """Calico v3.32 introduced these (its release notes say so); v3.31 refuses them."""
    text = HEAD.format(kind="FelixConfiguration", name="default") + f"  {field}\n"
    assert lines(text) == expected
