"""The node's own traffic to a pod of its own is never policed (as Calico:
kubelet's probes reach pods under a default-deny policy), while the same
flow from a pod is judged; and `--explain --kernel` says so."""

from __future__ import annotations

import sys

from tests.kernel.conftest import WEP
from tests.kernel.test_policy import BACK, FRONT, OTHER, pods, tcp
from tests.kernel.test_spoofing import heard_from

__all__ = ["pods"]  # the fixture, shared with test_policy

# back0 may neither receive nor send a new flow: Kubernetes' default deny,
# both ways, for back0 alone (the client pod keeps its own egress).
DENY_ALL_BACK = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-back0, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: back0}
  policyTypes: [Ingress, Egress]
"""


# The node's host endpoint lists an address the node does not hold (a
# planned one, a VIP elsewhere): the datapath does not take it for the node's.
HEP = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: node-1-eth0}}
spec: {{node: node-1, interfaceName: eth0, expectedIPs: ["{node_ip}", "{elsewhere}"]}}
"""
ELSEWHERE = "192.168.50.99"


def test_the_node_reaches_a_pod_its_policy_denies_to_every_pod(pods):
    node = pods.node
    sb = node.sandbox
    node.write("hep.yaml", HEP.format(node_ip=sb.node_ip, elsewhere=ELSEWHERE))
    node.write("k8s-deny.yaml", DENY_ALL_BACK)
    node.apply_converged()  # applied twice: the second plan is "No changes."
    # the greeting is back0's reply: it passes back0's egress deny as a reply
    assert tcp(pods, OTHER, BACK.ip).startswith("ERR")  # a pod is judged: dropped
    from_node = pods.request("tcp", BACK.ip, 8080, ns=sb.node)[0]
    assert from_node == f"back0 {sb.node_ip}", from_node
    assert sb.exec(sb.node, "ping", "-c1", "-W1", BACK.ip).returncode == 0
    # back0 still may not start a flow of its own, to a pod or to the node
    assert tcp(pods, BACK, OTHER.ip).startswith("ERR")

    rc, out, err = node.run("--explain", "--from", sb.node_ip, "--to", f"{BACK.ip}:8080/tcp",
                            "--kernel")  # fmt: skip
    assert rc == 0, out + err
    assert "Reverse-path" not in out, out  # the node's own packet arrives nowhere
    assert "never policed" in out and out.endswith("Verdict: Allow\n"), out
    rc, out, err = node.run("--explain", "--from", OTHER.ip, "--to", f"{BACK.ip}:8080/tcp",
                            "--kernel")  # fmt: skip
    assert rc == 0 and out.endswith("Verdict: Deny\n"), out + err
    # with --kernel the datapath's list of the node's addresses decides, not expectedIPs
    rc, out, err = node.run("--explain", "--from", ELSEWHERE, "--to", f"{BACK.ip}:8080/tcp",
                            "--kernel")  # fmt: skip
    assert rc == 0 and "never policed" not in out, out + err
    assert "shop/back0 ingress: Deny by tier/default default action" in out, out
    assert out.endswith("Verdict: Deny\n"), out


def test_a_packet_from_a_pod_with_the_nodes_address_is_still_judged(node):
    """The exemption is the node's own packets', not its address's: a pod
    allowed to send as the node's address (Felix's spoofing allowance, and
    the stack told to accept a local source there) is judged as any pod."""
    sb = node.sandbox
    node.felix()
    node.write("felix.yaml", (node.config / "felix.yaml").read_text()
               + "  workloadSourceSpoofing: Any\n")  # fmt: skip
    node.wep(BACK)
    node.write(f"wep-{FRONT.name}.yaml", WEP.format(name=FRONT.name, ip=FRONT.ip).replace(
        "  profiles:", f'  allowSpoofedSourcePrefixes: ["{sb.node_ip}/32"]\n  profiles:'
    ))  # fmt: skip
    node.apply_converged()
    accept = f"net.ipv4.conf.cali-{FRONT.name}.accept_local=1"
    assert sb.exec(sb.node, "sysctl", "-qw", accept).returncode == 0
    assert heard_from(node, sb.node_ip) == sb.node_ip  # it gets through without policy
    node.write("k8s-deny.yaml", DENY_ALL_BACK)
    node.apply_converged()
    assert heard_from(node, sb.node_ip) == "TIMEOUT"  # back0's ingress policy judged it


# One UDP datagram of 4000 bytes to back0's echo server, larger than the
# interfaces' MTU: it arrives in fragments, and only whole is it answered.
BIG_DATAGRAM = """\
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(2)
    s.sendto(b"x" * 4000, (sys.argv[1], 8080))
    try:
        print(s.recv(200).decode())
    except TimeoutError:
        print("TIMEOUT")
"""


def big_datagram(pods, netns: str) -> str:
    out = pods.node.sandbox.exec(netns, sys.executable, "-c", BIG_DATAGRAM, BACK.ip)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_nodes_own_fragmented_datagram_reaches_a_pod(pods):
    """A later fragment carries no ports, so it cannot be judged: the node's
    own pass (their first is never policed either), any other passes only
    as its flow's, where its first passed (tests/kernel/test_fragments.py)."""
    node = pods.node
    sb = node.sandbox
    node.apply_converged()  # the namespace's profile alone allows every flow
    assert big_datagram(pods, sb.node) == f"back0 {sb.node_ip}"
    # from outside, through the node: the fragments arrived on an interface
    assert pods.request("udp", BACK.ip, 8080, ns=sb.ext)[0] == f"back0 {sb.ext_ip}"
    assert big_datagram(pods, sb.ext) == f"back0 {sb.ext_ip}"
    node.write("k8s-deny.yaml", DENY_ALL_BACK)
    node.apply_converged()
    assert big_datagram(pods, sb.node) == f"back0 {sb.node_ip}"
    assert big_datagram(pods, sb.pod_ns(OTHER)) == "TIMEOUT"
