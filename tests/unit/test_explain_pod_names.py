"""--explain takes a pod's name where it takes a WorkloadEndpoint's: Calico
names a pod's endpoint `<node>-k8s-<pod>-eth0`, which users seldom know."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from tests.unit.test_error_paths import FELIX

PODS = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-web--0-eth0, namespace: shop, labels: {app: web}}
spec: {node: n1, orchestrator: k8s, pod: web-0, interfaceName: cali-web, ipNetworks: [10.0.0.1/32],
       profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-api--0-eth0, namespace: shop, labels: {app: api}}
spec: {node: n1, orchestrator: k8s, pod: api-0, interfaceName: cali-api, ipNetworks: [10.0.0.2/32],
       profiles: [kns.shop]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: n1-k8s-api--0-eth0, namespace: ops, labels: {app: api}}
spec: {node: n1, orchestrator: k8s, pod: api-0, interfaceName: cali-ops, ipNetworks: [10.0.1.2/32],
       profiles: [kns.ops]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web-from-api, namespace: shop}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, protocol: TCP, source: {selector: app == 'api'}}]
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "all.yaml").write_text("---\n".join([FELIX, PODS]))
    return tmp_path / "cfg"


def explain(capsys: pytest.CaptureFixture[str], cfg: Path, src: str, dst: str) -> tuple[int, str]:
    code = main(["--explain", "--from", src, "--to", dst, "--config", str(cfg), "--node", "n1",
                 "--no-cache"])  # fmt: skip
    out, err = capsys.readouterr()
    return code, out + err


def test_a_pod_name_names_its_workload_endpoint_each_way(capsys, cfg):
    code, out = explain(capsys, cfg, "shop/api-0", "web-0:80/tcp")
    assert code == 0, out
    web = "shop/n1-k8s-web--0-eth0 ingress"
    assert f"{web}: Allow by policy/shop/web-from-api ingress rule 1" in out, out
    assert out.endswith("Verdict: Allow\n"), out
    code, by_address = explain(capsys, cfg, "10.0.0.2", "10.0.0.1:80/tcp")
    assert (code, by_address) == (0, out)


def test_a_pod_name_two_namespaces_share_is_refused_naming_both(capsys, cfg):
    code, out = explain(capsys, cfg, "api-0", "web-0:80/tcp")
    assert code == 1
    assert out == (
        "error: 'api-0': the pod of more than one WorkloadEndpoint (ops/n1-k8s-api--0-eth0, "
        "shop/n1-k8s-api--0-eth0); name one of them, or the pod as namespace/pod\n"
    )
