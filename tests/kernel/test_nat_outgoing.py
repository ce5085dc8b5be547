"""IPPool natOutgoing with real traffic: a pod's UDP to a host outside every
pool (the sandbox's external namespace) arrives from the node's address;
to another pod it keeps its own. Turned off in Git, the chain goes and
sources are the pod's again. Rules are read back with iptables-nft-save."""

from __future__ import annotations

import socket
import subprocess

from reconciler.kernel.rtnetlink import entered
from tests.kernel.conftest import PODS

FRONT, BACK = PODS

POOL = (
    "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: pods}}\n"
    "spec: {{cidr: 10.65.0.0/16, natOutgoing: {nat}}}\n"
)


def source_seen(node, server_ns: str, server_ip: str) -> str:
    """The source address a UDP datagram from front0 arrives with at
    `server_ip` (a socket in `server_ns`)."""
    with entered(server_ns):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with entered(node.sandbox.pod_ns(FRONT)):
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server, client:
        server.bind((server_ip, 0))
        server.settimeout(5)
        client.sendto(b"hello", (server_ip, server.getsockname()[1]))
        _, (peer, _) = server.recvfrom(100)
        return peer


def nat_rules(node) -> str:
    return subprocess.run(["ip", "netns", "exec", node.sandbox.node, "iptables-nft-save", "-t",
                           "nat"], capture_output=True, text=True, check=True).stdout  # fmt: skip


def test_pods_leave_the_pools_with_the_nodes_address(node):
    sandbox = node.sandbox
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    node.write("pool.yaml", POOL.format(nat="true"))
    rc, out, err = node.run("--plan")
    assert rc == 2 and "+ iptables/nat-outgoing" in out, out + err
    node.apply_converged()  # (the rules read back equal: the next plan is "No changes.")
    assert source_seen(node, sandbox.ext, sandbox.ext_ip) == sandbox.node_ip
    assert source_seen(node, sandbox.pod_ns(BACK), BACK.ip) == FRONT.ip  # within the pool
    assert "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -j MASQUERADE --random-fully" in nat_rules(node)
    # a hand edit (the jump deleted) is drift, repaired by the next apply
    subprocess.run(["ip", "netns", "exec", sandbox.node, "iptables-nft", "-t", "nat", "-D",
                    "POSTROUTING", "-m", "comment", "--comment", "calico-reconciler: natOutgoing",
                    "-j", "RCL-NAT-OUTGOING"], check=True)  # fmt: skip
    assert source_seen(node, sandbox.ext, sandbox.ext_ip) == FRONT.ip
    rc, out, _ = node.run("--apply")
    assert rc == 0 and "~ iptables/nat-outgoing" in out, out
    assert source_seen(node, sandbox.ext, sandbox.ext_ip) == sandbox.node_ip
    # a rule put ahead of our jump (an ACCEPT) keeps pods from masquerade:
    # drift too, and the apply puts the jump first again
    subprocess.run(["ip", "netns", "exec", sandbox.node, "iptables-nft", "-t", "nat", "-I",
                    "POSTROUTING", "1", "-j", "ACCEPT"], check=True)  # fmt: skip
    assert source_seen(node, sandbox.ext, sandbox.ext_ip) == FRONT.ip
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "# after 1 rule(s) of POSTROUTING" in out, out
    rc, out, _ = node.run("--apply")
    assert rc == 0, out
    assert source_seen(node, sandbox.ext, sandbox.ext_ip) == sandbox.node_ip
    assert "-A POSTROUTING -j ACCEPT" in nat_rules(node)  # theirs stays, after ours
    rc, out, _ = node.run("--plan")
    assert rc == 0 and "No changes." in out, out
    # off in Git: the chain and its jump go
    node.write("pool.yaml", POOL.format(nat="false"))
    rc, out, _ = node.run("--apply")
    assert rc == 0 and "- iptables/nat-outgoing" in out, out
    assert "RCL-NAT-OUTGOING" not in nat_rules(node)
    assert source_seen(node, sandbox.ext, sandbox.ext_ip) == FRONT.ip
    rc, out, _ = node.run("--plan")
    assert rc == 0 and "No changes." in out, out


def test_bpf_disabled_takes_the_chain_away_with_everything_else(node):
    node.felix()
    node.wep(FRONT)
    node.write("pool.yaml", POOL.format(nat="true"))
    node.apply_converged()
    assert "RCL-NAT-OUTGOING" in nat_rules(node)
    node.felix(enabled=False)
    rc, out, _ = node.run("--apply")
    assert rc == 0 and "- iptables/nat-outgoing" in out, out
    assert "RCL-NAT-OUTGOING" not in nat_rules(node)


HOST_EGRESS_DENIED = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node-1-eth0, labels: {host-endpoint: data}}
spec: {node: node-1, interfaceName: eth0, expectedIPs: [192.168.50.1]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-egress-denied}
spec:
  selector: has(host-endpoint)
  types: [Egress]
  egress: [{action: Deny}]
"""


def test_a_masqueraded_pod_flow_is_forwarded_traffic_not_the_hosts(node):
    """natOutgoing's MASQUERADE gives a pod's packet the node's address
    before the host endpoint's tc egress sees it: it is still forwarded
    traffic, judged by applyOnForward policy (none here: it passes), not by
    the host's own egress policy, which denies the host's own packet."""
    sandbox = node.sandbox
    node.felix()
    node.wep(FRONT)
    node.write("pool.yaml", POOL.format(nat="true"))
    node.write("host.yaml", HOST_EGRESS_DENIED)
    node.apply_converged()
    assert source_seen(node, sandbox.ext, sandbox.ext_ip) == sandbox.node_ip
    with entered(sandbox.ext):
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with entered(sandbox.node):
        host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with server, host:
        server.bind((sandbox.ext_ip, 0))
        server.settimeout(2)
        host.sendto(b"from the host", (sandbox.ext_ip, server.getsockname()[1]))
        try:
            server.recvfrom(100)
            raise AssertionError("the host's own packet passed its egress Deny")
        except TimeoutError:
            pass
