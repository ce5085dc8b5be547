"""A pod interface that no WorkloadEndpoint names (the CNI made it, its
endpoint has not reached the repository) is held closed, as Calico's
"Unknown interface" rule holds it: our programs run on it both ways and its
IPv4 traffic is dropped, so the pod can neither reach anyone nor pass as
another pod to defeat that one's source-based policy. When its endpoint
lands, the same filters stay and its policy takes over."""

from __future__ import annotations

import pytest

from sandbox.netns import Pod
from tests.kernel.conftest import PODS
from tests.kernel.test_reconcile import has_endpoint, tc_filters
from tests.kernel.test_spoofing import heard

pytestmark = pytest.mark.kernel

VIC, XTRA = PODS  # vic admits oth alone; xtra has no WorkloadEndpoint at first
OTH = Pod("oth", "10.65.0.30")

VIC_ADMITS_OTH = f"""\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {VIC.name}-from-oth, namespace: shop}}
spec:
  podSelector:
    matchLabels: {{app: {VIC.name}}}
  policyTypes: [Ingress]
  ingress:
  - from: [{{ipBlock: {{cidr: {OTH.ip}/32}}}}]
"""


def pings(node, sender: Pod, receiver: Pod) -> bool:
    sb = node.sandbox
    return sb.exec(sb.pod_ns(sender), "ping", "-c1", "-W1", receiver.ip).returncode == 0


def filters(node, iface: str) -> tuple[str, str]:
    return tc_filters(node, iface, "ingress"), tc_filters(node, iface, "egress")


def test_a_pod_interface_without_its_endpoint_passes_nothing_until_it_lands(node):
    node.sandbox.add_pod(OTH)
    node.felix()
    node.wep(VIC)
    node.wep(OTH)
    node.write("k8s-vic.yaml", VIC_ADMITS_OTH)
    rc, out, err = node.run("--plan")
    assert rc == 2, out + err
    assert (
        f"Warning: interface {XTRA.host_iface}: no WorkloadEndpoint on node 'node-1' names it: "
        "its traffic is dropped until one does"
    ) in out, out
    for direction in ("ingress", "egress"):
        assert f"+ tc/{XTRA.host_iface}/{direction}" in out
    for held_back in ("rcl_pol_ep", "rcl_wep_src"):  # no policy, no sources: fail closed
        assert f"{held_back}/{XTRA.host_iface}" not in out, out
    node.apply_converged()
    held = filters(node, XTRA.host_iface)
    assert all("rcl:tc@" in f for f in held), held
    assert has_endpoint(node, VIC.host_iface) and not has_endpoint(node, XTRA.host_iface)

    assert heard(node, OTH, VIC, OTH.ip) == OTH.ip  # vic's policy admits oth
    assert heard(node, XTRA, VIC, OTH.ip) == "TIMEOUT"  # xtra passing as oth: dropped
    assert heard(node, OTH, XTRA, OTH.ip) == "TIMEOUT"  # xtra receives nothing
    assert not pings(node, XTRA, OTH)

    node.wep(XTRA)  # its endpoint lands: entries added, its filters untouched
    rc, out, err = node.run("--plan")
    assert rc == 2, out + err
    assert f"tc/{XTRA.host_iface}" not in out and "rcl_ifstate" not in out, out
    assert f"+ map/rcl_pol_ep/{XTRA.host_iface}" in out, out
    assert f"+ map/rcl_wep_src/{XTRA.host_iface}" in out, out
    node.apply_converged()
    assert filters(node, XTRA.host_iface) == held  # the same filters, in the same slot
    assert has_endpoint(node, XTRA.host_iface)
    assert pings(node, XTRA, OTH)  # its namespace's profile allows it
    assert heard(node, OTH, XTRA, OTH.ip) == OTH.ip
    assert heard(node, XTRA, VIC, OTH.ip) == "TIMEOUT"  # now its sources are checked
