"""The loader: values, line numbers, and every bad-input path with its message."""

import pytest

from reconciler.config.load import MAX_NODES_PER_DOCUMENT, load, resolve_plain

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
    # namespaced kinds default to the 'default' namespace, as calicoctl does
    assert np_.ref == "NetworkPolicy/default/np"
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
    assert f"more than {MAX_NODES_PER_DOCUMENT} nodes" in d.message
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
