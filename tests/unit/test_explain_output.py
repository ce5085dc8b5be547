"""--explain's text: the deciding rule per endpoint, the verdict, and for an
ICMP error the note that conntrack, not the rules, passes errors about
allowed flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.engine.explain import ReversePath, reverse_path_verdict
from reconciler.kernel.routes import RouteBack
from tests.unit.test_error_paths import FELIX, WEB

POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80]}
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cfg").mkdir()
    # the reverse-path check's note on outside sources is tested on its own, below
    felix = FELIX.replace("bpfEnabled: true", "bpfEnabled: true, bpfEnforceRPF: Disabled")
    (tmp_path / "cfg" / "all.yaml").write_text("---\n".join([felix, WEB, POLICY]))
    return tmp_path / "cfg"


def explain(capsys: pytest.CaptureFixture[str], cfg: Path, dst: str) -> str:
    code = main(["--explain", "--from", "192.0.2.9", "--to", dst, "--config", str(cfg),
                 "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.mark.parametrize(
    "icmp_type,kind",
    [(3, "destination unreachable"), (11, "time exceeded"), (12, "parameter problem")],
)
def test_an_icmp_error_is_explained_with_the_related_note(capsys, cfg, icmp_type, kind):
    lines = explain(capsys, cfg, f"web:{icmp_type}/icmp").splitlines()
    assert lines[0] == "shop/web ingress: Deny by tier/default default action (tier default)"
    assert lines[1].startswith("  compiled program ") and lines[1].endswith(" agrees: yes")
    assert lines[2:] == [
        "Verdict: Deny",
        f"Note: ICMP type {icmp_type} ({kind}) is an error about another flow. One that goes "
        "back to the sender of a packet of a flow policy allowed (from a pod: about a packet "
        "the pod received) passes as related to it, whatever the rules say, except from a pod "
        "to this node under defaultEndpointToHostAction Drop; the verdict above is for one "
        "that does not.",
    ]


@pytest.mark.parametrize("dst", ["web:8/icmp", "web:0/icmp", "web:80/tcp", "web:3/udp"])
def test_other_flows_have_no_note(capsys, cfg, dst):
    out = explain(capsys, cfg, dst)
    assert "Note:" not in out
    assert out.endswith("Verdict: Allow\n" if dst == "web:80/tcp" else "Verdict: Deny\n")


SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  clusterIP: 10.96.0.80
  internalTrafficPolicy: {itp}
  ports:
  - {{name: http, protocol: TCP, port: 8000, targetPort: 80}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports:
- {{name: http, protocol: TCP, port: 80}}
endpoints:
{endpoints}"""


def service(cfg: Path, *endpoints: tuple[str, str], itp: str = "Cluster") -> None:
    listed = "".join(
        f"- addresses: [{ip}]\n  nodeName: {node}\n  conditions: {{ready: true}}\n"
        for ip, node in endpoints
    )
    (cfg / "svc.yaml").write_text(SERVICE.format(itp=itp, endpoints=listed or "  []\n"))


WEB_IP = WEB.split("ipNetworks: [")[1].split("/")[0]


def load_balancer(cfg: Path, spec: str) -> str:
    """svc.yaml's Service as a LoadBalancer at 203.0.113.5, `spec` lines
    added to its spec; the text written."""
    text = (cfg / "svc.yaml").read_text()
    text = text.replace(
        "  clusterIP: 10.96.0.80\n", f"  type: LoadBalancer\n{spec}  clusterIP: 10.96.0.80\n"
    )
    text = text.replace("---", "status: {loadBalancer: {ingress: [{ip: 203.0.113.5}]}}\n---", 1)
    (cfg / "svc.yaml").write_text(text)
    return text


