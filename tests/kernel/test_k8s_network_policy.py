"""A Kubernetes NetworkPolicy from the config repository, enforced by the
datapath as Calico enforces it (its knp.default.<name> policy), with real
traffic between pods, and explained the same way."""

from __future__ import annotations

import subprocess
import sys

from tests.kernel.test_policy import BACK, FRONT, OTHER, pods, tcp

__all__ = ["pods"]  # the fixture, shared with test_policy

# A TCP connect that must not succeed: a dropped SYN is never answered, so a
# second without a connection is the policy's drop (an allowed one takes ms).
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)"


def dropped(node, src, ip: str, port: int) -> bool:
    ns = node.sandbox.pod_ns(src)
    probe = node.sandbox.exec(ns, sys.executable, "-c", CONNECT, ip, str(port))
    return probe.returncode != 0 and "timed out" in probe.stderr

BACK_FROM_FRONT = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: back-from-front, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: back0}
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: front0}
    ports:
    - port: 8080
"""


def test_kubernetes_policy_allows_its_port_from_its_pods_and_drops_the_rest(pods):
    node = pods.node
    ns = node.sandbox.pod_ns(BACK)
    second = subprocess.Popen(  # back0 also serves 9090, which the policy does not open
        ["nsenter", f"--net=/run/netns/{ns}", sys.executable, "-m", "sandbox.echo", "back0",
         "9090"],  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
    )
    pods.servers.append(second)  # stopped with the others
    assert second.stdout is not None and second.stdout.readline().strip() == "ready"
    assert tcp(pods, OTHER, BACK.ip).startswith("back0")  # the profile allows all until then
    node.write("k8s-policy.yaml", BACK_FROM_FRONT)
    rc, out, err = node.run("--plan")
    assert rc == 2 and "policy/shop/knp.default.back-from-front ingress rule 1" in out, out + err
    node.apply_converged()  # applied twice: the second plan is "No changes."
    assert tcp(pods, FRONT, BACK.ip) == f"back0 {FRONT.ip}"
    assert dropped(node, OTHER, BACK.ip, 8080)  # back1 has no app=front0
    assert dropped(node, FRONT, BACK.ip, 9090)  # not the policy's port
    assert not dropped(node, FRONT, BACK.ip, 8080)  # (the probe can tell)
    assert tcp(pods, FRONT, OTHER.ip).startswith("back1")  # back1 is not selected
    # explain names the converted policy's rule, and the loaded programs agree
    out = explained(node, "front0", f"{BACK.ip}:8080/tcp")
    assert "ingress: Allow by policy/shop/knp.default.back-from-front ingress rule 1" in out, out
    assert out.endswith("Verdict: Allow\n"), out
    for src, port in (("back1", 8080), ("front0", 9090)):
        out = explained(node, src, f"{BACK.ip}:{port}/tcp")
        assert "back0 ingress: Deny by tier/default default action" in out, out
        assert out.endswith("Verdict: Deny\n"), out


def explained(node, src: str, dst: str) -> str:
    """`reconcile --explain --kernel`'s answer, every compiled program's
    verdict confirmed by the loaded one."""
    rc, out, err = node.run("--explain", "--from", src, "--to", dst, "--kernel")
    agreed = out.count("(agrees)") == out.count("compiled program") > 0
    assert rc == 0 and agreed and "DISAGREES" not in out, out + err
    return out
