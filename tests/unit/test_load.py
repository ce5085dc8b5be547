"""The loader: values, line numbers, and every bad-input path with its message."""

import pytest

from reconciler.config.limits import MAX_NODES_PER_FILE
from reconciler.config.load import load, resolve_plain

GOOD = """\
# comment
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-dns
spec:
  selector: all()
  order: 100
  ingress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53, "1000:2000"]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: np
spec: {}
---
"""


def test_multi_document_values_and_lines():
    result = load(GOOD, "p.yaml")
    assert result.diagnostics == ()
    gnp, np_ = result.resources
    assert gnp.ref == "GlobalNetworkPolicy/allow-dns"
    assert gnp.line == 2
    assert gnp.spec["order"] == 100
    assert gnp.spec["ingress"][0]["destination"]["ports"] == [53, "1000:2000"]
    assert gnp.lines[("spec", "ingress", 0, "protocol")] == 11
    assert gnp.line_of(("spec", "ingress", 0, "destination", "nope")) == 12
    # a namespaced kind without a namespace is not given "default" (its schema
    # refuses it: tests/unit/test_error_paths.py)
    assert np_.ref == "NetworkPolicy/np" and np_.namespace is None
    assert np_.line == 15


@pytest.mark.parametrize(
    "text,value",
    [
        ("yes", "yes"),
        ("true", True),
        ("~", None),
        ("0x1f", 31),
        ("0o17", 15),
        ("1.5", 1.5),
        ("010", 10),
        ("1:2", "1:2"),
        ("-3", -3),
    ],
)
def test_yaml_1_2_core_scalars(text, value):
    assert resolve_plain(text) == value


def _one(text):
    result = load(text, "bad.yaml")
    assert result.resources == ()
    assert len(result.diagnostics) == 1
    return result.diagnostics[0]


def test_duplicate_key_names_both_lines():
    d = _one("kind: Tier\nmetadata:\n  name: a\n  name: b\n")
    assert (d.line, d.path) == (4, "metadata.name")
    assert d.message == "duplicate key 'name' (first defined at line 3)"


def test_alias_bomb_is_refused_quickly():
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    d = _one("\n".join(rows) + "\n")
    assert f"more than {MAX_NODES_PER_FILE} values" in d.message
    assert "alias bomb" in d.message


def test_non_mapping_document():
    d = _one("- a\n- b\n")
    assert d.message == "a document must be a mapping (a Kubernetes-style object), not a list"


def test_unknown_kind_with_hint():
    d = _one("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolcy\nmetadata: {name: x}\n")
    assert d.line == 2 and d.path == "kind"
    assert "unknown kind 'GlobalNetworkPolcy'" in d.message
    assert "did you mean 'GlobalNetworkPolicy'?" in d.message
    assert d.resource == "GlobalNetworkPolcy/x"


@pytest.mark.parametrize(
    "api_version,kind,instead",
    [
        ("policy.networking.k8s.io/v1alpha2", "ClusterNetworkPolicy", "GlobalNetworkPolicy ("),
    ],
)
def test_kubernetes_network_policy_is_refused_as_not_enforced(api_version, kind, instead):
    """A security resource this node would not enforce is an error naming
    what to write instead, not a note or a Calico schema error."""
    d = _one(f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x, namespace: a}}\n")
    assert d.line == 1 and d.path == "apiVersion"
    assert d.message.startswith(f"{kind} of {api_version} is Kubernetes' network policy, which "
                                "this node does not enforce: "), d.message  # fmt: skip
    assert instead in d.message


def test_calico_crd_group_is_refused_with_the_api_to_write():
    d = _one("apiVersion: crd.projectcalico.org/v1\nkind: Tier\nmetadata: {name: x}\n")
    assert d.line == 1 and d.path == "apiVersion"
    assert d.message == (
        "crd.projectcalico.org/v1 is the group Calico stores its resources in: write them as "
        "projectcalico.org/v3, as calicoctl does"
    )


def test_missing_kind():
    d = _one("metadata: {name: x}\n")
    assert d.message == "missing 'kind'"


def test_syntax_error_has_line():
    d = _one("kind: Tier\nmetadata: [\n")
    assert d.line == 3 and d.message.startswith("YAML syntax:")


def test_merge_keys_and_custom_tags_refused():
    assert "merge keys" in _one("a: &x {b: 1}\nc:\n  <<: *x\n").message
    assert "unsupported YAML tag" in _one("kind: !secret Tier\n").message


def test_good_document_after_bad_one_still_loads():
    result = load(
        "- 1\n---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\n", "m.yaml"
    )
    assert [r.ref for r in result.resources] == ["Tier/t"]
    assert len(result.diagnostics) == 1


