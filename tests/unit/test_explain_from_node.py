"""--explain on a flow the node itself sends to a local workload: never
policed (as in Calico; the datapath's rcl_pol_sent_by_host), and no
reverse-path check, since the node's own packet arrives on no interface.
Without --kernel explain takes the node's addresses from its host
endpoints' expectedIPs, and says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from tests.unit.test_error_paths import FELIX, WEB
from tests.unit.test_explain_output import service

NODE_IP = "192.168.50.1"

# web denies every flow in; the host endpoint denies every flow the host sends
DENY_ALL = f"""\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: deny-web, namespace: shop}}
spec:
  selector: app == 'web'
  types: [Ingress]
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: n1-eth0, labels: {{host-endpoint: eth0}}}}
spec: {{node: n1, interfaceName: eth0, expectedIPs: [{NODE_IP}]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: host-sends-nothing}}
spec:
  selector: has(host-endpoint)
  types: [Egress]
"""


# Without --kernel explain reads no interfaces: it says whose word it took.
GUESSED = (
    f"Note: this takes {NODE_IP} for this node's own address, as a HostEndpoint's expectedIPs "
    "say (--kernel, on the node, checks the datapath's list).\n"
)


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "all.yaml").write_text("---\n".join([FELIX, WEB, DENY_ALL]))
    return tmp_path / "cfg"


def explained(capsys: pytest.CaptureFixture[str], cfg: Path, src: str, dst: str) -> str:
    code = main(["--explain", "--from", src, "--to", dst, "--config", str(cfg), "--node", "n1",
                 "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def test_the_nodes_own_flow_to_a_pod_is_allowed_unjudged(capsys, cfg):
    out = explained(capsys, cfg, NODE_IP, "web:80/tcp")
    assert out == (
        "shop/web ingress: Allow by this node's own traffic (from the node to a local workload "
        "is never policed, as in Calico; the flow is tracked, so the pod's replies pass)\n"
        "Verdict: Allow\n" + GUESSED
    )


def test_the_same_flow_from_elsewhere_is_judged_by_the_pods_policy(capsys, cfg):
    out = explained(capsys, cfg, "192.0.2.9", "web:80/tcp")
    assert "shop/web ingress: Deny by tier/default default action" in out, out
    assert "Verdict: Deny\n" in out and "bpfEnforceRPF" in out, out  # it arrives somewhere


def test_the_nodes_own_flow_through_a_service_to_a_local_backend(capsys, cfg):
    service(cfg, ("10.0.0.1", "n1"))
    out = explained(capsys, cfg, NODE_IP, "10.96.0.80:8000/tcp")
    assert "shop/web ingress: Allow by this node's own traffic" in out, out
    assert out.endswith("Verdict: Allow\n" + GUESSED) and "bpfEnforceRPF" not in out, out