def test_a_flow_to_a_service_is_judged_on_each_backend(capsys, cfg):
    """The datapath judges a service flow after NAT: explain follows it to
    each backend the service may pick, and says how many would let it in."""
    service(cfg, (WEB_IP, "n1"), ("10.65.9.9", "n2"))
    lines = explain(capsys, cfg, "10.96.0.80:8000/tcp").splitlines()
    assert lines[0] == (
        "10.96.0.80:8000/tcp is service shop/web:http/tcp: "
        "policy judges the flow on its backend (2)"
    )
    assert lines[1] == f"-> backend {WEB_IP}:80"
    assert lines[2] == (
        "  shop/web ingress: Allow by policy/shop/web ingress rule 1 (tier default)"
    )
    assert lines[4:] == [
        "  Verdict: Allow",
        "-> backend 10.65.9.9:80",
        # from outside (not a pod of this node) to another node's backend
        "  on another node: masqueraded, it leaves with this node's address (the backend "
        "sees this node, not the client)",
        "  no endpoint of this node judges it: it passes",
        "Verdict: Allow (to every backend)",
    ]
    # the service's port is not the backend's: a policy on port 8000 would not match
    (cfg / "all.yaml").write_text(
        (cfg / "all.yaml").read_text().replace("ports: [80]", "ports: [8000]")
    )
    out = explain(capsys, cfg, "10.96.0.80:8000/tcp")
    assert "  shop/web ingress: Deny by tier/default default action (tier default)" in out
    assert out.endswith("Verdict: Allow to 1 of 2 backends, Deny to the others\n")


def test_a_pod_of_this_node_reaches_another_nodes_backend_unmasqueraded(capsys, cfg):
    service(cfg, (WEB_IP, "n1"), ("10.65.9.9", "n2"))
    code = main(["--explain", "--from", "web", "--to", "10.96.0.80:8000/tcp", "--config",
                 str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "-> backend 10.65.9.9:80" in out and "masqueraded" not in out


def test_a_service_with_local_traffic_policy_is_judged_on_local_backends_alone(capsys, cfg):
    service(cfg, (WEB_IP, "n1"), ("10.65.9.9", "n2"), itp="Local")
    out = explain(capsys, cfg, "10.96.0.80:8000/tcp")
    assert "backend (1)" in out and "10.65.9.9" not in out
    assert out.endswith("Verdict: Allow\n")


def test_a_service_without_backends_is_rejected(capsys, cfg):
    service(cfg)
    out = explain(capsys, cfg, "10.96.0.80:8000/tcp")
    assert out.splitlines()[1:] == [
        "Verdict: Reject (no usable backend: answered with ICMP port unreachable)"
    ]


def test_a_load_balancer_ip_admits_its_source_ranges_alone(capsys, cfg):
    service(cfg, (WEB_IP, "n1"))
    ranged = load_balancer(cfg, "  loadBalancerSourceRanges: [198.51.100.0/24, 192.0.2.0/28]\n")
    lines = explain(capsys, cfg, "203.0.113.5:8000/tcp").splitlines()  # from 192.0.2.9
    assert lines[1] == "192.0.2.9 is within its loadBalancerSourceRanges (192.0.2.0/28)"
    assert lines[-1] == "Verdict: Allow"
    (cfg / "svc.yaml").write_text(ranged.replace("192.0.2.0/28", "192.0.2.16/28"))
    assert explain(capsys, cfg, "203.0.113.5:8000/tcp").splitlines()[1:] == [
        "192.0.2.9 is outside its loadBalancerSourceRanges (192.0.2.16/28, 198.51.100.0/24)",
        "Verdict: Deny (dropped before NAT, as kube-proxy drops it)",
    ]
    # the cluster IP of the same service is open to every source
    assert explain(capsys, cfg, "10.96.0.80:8000/tcp").splitlines()[-1] == "Verdict: Allow"


NODE_PORT = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: n1-eth0, labels: {host-endpoint: ingress}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.168.50.1],
       profiles: [projectcalico-default-allow]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: nodeports-from-corp}
