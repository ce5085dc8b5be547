"""--explain --kernel against real traffic where a flow from outside meets
the host endpoint it arrives at: to a cluster IP or external IP whose
backend is on another node (the endpoint's applyOnForward policy judges it
before it is masqueraded and sent on), and to an address of the node that
no HostEndpoint's expectedIPs list (the endpoint of the interface that
holds it judges it, as the datapath does)."""

from __future__ import annotations

import subprocess
import sys

from tests.kernel.test_host import HEP, HERE, Host
from tests.kernel.test_masquerade import NODE1_TO_NODE2, remote, service  # noqa: F401
from tests.kernel.test_services import BACKENDS, svc  # noqa: F401

EXTRA = "192.168.50.11"  # a second address on the node's eth0, in no expectedIPs
ALLOWED = "192.168.50.3"  # a second outside client; the first (192.168.50.2) is denied
PRE_DENIED = "192.168.50.4"  # a third, denied by preDNAT policy

FORWARD_DENY = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-one-client}
spec:
  order: 50
  selector: role == "uplink"
  applyOnForward: true
  types: [Ingress]
  ingress:
  - action: Deny
    source: {nets: [192.168.50.2/32]}
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre-deny-one-client}
spec:
  selector: role == "uplink"
  preDNAT: true
  applyOnForward: true
  types: [Ingress]
  ingress:
  - action: Deny
    source: {nets: [192.168.50.4/32]}
"""


def explained(node, src: str, dst: str) -> str:
    rc, out, err = node.run("--explain", "--from", src, "--to", dst, "--kernel")
    assert rc == 0, out + err
    return out


def test_explain_judges_what_arrives_at_the_host_endpoint_as_the_datapath_does(
    remote,  # noqa: F811
):
    node = remote.node
    sb = node.sandbox
    host = Host(node)
    try:
        subprocess.run(["ip", "-n", sb.node, "addr", "add", f"{EXTRA}/24", "dev", "eth0"],
                       check=True)  # fmt: skip
        for client in (ALLOWED, PRE_DENIED):
            subprocess.run(["ip", "-n", sb.ext, "addr", "add", f"{client}/24", "dev", "ext0"],
                           check=True)  # fmt: skip
        for port in (22, 8080):
            host.serve_host(port)
        service(remote)  # one backend, on node-2: 10.96.0.70:80 and external IP 10.99.0.7:80
        node.write("hep.yaml", HEP)
        node.write("forward.yaml", FORWARD_DENY)
        node.apply_converged()

        def from_client(src: str, dst: str, port: int) -> str:
            out = sb.exec(sb.ext, sys.executable, str(HERE / "bind_client.py"), src, dst,
                          str(port)).stdout  # fmt: skip
            return out.strip()

        # cluster and external IP, backend elsewhere: the forward policy decides
        for vip in ("10.96.0.70", "10.99.0.7"):
            assert from_client("192.168.50.2", vip, 80).startswith("ERR"), vip
            assert from_client(ALLOWED, vip, 80) == f"remote {NODE1_TO_NODE2}", vip
            for src, verdict, rule in (("192.168.50.2", "Deny", 1), (ALLOWED, "Allow", 2)):
                out = explained(node, src, f"{vip}:80/tcp")
                judged = (f"  node-1-eth0 forward-ingress: {verdict} by policy/deny-one-client "
                          f"ingress rule {rule} (tier default)\n")  # fmt: skip
                assert judged in out and out.endswith(f"Verdict: {verdict}\n"), out
                assert out.count("(agrees)") == 1 and "DISAGREES" not in out, out

        # straight to a pod: preDNAT policy judges it first
        pod = BACKENDS[0]
        assert from_client(PRE_DENIED, pod.ip, 8080).startswith("ERR")
        assert from_client(ALLOWED, pod.ip, 8080) == f"{pod.name} {ALLOWED}"
        out = explained(node, PRE_DENIED, f"{pod.ip}:8080/tcp")
        assert ("node-1-eth0 preDNAT: Deny by policy/pre-deny-one-client ingress rule 1 "
                "(tier default)\n") in out and out.endswith("Verdict: Deny\n"), out
        assert "  kernel: Deny by policy/pre-deny-one-client ingress rule 1 (agrees)\n" in out, out

        # the address no expectedIPs list: eth0's host endpoint judges it
        assert from_client("192.168.50.2", EXTRA, 8080).startswith("ERR")
        assert from_client(ALLOWED, EXTRA, 8080) == f"host {ALLOWED}"
        assert from_client("192.168.50.2", EXTRA, 22) == "host 192.168.50.2"  # failsafe
        note = (f"Note: {EXTRA} is an address of this node on eth0 (the datapath's rcl_host_ip "
                "holds it; no HostEndpoint's expectedIPs list it): judged by eth0's host "
                "endpoint node-1-eth0.\n")  # fmt: skip
        out = explained(node, "192.168.50.2", f"{EXTRA}:8080/tcp")
        assert ("node-1-eth0 ingress (to the host): Deny by policy/deny-one-client ingress "
                "rule 1 (tier default)\n") in out, out  # fmt: skip
        assert "  kernel: Deny by policy/deny-one-client ingress rule 1 (agrees)\n" in out, out
        assert out.endswith("Verdict: Deny\n" + note), out
        out = explained(node, ALLOWED, f"{EXTRA}:8080/tcp")
        assert "(agrees)" in out and out.endswith("Verdict: Allow\n" + note), out
        out = explained(node, "192.168.50.2", f"{EXTRA}:22/tcp")
        assert "node-1-eth0 ingress (to the host): Allow by failsafe inbound tcp:22\n" in out
        # its NodePort arrives at the same endpoint
        out = explained(node, "192.168.50.2", f"{EXTRA}:30080/tcp")
        assert "  node-1-eth0 forward-ingress: Deny by policy/deny-one-client" in out, out
        assert out.endswith("Verdict: Deny\n" + note), out
        # without --kernel explain knows the node's addresses from expectedIPs alone
        rc, out, err = node.run("--explain", "--from", "192.168.50.2", "--to",
                                f"{EXTRA}:8080/tcp")  # fmt: skip
        assert rc == 1 and "neither address is in any HostEndpoint's expectedIPs" in err, err
    finally:
        host.stop()
