"""Every shape of config plans, applies, verifies and re-plans to "No changes.":
no Services, nothing selected, the datapath disabled, a table emptied by a
change and filled again. Each shape runs with and without the caches."""

from __future__ import annotations

import pytest

from tests.kernel.conftest import PODS

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
"""

SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: ["10.65.0.20"]
    conditions: {ready: true}
"""

AFFINITY_SERVICE = SERVICE.replace("clusterIP: 10.96.0.50", "clusterIP: 10.96.0.60").replace(
    "name: web,", "name: sticky,"
) + "  sessionAffinity: ClientIP\n"


@pytest.fixture(params=["no-cache", "cached"])
def shaped(node, request, tmp_path, monkeypatch):
    if request.param == "cached":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        node.cached = True
    return node


def test_felix_only_applies_with_empty_nat_tables(shaped):
    shaped.felix()
    out = shaped.apply_converged()
    assert "Apply complete!" in out
    assert "rcl_nat_fe/" not in out and "rcl_nat_be/" not in out


def test_endpoints_without_services_apply(shaped):
    shaped.felix()
    for pod in PODS:
        shaped.wep(pod)
    out = shaped.apply_converged()
    assert "tc/cali-front0/ingress" in out and "tc/cali-back0/egress" in out


def test_nothing_selected_applies(shaped):
    shaped.felix(pattern="^nomatch")
    shaped.write("felix.yaml", (shaped.config / "felix.yaml").read_text()
                 + "  interfaceExclude: /^cali/\n")  # fmt: skip
    out = shaped.apply_converged()
    assert "tc/" not in out  # no interface is managed
    assert "No changes." not in out or "Apply complete!" in out


def test_bpf_disabled_applies_and_removes_what_was_there(shaped):
    shaped.felix()
    for pod in PODS:
        shaped.wep(pod)
    shaped.write("svc.yaml", SERVICE + "---\n" + SLICE)
    shaped.apply_converged()
    shaped.felix(enabled=False)
    out = shaped.apply_converged()
    assert "- tc/cali-front0/ingress" in out, out


def test_a_table_emptied_by_a_change_and_filled_again(shaped):
    shaped.felix()
    for pod in PODS:
        shaped.wep(pod)
    shaped.write("svc.yaml", SERVICE + "---\n" + SLICE)
    out = shaped.apply_converged()
    assert "+ map/rcl_nat_fe/10.96.0.50:80/tcp" in out
    shaped.remove("svc.yaml")
    out = shaped.apply_converged()
    assert "- map/rcl_nat_fe/10.96.0.50:80/tcp" in out
    shaped.write("svc.yaml", SERVICE + "---\n" + SLICE)
    out = shaped.apply_converged()
    assert "+ map/rcl_nat_fe/10.96.0.50:80/tcp" in out


def test_one_empty_table_among_full_ones(shaped):
    """Services with backends fill the frontend and backend tables while the
    affinity table stays empty; then an affinity service alone."""
    shaped.felix()
    for pod in PODS:
        shaped.wep(pod)
    shaped.write("svc.yaml", SERVICE + "---\n" + SLICE)
    shaped.apply_converged()
    sticky_slice = SLICE.replace("web-1", "sticky-1").replace(
        "service-name: web", "service-name: sticky"
    )
    shaped.write("sticky.yaml", AFFINITY_SERVICE + "---\n" + sticky_slice)
    out = shaped.apply_converged()
    assert "+ map/rcl_nat_fe/10.96.0.60:80/tcp" in out