@pytest.mark.parametrize("opener,closer", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_refused_without_recursion(opener, closer):
    # 30,000 levels used to overflow the C stack inside the composer
    d = _one("kind: Tier\nspec: " + opener * 30_000 + closer * 30_000 + "\n")
    assert (d.line, d.message) == (2, "nesting deeper than 64 levels")


def test_long_integers_are_refused_before_converting():
    d = _one("kind: Tier\nspec:\n  order: " + "1" * 5000 + "\n")
    assert (d.line, d.message) == (3, f"integer {'1' * 20}... is out of range (more than 64 bits)")
    d = _one("kind: Tier\nx: 0x" + "f" * 17 + "\n")
    assert (d.line, d.message) == (2, f"integer 0x{'f' * 17} is out of range (more than 64 bits)")
    d = _one("kind: Tier\nx: -9223372036854775809\n")
    assert d.message == "integer -9223372036854775809 is out of range (more than 64 bits)"
    assert resolve_plain(str(2**63 - 1)) == 2**63 - 1
    with pytest.raises(ValueError):
        resolve_plain(str(2**63))


def test_alias_budget_is_per_file_not_per_document():
    # each document alone is under the limit, together they are not
    doc = "kind: Tier\na: &a [" + ", ".join(["x"] * 1000) + "]\nb: [" + ", ".join(["*a"] * 60)
    result = load("---\n".join([doc + "]\n"] * 4), "f.yaml")
    assert len(result.resources) == 3
    assert [d.message for d in result.diagnostics] == [
        f"file expands to more than {MAX_NODES_PER_FILE} values (a YAML alias bomb?)"
    ]


def test_scalar_list_and_file_limits():
    from reconciler.config import limits

    assert "longer than" in _one("kind: Tier\nx: " + "a" * (limits.MAX_SCALAR_BYTES + 1)).message
    items = ", ".join(["1"] * (limits.MAX_LIST_ITEMS + 1))
    assert _one("kind: Tier\nx: [" + items + "]\n").message == (
        f"list has more than {limits.MAX_LIST_ITEMS} items"
    )
    d = _one(b"#" * (limits.MAX_FILE_BYTES + 1))
    assert d.line == 1 and "more than the limit of 2 MiB" in d.message


def test_unknown_alias_and_non_scalar_keys():
    assert _one("kind: Tier\nx: *nope\n").message == "unknown alias '*nope'"
    assert _one("kind: Tier\n{a: 1}: 2\n").message == "mapping keys must be plain scalars"


def test_invalid_utf8_is_a_syntax_error_with_one_line_message():
    d = _one(b"kind: Tier\nx: \xff\n")
    assert d.message.startswith("YAML syntax: ") and "\n" not in d.message


def test_an_encoding_error_is_placed_on_its_line():
    """The reader's error carries a position, not a mark: its line is counted."""
    data = b'apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: t\nspec:\n'
    data += b'  x: "\xff"\n'
    (d,) = load(data, "t.yaml").diagnostics
    assert (d.line, d.message) == (6, "YAML syntax: unacceptable character #x00ff: invalid "
                                      "leading UTF-8 octet")  # fmt: skip


@pytest.mark.parametrize(
    "value,path,message",
    [
        ("order: 99999999999999999999999", "spec.order",
         "integer 99999999999999999999999 is out of range (more than 64 bits)"),
        ("ingress:\n  - destination: {ports: [80, 99999999999999999999999]}",
         "spec.ingress[0].destination.ports[1]",
         "integer 99999999999999999999999 is out of range (more than 64 bits)"),
        ("order: !!int 1e400", "spec.order", "value '1e400' is not a valid !!int"),
    ],
)  # fmt: skip
def test_a_scalar_the_loader_refuses_is_named_by_its_field_path(value, path, message):
    d = _one("kind: GlobalNetworkPolicy\nmetadata: {name: big}\nspec:\n  " + value + "\n")
    assert (d.resource, d.path, d.message) == ("GlobalNetworkPolicy/big", path, message)
    listed = _one("- 1\n- 99999999999999999999999\n")  # a list's item by its index
    assert (listed.line, listed.path) == (2, "[1]")


def _order(text):
    return load(f"kind: Tier\nmetadata: {{name: t}}\nspec:\n  order: {text}\n", "t.yaml")


CALICOCTL = "to calicoctl and kubectl (YAML 1.1: "


@pytest.mark.parametrize(
    "text,message",
    [
        ("010", f"010 is 8 {CALICOCTL}a leading 0 makes it octal) but 10 here (YAML 1.2): "
                "write 8 for the number they read, or 10"),
        ("-010", f"-010 is -8 {CALICOCTL}a leading 0 makes it octal) but -10 here (YAML 1.2): "
                 "write -8 for the number they read, or -10"),
        ("!!int 010", f"010 is 8 {CALICOCTL}a leading 0 makes it octal) but 10 here (YAML 1.2): "
                      "write 8 for the number they read, or 10"),
        ("0b101", f"0b101 is 5 {CALICOCTL}0b is binary) but the string '0b101' here (YAML 1.2): "
                  "write 5 for the number they read, or quote it for the string"),
        ("1_000", f"1_000 is 1000 {CALICOCTL}it drops '_' between digits) but the string "
                  "'1_000' here (YAML 1.2): write 1000 for the number they read, or quote "
                  "it for the string"),
        ("0X1F", f"0X1F is 31 {CALICOCTL}0x, 0o and 0b take capitals and a sign) but the string "
                 "'0X1F' here (YAML 1.2): write 31 for the number they read, or quote it "
                 "for the string"),
        ("-0x1F", f"-0x1F is -31 {CALICOCTL}0x, 0o and 0b take capitals and a sign) but the "
                  "string '-0x1F' here (YAML 1.2): write -31 for the number they read, or "
                  "quote it for the string"),
    ],
)  # fmt: skip
def test_a_number_calicoctl_reads_otherwise_is_refused_at_its_field(text, message):
    (d,) = _order(text).diagnostics
    assert (d.line, d.resource, d.path, d.message) == (4, "Tier/t", "spec.order", message)


@pytest.mark.parametrize(
    "text,value",
    [
        ('"010"', "010"),  # quoted: a string to both
        ("!!str 010", "010"),
        ("1:30", "1:30"),  # base 60: Go's yaml never read it as YAML 1.1 says
        ("09", 9),  # not octal: 9 to both
        ("007", 7),
        ("0o10", 8),
        ("0x1f", 31),
        ("12", 12),
        ("1e3", 1000.0),
    ],
)
def test_numbers_both_yaml_versions_read_alike_load(text, value):
    loaded = _order(text)
    assert loaded.diagnostics == ()
    assert loaded.resources[0].spec["order"] == value
