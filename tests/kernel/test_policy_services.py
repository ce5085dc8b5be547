"""A policy rule that names a Service (`destination.services`) allows the
Service's endpoints on their ports, through its cluster IP (policy judges
after NAT) and straight; it follows the endpoints when they move, and a new
pod's link, applied from the cached state, gets the same verdicts a full
compile gives."""

from __future__ import annotations

import pytest

from sandbox.netns import Pod
from tests.kernel.conftest import PODS, WEB_SERVICE
from tests.kernel.test_services import VIP, Services

pytestmark = pytest.mark.kernel

FRONT, BACK = PODS
OTHER = Pod("back1", "10.65.0.21")
LATE = Pod("late0", "10.65.0.30")

EGRESS_TO_WEB = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: to-web, namespace: shop}
spec:
  selector: app in {'front0', 'late0'}
  types: [Egress]
  egress:
  - action: Allow
    destination:
      services: {name: web}
"""


@pytest.fixture
def svc(node, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    node.cached = True  # a new link then takes the cached, interfaces-only path
    s = Services(node)
    try:
        yield s
    finally:
        s.stop()


def reply(svc, host: str, port: int, pod: Pod = FRONT) -> str:
    sb = svc.node.sandbox
    return svc.request("tcp", host, port, ns=sb.pod_ns(pod))[0].split()[0]


def test_a_rule_naming_a_service_allows_its_endpoints_on_their_ports(svc):
    node = svc.node
    node.sandbox.add_pod(OTHER)
    svc.serve(BACK)
    svc.serve(OTHER)
    node.felix()
    for pod in (FRONT, BACK, OTHER, LATE):  # LATE's interface comes later
        node.wep(pod)
    node.write("web.yaml", WEB_SERVICE.format(vip=VIP, ip=BACK.ip))
    node.write("to-web.yaml", EGRESS_TO_WEB)
    node.apply_converged()
    assert reply(svc, VIP, 80) == "back0"  # through the cluster IP: judged on back0:8080
    assert reply(svc, BACK.ip, 8080) == "back0"  # straight to the endpoint
    assert reply(svc, OTHER.ip, 8080) == "ERR"  # not an endpoint of web
    assert reply(svc, BACK.ip, 9090) == "ERR"  # not a port of web

    node.write("web.yaml", WEB_SERVICE.format(vip=VIP, ip=OTHER.ip))  # the endpoint moves
    node.apply_converged()
    assert reply(svc, VIP, 80) == "back1"
    assert reply(svc, OTHER.ip, 8080) == "back1"
    assert reply(svc, BACK.ip, 8080) == "ERR"

    node.sandbox.add_pod(LATE)  # a new link, the source unchanged
    node.apply_converged()
    rc, out, err = node.run("--plan", "--no-cache")  # a full compile agrees
    assert rc == 0 and "No changes." in out, out + err
    assert reply(svc, OTHER.ip, 8080, LATE) == "back1"
    assert reply(svc, BACK.ip, 8080, LATE) == "ERR"
