"""Schema findings in the file's words: every unknown field of a mapping told
at its own line, null and other values said as YAML writes them, and what to
write instead of a null."""

from __future__ import annotations

import math
import re

import pytest

from reconciler.config.validate import validate_file
from reconciler.config.yaml_words import flow, scalar

GNP = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\n"
KNP = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k, namespace: d}\n"
SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
SLICE = (
    "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
    "metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\n"
)


def errors(text: str) -> list[tuple[int, str, str]]:
    """(line, field, message) of each error validating one file, in the
    order --validate prints them."""
    result = validate_file("f.yaml", text.encode())
    found = [(d.line, d.path, d.message) for d in result.diagnostics if d.severity.value == "error"]
    return sorted(found, key=lambda f: f[:2])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GNP + "spec:\n  selectr: all()\n  ingres:\n  - action: Allow\n",
            [
                (5, "spec.selectr", "unknown field 'selectr'; did you mean 'selector'?"),
                (6, "spec.ingres", "unknown field 'ingres'; did you mean 'ingress'?"),
            ],
        ),
        (
            KNP + "spec:\n  podSelecter: {}\n  ingres: []\n  zzz: 1\n",
            [
                (5, "spec.podSelecter", "unknown field 'podSelecter'; did you mean 'podSelector'?"),
                (6, "spec.ingres", "unknown field 'ingres'; did you mean 'ingress'?"),
                (7, "spec.zzz", "unknown field 'zzz'"),
            ],
        ),
        (
            SERVICE + "spec:\n  clusterIp: 10.96.0.3\n  prots: [{port: 80}]\n",
            [
                (5, "spec.clusterIp", "unknown field 'clusterIp'; did you mean 'clusterIP'?"),
                (6, "spec.prots", "unknown field 'prots'; did you mean 'ports'?"),
            ],
        ),
        (
            SLICE + "addressType: IPv4\nendpoints:\n- addresses: [10.65.0.2]\n"
            "  condition: {ready: true}\n  hostnam: a\n",
            [
                (7, "endpoints[0].condition",
                 "unknown field 'condition'; did you mean 'conditions'?"),
                (8, "endpoints[0].hostnam", "unknown field 'hostnam'; did you mean 'hostname'?"),
            ],
        ),
    ],
    ids=["calico", "k8s-network-policy", "service", "endpoint-slice"],
)  # fmt: skip
def test_every_unknown_field_of_a_mapping_is_told_at_its_own_line(text, expected):
    assert errors(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            KNP + "spec:\n  podSelector: null\n  ingress: null\n",
            [
                (5, "spec.podSelector",
                 "null is not a mapping: write {} for an empty selector, or leave the field out"),
                (6, "spec.ingress",
                 "null is not a list: write [] for an empty list, or leave the field out"),
            ],
        ),
        (
            # a Calico selector left null is not taken for "all()": it is refused
            GNP + "spec:\n  selector: null\n  order: null\n  doNotTrack: ~\n",
            [
                (5, "spec.selector",
                 "null is not a string: write a selector, or leave the field out"),
                (6, "spec.order", "null is not a number: write one, or leave the field out"),
                (7, "spec.doNotTrack",
                 "null is not a boolean: write true or false, or leave the field out"),
            ],
        ),
        (
            # an item is removed, not left out; an enum's values are offered,
            # and an empty value only where the schema takes it
            GNP + "spec:\n  types: [null]\n  egress: [null]\n"
            "  ingress:\n  - action: Allow\n    metadata: {annotations: {a: null}}\n",
            [
                (5, "spec.types[0]",
                 "null is not a string: write one of 'Ingress', 'Egress', or remove the item"),
                (6, "spec.egress[0]", "null is not a mapping: write one, or remove the item"),
                (9, "spec.ingress[0].metadata.annotations.a",
                 'null is not a string: write "" for an empty string, or leave the field out'),
            ],
        ),
        (
            # a required field cannot be left out
            SERVICE + "spec:\n  ports: [{name: a, port: null}]\n",
            [(5, "spec.ports[0].port", "null is not an integer: write one")],
        ),
    ],
    ids=["k8s-selector-and-list", "calico-scalars", "items-and-enums", "required"],
)  # fmt: skip
def test_null_is_refused_in_yamls_words_with_what_to_write(text, expected):
    assert errors(text) == expected


def test_values_in_messages_are_written_as_yaml_writes_them():
    text = GNP + (
        "spec:\n"
        "  selector: {a: 1}\n"
        "  doNotTrack: 1\n"
        "  types: []\n"
        "  egress:\n"
        "  - action: Allow\n"
        "    protocol: true\n"
        "    destination: {ports: [true, null, {a: [x, false]}]}\n"
    )
    found = errors(text)
    assert found == [
        (5, "spec.selector", "{a: 1} is not of type 'string'"),
        (6, "spec.doNotTrack", "1 is not of type 'boolean'"),
        (7, "spec.types", "[] should be non-empty"),
        (10, "spec.egress[0].protocol",
         "true is not valid: TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite, or an IP protocol number "
         "1-255 (which may be quoted)."),
        (11, "spec.egress[0].destination.ports",
         "rules that specify ports must set protocol to TCP, UDP or SCTP"),
        (11, "spec.egress[0].destination.ports[0]",
         "true is not valid: A port number, a 'min:max' range, or a named port."),
        (11, "spec.egress[0].destination.ports[1]",
         "null is not valid: A port number, a 'min:max' range, or a named port."),
        (11, "spec.egress[0].destination.ports[2]",
         "{a: ['x', false]} is not valid: A port number, a 'min:max' range, or a named port."),
    ]  # fmt: skip


def test_a_value_of_the_wrong_type_is_told_once():
    """Not also as outside the values of an enum it could not be compared with."""
    text = GNP + "spec:\n  egress:\n  - action: Allow\n    ipVersion: yes\n"
    assert errors(text) == [(7, "spec.egress[0].ipVersion", "'yes' is not of type 'integer'")]


# Python's words for YAML's values (None, True, a dict's quoted plain key):
# none may reach a message about a file.
PYTHON_REPR = re.compile(r"\b(None|True|False)\b|[{,] ?'[A-Za-z]+': ")


def test_no_python_repr_reaches_any_schema_message():
    values = ["null", "true", "false", "{a: null}", "[null, true]", "{'k': [x]}", "1.5"]
    fields = ["selector", "order", "types", "ingress", "doNotTrack", "serviceAccountSelector"]
    for value in values:
        for field in fields:
            text = GNP + f"spec:\n  {field}: {value}\n"
            for _, _, message in errors(text):
                assert not PYTHON_REPR.search(message), (field, value, message)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (80, "80"),
        (80.0, "80.0"),
        (math.inf, ".inf"),
        (-math.inf, "-.inf"),
        (math.nan, ".nan"),
        ("it's", "'it''s'"),
        ("a\\d", "'a\\d'"),
        ("a\nb", '"a\\nb"'),
    ],
)
def test_scalars_are_written_as_yaml_writes_them(value, written):
    assert scalar(value) == written


def test_compound_values_are_written_in_flow_style_and_cut_when_long():
    assert flow({"a": None, "b": [True, "x"], "yes": 1, "a b": {}}) == (
        "{a: null, b: [true, 'x'], 'yes': 1, 'a b': {}}"
    )
    long = flow({f"key{i}": i for i in range(40)})
    assert long.startswith("{key0: 0, key1: 1, ") and long.endswith(", ...}")
    assert len(long) < 80
    assert flow(list(range(100)), width=10) == "[0, 1, 2, 3, ...]"
