"""Kubernetes AdminNetworkPolicy and BaselineAdminNetworkPolicy from the
config repository, enforced by the datapath in Calico v3.31's tiers
around a namespace's NetworkPolicy, with real traffic between pods, and
explained the same way."""

from __future__ import annotations

from tests.kernel.test_k8s_network_policy import dropped, explained
from tests.kernel.test_policy import BACK, FRONT, OTHER, pods, tcp

__all__ = ["pods"]  # the fixture, shared with test_policy

# back0 (BACK) opens 8080 to front0 (FRONT) and back1 (OTHER) by its
# namespace's NetworkPolicy; the admin policy denies back1 before that and
# passes front0 on to it; the baseline denies front0 -> back1, which no
# other policy decides.
POLICIES = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: back0-open, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: back0}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: front0}}
    - podSelector: {matchLabels: {app: back1}}
    ports:
    - port: 8080
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: guard}
spec:
  priority: 10
  subject:
    pods:
      namespaceSelector: {}
      podSelector: {matchLabels: {app: back0}}
  ingress:
  - name: not-back1
    action: Deny
    from:
    - pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: back1}}}
  - name: front0-as-the-namespace-says
    action: Pass
    from:
    - pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: front0}}}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject:
    pods:
      namespaceSelector: {}
      podSelector: {matchLabels: {app: back1}}
  ingress:
  - action: Deny
    from:
    - pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: front0}}}
"""

ANP = "policy/kanp.adminnetworkpolicy.guard"
BANP = "policy/kbanp.baselineadminnetworkpolicy.default"


def test_admin_deny_beats_the_namespace_allow_pass_defers_to_it_baseline_denies_the_rest(pods):
    node = pods.node
    assert tcp(pods, OTHER, BACK.ip).startswith("back0")  # the profile allows all until then
    node.write("k8s-admin-policy.yaml", POLICIES)
    rc, out, err = node.run("--plan")
    assert rc == 2 and f"{ANP} ingress rule 1" in out and f"{BANP} ingress rule 1" in out, out + err
    node.apply_converged()  # applied twice: the second plan is "No changes."
    assert dropped(node, OTHER, BACK.ip, 8080)  # the admin Deny, though the namespace allows
    assert tcp(pods, FRONT, BACK.ip) == f"back0 {FRONT.ip}"  # Passed, then the namespace allows
    assert dropped(node, FRONT, OTHER.ip, 8080)  # the baseline's Deny
    assert tcp(pods, BACK, OTHER.ip).startswith("back1")  # the baseline passes: the profile
    # explain names the same rules, and the loaded programs agree
    out = explained(node, "back1", f"{BACK.ip}:8080/tcp")
    assert f"ingress: Deny by {ANP} ingress rule 1" in out and out.endswith("Verdict: Deny\n"), out
    out = explained(node, "front0", f"{BACK.ip}:8080/tcp")
    assert f"tier adminnetworkpolicy: Pass by {ANP} ingress rule 2" in out, out
    assert "ingress: Allow by policy/shop/knp.default.back0-open ingress rule 1" in out, out
    assert out.endswith("Verdict: Allow\n"), out
    out = explained(node, "front0", f"{OTHER.ip}:8080/tcp")
    assert f"ingress: Deny by {BANP} ingress rule 1" in out and out.endswith("Verdict: Deny\n"), out