spec:
  selector: has(host-endpoint)
  preDNAT: true
  applyOnForward: true
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {nets: [192.0.2.0/24]}, destination: {ports: [30080]}}
  - {action: Deny, protocol: TCP, destination: {ports: ["30000:32767"]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: forward-to-web}
spec:
  selector: has(host-endpoint)
  applyOnForward: true
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
"""


def test_a_node_port_meets_the_host_endpoint_before_and_after_nat(capsys, cfg):
    """A NodePort flow is judged where the datapath judges it: preDNAT policy
    on the address it arrives for, then the endpoint's applyOnForward policy
    and the backend's own on the backend NAT picks."""
    service(cfg, (WEB_IP, "n1"), ("10.65.9.9", "n2"))
    text = (cfg / "svc.yaml").read_text()
    (cfg / "svc.yaml").write_text(
        text.replace("  clusterIP:", "  type: NodePort\n  clusterIP:").replace(
            "targetPort: 80}", "targetPort: 80, nodePort: 30080}"
        )
    )
    (cfg / "host.yaml").write_text(NODE_PORT)
    lines = explain(capsys, cfg, "192.168.50.1:30080/tcp").splitlines()  # from 192.0.2.9
    assert lines[:2] == [
        "192.168.50.1:30080/tcp is NodePort 30080 of service shop/web:http/tcp (taking "
        "192.168.50.1 for an address of this node): policy judges the flow on its backend (2)",
        "n1-eth0 preDNAT: Allow by policy/nodeports-from-corp ingress rule 1 (tier default)",
    ]
    assert lines[3:] == [
        f"-> backend {WEB_IP}:80",
        "  n1-eth0 forward-ingress: Allow by policy/forward-to-web ingress rule 1 (tier default)",
        "    compiled program " + lines[5].split("compiled program ")[1],
        "  shop/web ingress: Allow by policy/shop/web ingress rule 1 (tier default)",
        "    compiled program " + lines[7].split("compiled program ")[1],
        "  Verdict: Allow",
        "-> backend 10.65.9.9:80",
        "  on another node: masqueraded, it leaves with this node's address (the backend "
        "sees this node, not the client)",
        "  n1-eth0 forward-ingress: Allow by policy/forward-to-web ingress rule 1 (tier default)",
        "    compiled program " + lines[12].split("compiled program ")[1],
        "  then it leaves this node for the backend, masqueraded: the interface it leaves by "
        "does not judge it again",
        "Verdict: Allow (to every backend)",
    ]
    # from outside the corporate range: dropped by preDNAT policy, before NAT
    code = main(["--explain", "--from", "203.0.113.9", "--to", "192.168.50.1:30080/tcp",
                 "--config", str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[1:] == [
        "n1-eth0 preDNAT: Deny by policy/nodeports-from-corp ingress rule 2 (tier default)",
        "  compiled program " + out.splitlines()[2].split("compiled program ")[1],
        "Verdict: Deny (before NAT)",
    ]
    # from a pod of this node: NATed on its own interface, no host endpoint judges it
    code = main(["--explain", "--from", "web", "--to", "192.168.50.1:30080/tcp",
                 "--config", str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[1] == (
        "from shop/web, a pod of this node: NATed on its own interface, no host endpoint's "
        "policy judges it"
    ), out
    assert "n1-eth0" not in out and "shop/web egress: Deny by end of profiles" in out, out


def test_external_local_policy_holds_outside_clients_alone(capsys, cfg):
    """externalTrafficPolicy Local: a client outside is balanced among this
    node's endpoints, a pod of this node among every endpoint (kube-proxy's
    short-circuit, and the datapath's)."""
    service(cfg, (WEB_IP, "n1"), ("10.65.9.9", "n2"))
    load_balancer(cfg, "  externalTrafficPolicy: Local\n")
    outside = explain(capsys, cfg, "203.0.113.5:8000/tcp")  # from 192.0.2.9
    assert "on its backend (1)" in outside and "10.65.9.9" not in outside
    code = main(["--explain", "--from", "web", "--to", "203.0.113.5:8000/tcp", "--config",
                 str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    inside = capsys.readouterr().out
    assert code == 0 and "on its backend (2)" in inside and "-> backend 10.65.9.9:80" in inside


def test_a_service_address_on_another_port_is_not_the_service(capsys, cfg):
    service(cfg, ("10.65.9.9", "n2"))
    main(["--explain", "--from", "192.0.2.9", "--to", "10.96.0.80:80/tcp", "--config",
          str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    err = capsys.readouterr().err
    assert "neither 192.0.2.9 nor 10.96.0.80 is a WorkloadEndpoint or HostEndpoint" in err


FRONT = (  # a second pod of the node, made from the first
    WEB.replace("web", "front").replace("[10.0.0.1/32, 10.1.0.1/32]", "[10.0.0.2/32]")
)


@pytest.mark.parametrize("mode", ["Strict", "Loose", None])
def test_an_outside_source_gets_the_reverse_path_note_without_kernel(capsys, cfg, mode):
    """Without --kernel explain reads no routes: it says the check exists,
    in the mode the node runs it (an absent field is Calico's Loose)."""
    rpf = f", bpfEnforceRPF: {mode}" if mode else ""
    felix = FELIX.replace("bpfEnabled: true", f"bpfEnabled: true{rpf}")
    (cfg / "all.yaml").write_text("---\n".join([felix, WEB, POLICY]))
    lines = explain(capsys, cfg, "web:80/tcp").splitlines()
    assert lines[-2:] == [
        "Verdict: Allow",
        f"Note: bpfEnforceRPF {mode or 'Loose'} also checks the route back to 192.0.2.9 where "
        "the packet arrives, before policy (--kernel, on the node, reads it).",
    ]


def test_a_source_of_this_node_gets_no_reverse_path_note(capsys, cfg):
    """A pod's packets arrive on its own interface, which is not checked."""
    (cfg / "all.yaml").write_text("---\n".join([FELIX, WEB, FRONT, POLICY]))
    code = main(["--explain", "--from", "shop/front", "--to", "web:80/tcp", "--config", str(cfg),
                 "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "bpfEnforceRPF" not in out and "Reverse-path" not in out
    assert out.endswith("Verdict: Deny\n")  # front's egress: no profile, the end of profiles


def test_the_disabled_check_gets_no_note(capsys, cfg):
    out = explain(capsys, cfg, "web:80/tcp")
    assert "bpfEnforceRPF" not in out and out.endswith("Verdict: Allow\n")


@pytest.mark.parametrize(
    "mode,back,text,dropped",
    [
        ("Loose", RouteBack("unicast", "eth0"), "Allow: the route back to 192.0.2.9 leaves by eth0",
         False),
        ("Strict", RouteBack("unicast", "eth1"), "Allow if it arrives on eth1, the interface the "
         "route back to 192.0.2.9 leaves by; Deny on any other", False),
        ("Loose", RouteBack("local"), "Deny: 192.0.2.9 is an address of this node's own", True),
        ("Strict", RouteBack("blackhole"), "Deny: this node has no usable route back to "
         "192.0.2.9 (blackhole)", True),
        ("Loose", RouteBack("none"), "Deny: this node has no usable route back to 192.0.2.9 "
         "(none)", True),
        ("Loose", RouteBack("prohibit"), "Deny: this node has no usable route back to 192.0.2.9 "
         "(prohibit)", True),
    ],
)  # fmt: skip
def test_the_reverse_path_verdict_from_a_route_back(mode, back, text, dropped):
    found = reverse_path_verdict(mode, "192.0.2.9", back)
    head = f"Reverse-path check (bpfEnforceRPF {mode}, where it arrives, before policy): "
    assert found == ReversePath(head + text, judged=True, dropped=dropped)


def test_a_kernel_that_decides_otherwise_exits_2(capsys, cfg, monkeypatch):
    """--kernel: the loaded program's answer differs from the configuration's
    (a hand edit, another source applied): said, and exit 2, as for drift."""
    import os

    from reconciler.engine import explain as engine_explain

    if os.geteuid() != 0:
        pytest.skip("--explain --kernel needs root")
    (cfg / "all.yaml").write_text("---\n".join([FELIX, WEB, FRONT, POLICY]))
    monkeypatch.setattr(engine_explain, "kernel_verdict", lambda *a: ("Deny", 0))
    monkeypatch.setattr(engine_explain, "program_loaded", lambda *a: True)
    monkeypatch.setattr(engine_explain, "_not_attached", lambda *a: "")
    code = main(["--explain", "--from", "shop/front", "--to", "web:80/tcp", "--config", str(cfg),
                 "--node", "n1", "--no-cache", "--kernel"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 2, out
    assert "(DISAGREES)" in out and out.endswith(
        "The loaded programs disagree with the configuration: the kernel drifted or was applied "
        "from another source (reconcile --plan shows what differs).\n"
    )


def test_a_pod_reaching_itself_through_its_service_is_judged_with_the_vip(capsys, cfg):
    """Hairpin: the datapath translates the source to the VIP, so the pod's
    ingress policy sees the VIP as the peer, not the pod's own address."""
    service(cfg, (WEB_IP, "n1"))
    from_vip = POLICY.replace("destination: {ports: [80]}",
                              "source: {nets: [10.96.0.80/32]}\n    destination: {ports: [80]}")
    felix_and_web = (cfg / "all.yaml").read_text().split("---\n")[:2]
    (cfg / "all.yaml").write_text("---\n".join([*felix_and_web, from_vip]))
    code = main(["--explain", "--from", "web", "--to", "10.96.0.80:8000/tcp", "--config",
                 str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and (
        "  hairpin: shop/web reaches itself; its ingress sees 10.96.0.80 as the peer (the "
        "source is translated to it)\n"
    ) in out, out
    # (its own address is not in the rule's nets: judged as itself, it would be denied)
    assert "shop/web ingress: Allow by policy/shop/web ingress rule 1" in out, out


def test_a_flow_from_outside_to_a_pod_meets_the_forward_policy_of_its_host_endpoint(
    capsys, cfg
):
    """The node's one host endpoint with applyOnForward ingress policy judges
    what it forwards from outside to a pod, before the pod's own policy."""
    forward = NODE_PORT.split("---\n")[0] + (
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
        "metadata: {name: no-forward-from-one}\n"
        "spec: {selector: has(host-endpoint), applyOnForward: true, types: [Ingress],\n"
        "       ingress: [{action: Deny, source: {nets: [192.0.2.9/32]}}, {action: Allow}]}\n"
    )  # fmt: skip
    (cfg / "host.yaml").write_text(forward)
    lines = explain(capsys, cfg, f"{WEB_IP}:80/tcp").splitlines()
    assert lines[0] == (
        "n1-eth0 forward-ingress: Deny by policy/no-forward-from-one ingress rule 1 (tier default)"
    ), lines
    assert lines[-1] == "Verdict: Deny", lines
    # from another source: the forward policy allows, the pod's own decides
    code = main(["--explain", "--from", "192.0.2.10", "--to", f"{WEB_IP}:80/tcp", "--config",
                 str(cfg), "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and out.splitlines()[0].startswith(
        "n1-eth0 forward-ingress: Allow by policy/no-forward-from-one ingress rule 2"
    ), out
    assert "shop/web ingress: Allow by policy/shop/web ingress rule 1" in out, out


def test_the_tiers_a_pass_skips_are_named_before_the_deciding_rule(capsys, cfg):
    """A Pass ends a tier without a verdict: explain names each tier passed
    and what passed it, under the rule that decided."""
    (cfg / "tier.yaml").write_text("""\
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 10}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.hand-on}
spec:
  tier: security
  selector: all()
  ingress: [{action: Pass, protocol: TCP}]
""")
    lines = explain(capsys, cfg, "web:80/tcp").splitlines()
    assert lines[:2] == [
        "shop/web ingress: Allow by policy/shop/web ingress rule 1 (tier default)",
        "  passed tier security: Pass by policy/security.hand-on ingress rule 1",
    ]
    assert lines[-1] == "Verdict: Allow"


NAMESPACED = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.lab}
spec:
  labelsToApply: {pcns.env: dev, env: prod}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: client, namespace: lab, labels: {app: client}}
spec:
  node: n2
  interfaceName: cali-client
  ipNetworks: [10.2.0.1/32]
  profiles: [kns.lab]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: by-namespace, namespace: shop}
spec:
  selector: app == 'web'
  order: 1
  ingress:
  - action: Deny
    source: {namespaceSelector: env == 'prod'}
  - action: Allow
    source: {namespaceSelector: env == 'dev', selector: env == 'prod'}
"""


def test_explain_reads_namespace_labels_from_pcns_alone(capsys, cfg):
    """kns.lab's pcns.env: dev is lab's namespace label; its unprefixed
    env: prod is a label lab's pods get, which selector (not
    namespaceSelector) matches."""
    (cfg / "lab.yaml").write_text(NAMESPACED)
    code = main(["--explain", "--from", "lab/client", "--to", "web:80/tcp", "--config", str(cfg),
                 "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[0] == (
        "shop/web ingress: Allow by policy/shop/by-namespace ingress rule 2 (tier default)"
    )
