"""--explain on a flow from outside to a service's cluster, external or load
balancer IP: it arrives at a host endpoint, whose untracked and preDNAT
policy judge it before NAT and whose applyOnForward policy judges it after,
on every backend (this node's and another node's alike), as the datapath
judges every new flow that arrives at a host endpoint (a flow straight to a
pod as well). Failsafe ports are for the node's own addresses only."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.compile.interfaces import Role, Selected
from reconciler.engine.explain_node_address import HeldBy, held_by, not_a_node_address
from reconciler.plan.state import Link
from tests.unit.test_error_paths import FELIX, WEB
from tests.unit.test_explain_output import POLICY, service

HOST_ENDPOINT = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {host-endpoint: "true"}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.168.50.1],
       profiles: [projectcalico-default-allow]}
"""

# as the walkthrough's: forwarded traffic from one outside client is denied
FORWARD_DENY = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: fwd-deny-ext}
spec:
  order: 50
  selector: has(host-endpoint)
  applyOnForward: true
  types: [Ingress]
  ingress:
  - action: Deny
    source: {nets: [192.0.2.9/32]}
  - action: Allow
"""

DENIED, ALLOWED = "192.0.2.9", "198.51.100.7"  # outside clients: the first one is denied
REMOTE = "10.65.9.9"  # the backend on another node
WEB_IP = WEB.split("ipNetworks: [")[1].split("/")[0]


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    felix = FELIX.replace("bpfEnabled: true", "bpfEnabled: true, bpfEnforceRPF: Disabled")
    (cfg / "all.yaml").write_text("---\n".join([felix, WEB, POLICY, HOST_ENDPOINT]))
    (cfg / "forward.yaml").write_text(FORWARD_DENY)
    service(cfg, (WEB_IP, "n1"), (REMOTE, "n2"))
    text = (cfg / "svc.yaml").read_text()  # an external IP and a load balancer IP as well
    text = text.replace("  clusterIP: 10.96.0.80\n", "  type: LoadBalancer\n  clusterIP: "
                        "10.96.0.80\n  externalIPs: [203.0.113.7]\n")  # fmt: skip
    text = text.replace("---", "status: {loadBalancer: {ingress: [{ip: 203.0.113.5}]}}\n---", 1)
    (cfg / "svc.yaml").write_text(text)
    return cfg


def explained(capsys: pytest.CaptureFixture[str], cfg: Path, src: str, dst: str) -> list[str]:
    """The answer's lines, without the compiled-program lines."""
    code = main(["--explain", "--from", src, "--to", dst, "--config", str(cfg), "--node", "n1",
                 "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    return [line for line in out.splitlines() if "compiled program" not in line]


FRONTENDS = ["10.96.0.80:8000/tcp", "203.0.113.7:8000/tcp", "203.0.113.5:8000/tcp"]
MASQUERADED = (
    "  on another node: masqueraded, it leaves with this node's address (the backend sees "
    "this node, not the client)"
)


@pytest.mark.parametrize("dst", FRONTENDS)
@pytest.mark.parametrize(
    "src,verdict,rule", [(DENIED, "Deny", 1), (ALLOWED, "Allow", 2)], ids=["denied", "allowed"]
)
def test_the_forward_policy_judges_every_backend(capsys, cfg, dst, src, verdict, rule):
    """The datapath drops the denied client's flow to the other node's
    backend too (real traffic showed it for a cluster IP): the host
    endpoint's applyOnForward policy judges it before it is masqueraded and
    sent on; another client's passes both."""
    lines = explained(capsys, cfg, src, dst)
    step = f"n1-eth0 forward-ingress: {verdict} by policy/fwd-deny-ext ingress rule {rule} " \
        "(tier default)"
    assert lines[1:] == [
        f"-> backend {WEB_IP}:80",
        f"  {step}",
        "  shop/web ingress: Allow by policy/shop/web ingress rule 1 (tier default)",
        f"  Verdict: {verdict}",
        f"-> backend {REMOTE}:80",
        MASQUERADED,
        f"  {step}",
        "  then it leaves this node for the backend, masqueraded: the interface it leaves by "
        "does not judge it again",
        f"Verdict: {verdict} (to every backend)",
    ], lines


def test_without_forward_policy_the_host_endpoint_passes_the_flow(capsys, cfg):
    (cfg / "forward.yaml").unlink()
    lines = explained(capsys, cfg, DENIED, "10.96.0.80:8000/tcp")
    assert lines.count("  n1-eth0 forward-ingress: Allow by no applyOnForward policy") == 2
    assert lines[-1] == "Verdict: Allow (to every backend)", lines


def test_a_pod_of_this_node_meets_no_host_endpoint_on_its_way_to_a_cluster_ip(capsys, cfg):
    lines = explained(capsys, cfg, "web", "10.96.0.80:8000/tcp")
    assert not any("n1-eth0" in line for line in lines), lines


PRE_DNAT_DENY = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre-deny}
spec:
  selector: has(host-endpoint)
  preDNAT: true
  applyOnForward: true
  types: [Ingress]
  ingress:
  - action: Deny
    source: {nets: [192.0.2.9/32]}
"""


def test_pre_dnat_policy_judges_a_cluster_ip_before_nat_and_failsafe_ports_do_not(
    capsys, cfg
):
    """preDNAT policy judges every flow that arrives at a host endpoint; a
    failsafe port (22 here) opens the node's own addresses only: a cluster
    IP on that port is denied, an external IP that is the node's address
    is let in."""
    (cfg / "forward.yaml").write_text(PRE_DNAT_DENY)
    text = (cfg / "svc.yaml").read_text().replace("port: 8000", "port: 22")
    (cfg / "svc.yaml").write_text(text.replace("[203.0.113.7]", "[192.168.50.1]"))
    lines = explained(capsys, cfg, DENIED, "10.96.0.80:22/tcp")
    assert lines[1:] == [
        "n1-eth0 preDNAT: Deny by policy/pre-deny ingress rule 1 (tier default)",
        "Verdict: Deny (before NAT)",
    ], lines
    lines = explained(capsys, cfg, DENIED, "192.168.50.1:22/tcp")
    assert lines[1] == "n1-eth0 ingress (to the host): Allow by failsafe inbound tcp:22", lines
    assert lines[-1] == "Verdict: Allow (to every backend)", lines


def test_a_flow_straight_to_a_pod_meets_pre_dnat_policy_too(capsys, cfg):
    """Not through a service: the host endpoint's preDNAT policy judges what
    it forwards to a pod as well, before its applyOnForward policy."""
    (cfg / "forward.yaml").write_text(PRE_DNAT_DENY)
    lines = explained(capsys, cfg, DENIED, f"{WEB_IP}:80/tcp")
    assert lines[0] == "n1-eth0 preDNAT: Deny by policy/pre-deny ingress rule 1 (tier default)"
    assert lines[-1] == "Verdict: Deny", lines
    lines = explained(capsys, cfg, ALLOWED, f"{WEB_IP}:80/tcp")  # no rule matches it: on
    assert lines == [
        "shop/web ingress: Allow by policy/shop/web ingress rule 1 (tier default)",
        "Verdict: Allow",
    ], lines


def test_with_two_host_endpoints_neither_is_guessed(capsys, cfg):
    """Which host endpoint a flow to a cluster IP arrives at depends on the
    interface it arrives by, which explain does not know."""
    second = HOST_ENDPOINT.replace("eth0", "eth1").replace("192.168.50.1", "192.168.60.1")
    (cfg / "second.yaml").write_text(second)
    lines = explained(capsys, cfg, DENIED, "10.96.0.80:8000/tcp")
    assert not any("forward-ingress" in line for line in lines), lines


def selected(name: str, role: Role, *addresses: str) -> Selected:
    return Selected(Link(name, 2, addresses), role, f"HostEndpoint/{name}-hep")


def test_an_address_is_held_by_the_host_endpoint_interface_that_holds_it():
    interfaces = [
        selected("eth1", Role.DATA, "192.168.60.11"),  # no host endpoint there
        selected("eth0", Role.DATA | Role.HOST_ENDPOINT, "192.168.50.1", "192.168.50.11"),
    ]
    assert held_by(interfaces, "192.168.50.11") == HeldBy("eth0", "eth0-hep")
    assert held_by(interfaces, "192.168.60.11") is None
    assert held_by(interfaces, "10.0.0.1") is None
    assert HeldBy("eth0", "eth0-hep").note("192.168.50.11") == (
        "Note: 192.168.50.11 is an address of this node on eth0 (the datapath's rcl_host_ip "
        "holds it; no HostEndpoint's expectedIPs list it): judged by eth0's host endpoint "
        "eth0-hep.\n"
    )


def test_the_refusal_with_kernel_says_the_datapath_does_not_hold_either_address():
    assert not_a_node_address("1.2.3.4", "5.6.7.8", "n1", kernel=True) == (
        "neither 1.2.3.4 nor 5.6.7.8 is a WorkloadEndpoint or HostEndpoint on node n1, nor an "
        "address the datapath holds as this node's (rcl_host_ip) on an interface with a host "
        "endpoint: explain judges flows that start or end at this node; name a pod, a host "
        "endpoint or an address of this node at one end"
    )
