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


def refusal(name: str, *weps: str) -> str:
    return (
        f"error: {name!r} names more than one WorkloadEndpoint ({', '.join(weps)}), by its own "
        "name or its pod's; name one of them as namespace/name, or the pod as namespace/pod\n"
    )


def test_a_pod_name_two_namespaces_share_is_refused_naming_both(capsys, cfg):
    code, out = explain(capsys, cfg, "api-0", "web-0:80/tcp")
    assert (code, out) == (1, refusal("api-0", "ops/n1-k8s-api--0-eth0", "shop/n1-k8s-api--0-eth0"))


@pytest.mark.parametrize("side", ["--from", "--to"])
def test_a_workload_endpoint_name_two_namespaces_share_is_refused_naming_both(capsys, cfg, side):
    both = refusal("n1-k8s-api--0-eth0", "ops/n1-k8s-api--0-eth0", "shop/n1-k8s-api--0-eth0")
    src, dst = ("n1-k8s-api--0-eth0", "web-0:80/tcp") if side == "--from" else (
        "web-0", "n1-k8s-api--0-eth0:80/tcp")  # fmt: skip
    assert explain(capsys, cfg, src, dst) == (1, both)
    code, out = explain(capsys, cfg, "ops/n1-k8s-api--0-eth0", "web-0:80/tcp")
    assert code == 0 and "ops/n1-k8s-api--0-eth0 egress" in out, out  # namespace/name: that one


def test_a_name_of_one_endpoint_and_the_pod_of_another_is_refused_naming_both(capsys, cfg):
    # a WorkloadEndpoint in ops named as shop's web endpoint's pod
    named_web_0 = PODS.split("---\n")[4].replace("n1-k8s-api--0-eth0", "web-0")
    (cfg / "all.yaml").write_text("---\n".join([FELIX, PODS, named_web_0]))
    both = refusal("web-0", "ops/web-0", "shop/n1-k8s-web--0-eth0")
    assert explain(capsys, cfg, "web-0", "10.0.0.2:80/tcp") == (1, both)
    assert explain(capsys, cfg, "shop/api-0", "web-0:80/tcp") == (1, both)


def test_a_bad_target_is_quoted_as_typed_not_as_its_pod_resolved(capsys, cfg):
    code, out = explain(capsys, cfg, "shop/api-0", "shop/web-0:80")
    assert (code, out) == (
        1, "error: --to 'shop/web-0:80': expected DST:PORT/PROTO, e.g. web-0:8080/tcp\n"
    )  # fmt: skip
