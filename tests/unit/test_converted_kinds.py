"""The registry of converted kinds (reconciler/config/converted_kinds.py):
each registered kind is loaded under its own kind and converted by
validation; anything else passes through as it is."""

from __future__ import annotations

import pytest

from reconciler.config import converted_kinds
from reconciler.config import k8s_admin_network_policy as anp
from reconciler.config import k8s_network_policy as knp
from reconciler.config.converted_kinds import CONVERTED, ConvertedKind
from reconciler.config.diagnostics import Severity
from reconciler.config.load import load, with_lines
from reconciler.config.validate import duplicate_findings, validate_file

# a small valid document of each registered Kubernetes kind
DOCUMENTS = {
    "NetworkPolicy": """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress: [{ports: [{port: 80}]}]
""",
    "AdminNetworkPolicy": """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: web}
spec:
  priority: 10
  subject: {namespaces: {}}
  ingress: [{name: deny-all, action: Deny, from: [{namespaces: {}}]}]
""",
    "BaselineAdminNetworkPolicy": """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {}}
  ingress: [{name: deny-all, action: Deny, from: [{namespaces: {}}]}]
""",
}

CALICO_POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: knp.default.web, namespace: shop}
spec: {selector: all(), types: [Ingress]}
"""

# each registered kind and the module that converts it, as that module names it
MODULE_OF = {
    knp.KIND: (knp.to_calico, knp.collision_hint),
    anp.ADMIN_KIND: (anp.to_calico, anp.collision_hint),
    anp.BASELINE_KIND: (anp.to_calico, anp.collision_hint),
}


def by_kind(kind: str) -> ConvertedKind:
    return next(c for c in CONVERTED if c.kind == kind)


def test_every_registered_kind_has_a_document_here():
    assert sorted(c.kubernetes_kind for c in CONVERTED) == sorted(DOCUMENTS)
    assert sorted(c.kind for c in CONVERTED) == sorted(MODULE_OF)


@pytest.mark.parametrize("entry", CONVERTED, ids=lambda c: c.kind)
def test_each_registered_kind_is_loaded_under_its_kind_and_converted(entry):
    text = DOCUMENTS[entry.kubernetes_kind]
    (loaded,) = load(text, "p.yaml").resources
    assert loaded.kind == entry.kind
    assert (loaded.namespace is not None) == entry.namespaced
    assert entry.to_calico is MODULE_OF[entry.kind][0]

    result = validate_file("p.yaml", text.encode())
    assert not [d for d in result.diagnostics if d.severity is Severity.ERROR], result.diagnostics
    (stored,) = result.resources
    assert stored == entry.to_calico(loaded)  # what validation stores is the module's conversion
    assert stored.kind == entry.calico_kind
    assert stored.name == entry.name_prefix + loaded.name == converted_kinds.converted_name(loaded)


@pytest.mark.parametrize("entry", CONVERTED, ids=lambda c: c.kind)
def test_each_registered_kind_refuses_another_version_of_its_api(entry):
    group = entry.api_version.split("/")[0]
    text = DOCUMENTS[entry.kubernetes_kind].replace(entry.api_version, f"{group}/v9")
    loaded = load(text, "p.yaml")
    assert not loaded.resources
    (error,) = loaded.diagnostics
    assert error.message == (
        f"{entry.kubernetes_kind} of {group}/v9 is not a version {entry.version_source}: write "
        f"apiVersion: {entry.api_version}"
    )


@pytest.mark.parametrize("entry", CONVERTED, ids=lambda c: c.kind)
def test_each_registered_kind_explains_a_name_its_conversion_takes(entry):
    name = entry.name_prefix + "web"
    hint = converted_kinds.collision_hint(entry.calico_kind, name)
    assert hint and entry.kubernetes_kind in hint and "calicoctl's view of it" in hint
    assert f"keep the {entry.api_version} {entry.kubernetes_kind} web and delete the" in hint
    assert hint == MODULE_OF[entry.kind][1](entry.calico_kind, name)


def test_the_registered_name_prefixes_cannot_take_each_others_names():
    """collision_hint asks the first entry whose prefix matches: no two overlap."""
    prefixes = [(c.calico_kind, c.name_prefix) for c in CONVERTED]
    for kind, prefix in prefixes:
        others = [p for k, p in prefixes if k == kind and p != prefix]
        assert not any(prefix.startswith(p) or p.startswith(prefix) for p in others)


def test_a_kind_not_registered_passes_through():
    (calico,) = load(CALICO_POLICY, "p.yaml").resources
    assert calico.kind == "NetworkPolicy"  # Calico's own kind, not converted
    assert converted_kinds.converted("projectcalico.org/v3", "NetworkPolicy") is None
    assert converted_kinds.converted(None, "NetworkPolicy") is None
    assert converted_kinds.enforced(calico) is calico
    assert converted_kinds.converted_name(calico) is None
    assert converted_kinds.unread_version("projectcalico.org/v3", "NetworkPolicy") is None
    assert converted_kinds.unread_version("networking.k8s.io/v1", "Ingress") is None
    assert converted_kinds.collision_hint("NetworkPolicy", "web") == ""
    assert converted_kinds.collision_hint("GlobalNetworkPolicy", "knp.default.web") == ""
    result = validate_file("p.yaml", CALICO_POLICY.encode())
    assert result.resources == (calico,)


def test_a_calico_policy_under_a_converted_name_is_told_why_it_collides():
    text = DOCUMENTS["NetworkPolicy"] + "---\n" + CALICO_POLICY
    stored = validate_file("p.yaml", text.encode()).resources
    idents = [(r.kind, r.namespace, r.name, r.file, r.line) for r in stored]
    (dup,) = duplicate_findings(idents)
    assert dup.message == (
        "duplicate resource: also defined at p.yaml:1 (knp.default.web is also the name Calico "
        "gives a Kubernetes NetworkPolicy web of the namespace: a projectcalico.org/v3 "
        "NetworkPolicy of that name is calicoctl's view of it; keep the networking.k8s.io/v1 "
        "NetworkPolicy web and delete the projectcalico.org/v3 one)"
    )


@pytest.mark.parametrize("entry", CONVERTED, ids=lambda c: c.kind)
def test_a_stored_conversion_finds_its_lines_in_the_file(tmp_path, entry):
    path = tmp_path / "p.yaml"
    path.write_text(DOCUMENTS[entry.kubernetes_kind])
    (stored,) = validate_file(str(path), path.read_bytes()).resources
    bare = type(stored)(stored.kind, stored.name, stored.namespace, stored.body, stored.file,
                        stored.line)  # fmt: skip
    found = with_lines(bare)
    assert found.key == stored.key and found.lines and found.lines == stored.lines
