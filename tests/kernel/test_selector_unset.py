"""A rule side's selector field written "" constrains nothing in the datapath,
as in Calico (libcalico-go builds no selector of it): a `notSelector: ""`
is not "all but every endpoint", and `serviceAccounts: {}` does not want a
pod with a service account. Real traffic, applied twice."""

from __future__ import annotations

from tests.kernel.test_k8s_network_policy import dropped, explained
from tests.kernel.test_policy import BACK, FRONT, pods, policy, tcp

__all__ = ["pods"]  # the fixture, shared with test_policy

EMPTY_FIELDS = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: back-from-anyone, namespace: shop}
spec:
  selector: app == "back0"
  ingress:
  - action: Allow
    protocol: TCP
    source: {notSelector: "", serviceAccounts: {}}
    destination: {ports: [8080]}
"""


def test_empty_rule_side_fields_let_the_flow_the_rule_names_pass(pods):
    node = pods.node
    policy(node, "a", EMPTY_FIELDS)
    node.apply_converged()
    assert tcp(pods, FRONT, BACK.ip) == f"back0 {FRONT.ip}"  # front0 has no service account
    assert dropped(node, FRONT, BACK.ip, 9090)  # the policy still selects back0
    out = explained(node, "front0", f"{BACK.ip}:8080/tcp")
    assert "ingress: Allow by policy/shop/back-from-anyone ingress rule 1" in out, out
