"""The health check servers kube-proxy would run, on loopback: 200 with a
ready local endpoint on a converged node, 503 otherwise, kube-proxy's body,
and servers opened, moved and closed as the converged state says."""

from __future__ import annotations

import http.client
import json
import logging
import socket
from collections.abc import Iterator

import pytest

from reconciler.engine.service_health import ServiceHealth, answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(port: int, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, "/healthz")
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture
def health() -> Iterator[ServiceHealth]:
    served = ServiceHealth(None, host="127.0.0.1")
    try:
        yield served
    finally:
        served.close()


def test_the_answer_is_kube_proxys() -> None:
    status, body = answer("shop/web", 2, True)
    assert status == 200
    assert json.loads(body) == {
        "service": {"namespace": "shop", "name": "web"},
        "localEndpoints": 2,
        "serviceProxyHealthy": True,
    }
    assert answer("shop/web", 0, True)[0] == 503  # no endpoint here: send traffic elsewhere
    assert answer("shop/web", 2, False)[0] == 503  # the node is not converged


def test_servers_follow_the_converged_state(health: ServiceHealth) -> None:
    port, other = free_port(), free_port()
    health.sync({"shop/web": (port, 2)}, True)
    status, headers, body = ask(port)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(body)["localEndpoints"] == 2
    assert ask(port, "HEAD")[0] == 200
    assert health.report() == [{"service": "shop/web", "port": port, "local_endpoints": 2,
                                "status": 200, "listening": True}]  # fmt: skip
    health.sync({"shop/web": (port, 0)}, True)  # its last local endpoint went
    status, _, body = ask(port)
    assert status == 503 and json.loads(body)["localEndpoints"] == 0
    health.sync({"shop/web": (port, 1)}, False)  # an apply left the node unconverged
    status, _, body = ask(port)
    assert status == 503 and json.loads(body)["serviceProxyHealthy"] is False
    health.sync({"shop/web": (other, 1)}, True)  # the port moved
    assert health.ports == {other: "shop/web"}
    assert ask(other)[0] == 200
    with pytest.raises(ConnectionRefusedError):
        ask(port)
    health.sync({}, True)  # the Service went
    assert health.ports == {}
    with pytest.raises(ConnectionRefusedError):
        ask(other)


def test_a_port_held_by_another_process_is_reported_once_and_taken_when_free(
    health: ServiceHealth, caplog: pytest.LogCaptureFixture
) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    caplog.set_level(logging.INFO, logger="reconciler")
    health.sync({"shop/web": (port, 1)}, True)
    health.sync({"shop/web": (port, 1)}, True)
    refused = [r.getMessage() for r in caplog.records if "cannot listen" in r.getMessage()]
    assert len(refused) == 1 and f"shop/web: cannot listen on port {port}" in refused[0]
    assert health.ports == {}
    assert health.report()[0]["listening"] is False
    holder.close()
    health.sync({"shop/web": (port, 1)}, True)  # the next pass takes it
    assert health.ports == {port: "shop/web"} and ask(port)[0] == 200


def test_a_stored_state_keeps_its_health_checks() -> None:
    """What the watcher serves after a pass answered by a stored state."""
    from reconciler.compile.dataplane import compile_desired
    from reconciler.engine import store
    from tests.unit.test_services import FELIX, _checked, ep, eps

    slices = eps("web", [ep("10.0.0.2")])
    state = compile_desired([FELIX, _checked("web", 32001), slices], "n1", [], "/x", "s")
    assert state.health_checks == {"default/web": (32001, 1)}
    assert store.decode(store.encode(state)).health_checks == state.health_checks


def test_the_metrics_show_each_health_checks_answer() -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from reconciler.gitops.metrics import Metrics

    class NoKernel:  # the kernel collector logs that it cannot read, and yields nothing
        bpffs_root, netns, state_dir = "/nonexistent", None, "/nonexistent"

    metrics = Metrics(NoKernel())  # type: ignore[arg-type]
    metrics.observe_health([
        {"service": "shop/web", "port": 32001, "local_endpoints": 2, "status": 200,
         "listening": True},
        {"service": "shop/db", "port": 32002, "local_endpoints": 0, "status": 503,
         "listening": True},
    ])  # fmt: skip
    text = generate_latest(metrics.registry).decode()
    samples = {
        (s.name, s.labels.get("service")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("calico_reconciler_service_health")
    }
    assert samples == {
        ("calico_reconciler_service_health_local_endpoints", "shop/web"): 2.0,
        ("calico_reconciler_service_health_local_endpoints", "shop/db"): 0.0,
        ("calico_reconciler_service_health_ok", "shop/web"): 1.0,
        ("calico_reconciler_service_health_ok", "shop/db"): 0.0,
    }
    metrics.observe_health([])  # the services went
    assert "shop/web" not in generate_latest(metrics.registry).decode()
