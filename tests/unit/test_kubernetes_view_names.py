"""A Calico policy under the name Calico gives a Kubernetes policy is
calicoctl's view of that Kubernetes object (what `calicoctl get
networkpolicy -A -o yaml` lists for it), refused as calicoctl refuses to
create it, with what to keep and what to delete."""

from __future__ import annotations

import pytest

from reconciler.config.validate import validate_file


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


EXPORTED = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: knp.default.web-egress
  namespace: prod-web
spec:
  selector: all()
  types: [Ingress]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: kanp.adminnetworkpolicy.foo
spec:
  tier: adminnetworkpolicy
  selector: all()
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: kbanp.baselineadminnetworkpolicy.default
spec:
  tier: baselineadminnetworkpolicy
  selector: all()
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: ossg.default.x
  namespace: prod-web
spec:
  selector: all()
"""


def test_calicoctls_views_of_kubernetes_policies_are_refused_naming_the_original():
    result = validate_file("a.yaml", EXPORTED.encode())
    assert [d.render() for d in result.diagnostics] == [
        "a.yaml:4: NetworkPolicy/prod-web/knp.default.web-egress: metadata.name: "
        "'knp.default.web-egress' is calicoctl's view of the Kubernetes NetworkPolicy "
        "prod-web/web-egress (calicoctl refuses to create it): keep the networking.k8s.io/v1 "
        "NetworkPolicy prod-web/web-egress and delete this NetworkPolicy",
        "a.yaml:13: GlobalNetworkPolicy/kanp.adminnetworkpolicy.foo: metadata.name: "
        "'kanp.adminnetworkpolicy.foo' is calicoctl's view of the Kubernetes AdminNetworkPolicy "
        "foo (calicoctl refuses to create it): keep the policy.networking.k8s.io/v1alpha1 "
        "AdminNetworkPolicy foo and delete this GlobalNetworkPolicy",
        "a.yaml:21: GlobalNetworkPolicy/kbanp.baselineadminnetworkpolicy.default: metadata.name: "
        "'kbanp.baselineadminnetworkpolicy.default' is calicoctl's view of the Kubernetes "
        "BaselineAdminNetworkPolicy default (calicoctl refuses to create it): keep the "
        "policy.networking.k8s.io/v1alpha1 BaselineAdminNetworkPolicy default and delete this "
        "GlobalNetworkPolicy",
    ]  # the OpenStack security group's name (ossg.default.) is Calico's to write


def test_a_view_of_a_kubernetes_policy_on_the_other_calico_kind_is_an_ordinary_name():
    """The prefix of one kind's conversion names nothing in the other."""
    text = EXPORTED.replace("name: knp.default.web-egress", "name: kanp.web-egress", 1)
    rendered = [d.render() for d in validate_file("a.yaml", text.encode()).diagnostics]
    assert not any("kanp.web-egress" in line and "view" in line for line in rendered)
