"""What FelixConfiguration says of the agent (metrics, health probes, logs),
and the watcher's servers following it. Servers here listen on loopback in
this namespace only."""

from __future__ import annotations

import json
import logging
import socket
import urllib.error
import urllib.request

import pytest

from reconciler.compile.agent import AgentSettings, Listen, agent_settings
from reconciler.compile.dataplane import Host, compile_desired
from reconciler.config.enforcement import METRICS_TLS_REASON, not_enforced
from reconciler.config.felix import effective_config
from reconciler.gitops.listeners import (
    METRICS,
    PROBES,
    PROXY,
    Endpoint,
    Listeners,
    make_app,
    wanted,
)
from reconciler.gitops.probes import Probes
from tests.unit.test_compile import LINKS, res


def felix(name: str = "default", **spec):
    return res("FelixConfiguration", name, {"bpfEnabled": True, **spec})


def settings(*resources, node: str = "n1") -> AgentSettings:
    return agent_settings(effective_config(resources, node))


def test_calico_defaults_serve_kube_proxys_health_check_and_log_info():
    assert settings(felix()) == AgentSettings(
        metrics=None, health=None, proxy_health=Listen("", 10256), process_metrics=True,
        runtime_metrics=True, log_level="INFO",
    )  # fmt: skip
    # kube-proxy's health check: off with port 0, and outside BPF mode
    assert settings(felix(bpfKubeProxyHealthzPort=0)).proxy_health is None
    assert settings(felix(bpfKubeProxyHealthzPort=10258)).proxy_health == Listen("", 10258)
    off = res("FelixConfiguration", "default", {"bpfEnabled": False})
    assert settings(off).proxy_health is None
    # a port without its switch serves nothing, as in Felix
    assert settings(felix(healthPort=9099, prometheusMetricsPort=9091)).metrics is None


def test_enabled_endpoints_and_their_defaults():
    got = settings(felix(prometheusMetricsEnabled=True, healthEnabled=True))
    assert got.metrics == Listen("", 9091)  # every address
    assert got.health == Listen("localhost", 9099)
    got = settings(
        felix(prometheusMetricsEnabled=True, prometheusMetricsHost="10.0.0.1",
              prometheusMetricsPort=9300, healthEnabled=True, healthHost="0.0.0.0",
              healthPort=9400, prometheusProcessMetricsEnabled=False,
              prometheusGoMetricsEnabled=False)  # fmt: skip
    )
    assert (got.metrics, got.health) == (Listen("10.0.0.1", 9300), Listen("0.0.0.0", 9400))
    assert (got.process_metrics, got.runtime_metrics) == (False, False)
    assert got.metrics.render() == "10.0.0.1:9300"
    assert Listen("", 9091).render() == "*:9091" and Listen("::1", 1).render() == "[::1]:1"


def test_a_node_override_changes_single_fields():
    base = felix(prometheusMetricsEnabled=True, prometheusMetricsPort=9300)
    override = felix("node.n1", prometheusMetricsHost="127.0.0.1", logSeverityScreen="Warning")
    assert settings(base, override).metrics == Listen("127.0.0.1", 9300)
    assert settings(base, override).log_level == "WARNING"
    assert settings(base, override, node="n2").metrics == Listen("", 9300)


@pytest.mark.parametrize(
    ("felix_level", "python_level"),
    [("Trace", "DEBUG"), ("Debug", "DEBUG"), ("Info", "INFO"), ("Warning", "WARNING"),
     ("Error", "ERROR"), ("Fatal", "CRITICAL")],  # fmt: skip
)
def test_log_severity_screen_maps_to_python_levels(felix_level, python_level):
    level = settings(felix(logSeverityScreen=felix_level)).log_level
    assert level == python_level
    assert isinstance(logging.getLevelName(level), int)


def test_metrics_over_tls_are_not_served_in_the_clear():
    resource = felix(prometheusMetricsEnabled=True, prometheusMetricsCertFile="/etc/tls.crt",
                     prometheusMetricsKeyFile="/etc/tls.key")  # fmt: skip
    assert settings(resource).metrics is None
    listed = {(n.field, n.reason) for n in not_enforced([resource])}
    assert ("spec.prometheusMetricsCertFile", METRICS_TLS_REASON) in listed
    assert ("spec.prometheusMetricsKeyFile", METRICS_TLS_REASON) in listed
    assert not any(f == "spec.prometheusMetricsEnabled" for f, _ in listed)


def test_the_agent_fields_are_no_longer_listed_as_not_enforced():
    resource = felix(prometheusMetricsEnabled=True, prometheusMetricsPort=9091, healthPort=9099,
                     healthEnabled=True, healthHost="localhost", prometheusMetricsHost="",
                     prometheusGoMetricsEnabled=True, prometheusProcessMetricsEnabled=True,
                     logSeverityScreen="Info", bpfKubeProxyHealthzPort=10256,
                     reportingInterval="0s")  # fmt: skip
    assert [n.field for n in not_enforced([resource])] == ["spec.reportingInterval"]


def test_the_desired_state_carries_the_settings_even_with_bpf_off():
    host = Host(tuple(LINKS))
    on = compile_desired([felix(healthEnabled=True)], "n1", host, "/sys/fs/bpf/x", "d")
    assert on.agent.health == Listen("localhost", 9099)
    off = res("FelixConfiguration", "default", {"bpfEnabled": False, "healthEnabled": True})
    state = compile_desired([off], "n1", host, "/sys/fs/bpf/x", "d")
    assert not state.enabled and state.agent.health == Listen("localhost", 9099)


def test_wanted_endpoints():
    both = AgentSettings(metrics=Listen("", 9091), health=Listen("localhost", 9099))
    assert set(wanted(both, metrics_flag=False)) == {
        Endpoint(Listen("", 9091), frozenset({METRICS})),
        Endpoint(Listen("localhost", 9099), frozenset({PROBES})),
    }
    proxy = AgentSettings(metrics=Listen("", 9091), proxy_health=Listen("", 10256))
    assert set(wanted(proxy, metrics_flag=True)) == {
        Endpoint(Listen("", 10256), frozenset({PROXY}))
    }
    # --metrics-addr serves the metrics: not again where the config says
    assert wanted(both, metrics_flag=True) == (
        Endpoint(Listen("localhost", 9099), frozenset({PROBES})),
    )
    shared = AgentSettings(metrics=Listen("127.0.0.1", 9000), health=Listen("127.0.0.1", 9000))
    one = Endpoint(Listen("127.0.0.1", 9000), frozenset({METRICS, PROBES}))
    assert wanted(shared, False) == (one,)
    assert wanted(None, False) == () and wanted(AgentSettings(), False) == ()


def _call(app, path):
    seen = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return seen["status"], body


def test_an_app_serves_only_what_it_was_given():
    probes = Probes(30)

    def metrics_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"metric 1\n"]

    only_probes = make_app(None, probes)
    status, body = _call(only_probes, "/readiness")
    assert status.startswith("503") and json.loads(body)["ready"] is False
    assert _call(only_probes, "/liveness")[0].startswith("200")
    assert _call(only_probes, "/metrics")[0].startswith("404")
    only_metrics = make_app(metrics_app, None)
    assert _call(only_metrics, "/metrics") == ("200 OK", b"metric 1\n")
    assert _call(only_metrics, "/readiness")[0].startswith("404")
    both = make_app(metrics_app, probes)
    assert _call(both, "/metrics")[1] == b"metric 1\n"
    assert _call(both, "/liveness")[0].startswith("200")
    assert _call(both, "/healthz")[0].startswith("404")  # not asked for here
    proxy = make_app(None, None, probes)
    assert _call(proxy, "/healthz")[0].startswith("503")  # no pass yet
    assert _call(proxy, "/readiness")[0].startswith("404")
    probes.observe_pass("applied", "dir:a")
    status, body = _call(proxy, "/healthz")
    assert status.startswith("200") and json.loads(body)["nodeEligible"] is True
    status, body = _call(proxy, "/livez")
    assert status.startswith("200") and "nodeEligible" not in json.loads(body)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_listeners_open_move_and_close_servers(caplog):
    def metrics_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"reconciler_metric 1\n"]

    probes = Probes(30)
    listeners = Listeners(None, metrics_app, probes)
    first, second = free_port(), free_port()
    try:
        metrics_at = Endpoint(Listen("127.0.0.1", first), frozenset({METRICS}))
        probes_at = Endpoint(Listen("127.0.0.1", second), frozenset({PROBES}))
        listeners.sync([metrics_at, probes_at])
        assert get(first, "/metrics") == (200, b"reconciler_metric 1\n")
        assert get(first, "/readiness")[0] == 404  # probes are served elsewhere
        assert get(second, "/readiness")[0] == 503  # no pass yet
        probes.observe_pass("applied", "dir:abc")
        status, body = get(second, "/readiness")
        assert status == 200 and json.loads(body)["source"] == "dir:abc"
        # the config moves the metrics: the old port closes, the new one serves
        third = free_port()
        moved = Endpoint(Listen("127.0.0.1", third), frozenset({METRICS}))
        listeners.sync([moved, probes_at])
        assert refused(first) and get(third, "/metrics")[0] == 200
        assert get(second, "/liveness")[0] == 200  # untouched
        assert set(listeners.serving) == {moved, probes_at}
        listeners.sync([])
        assert refused(third) and refused(second) and not listeners.serving
    finally:
        listeners.close()


def test_a_port_that_will_not_bind_is_retried_at_the_next_sync(caplog):
    listeners = Listeners(None, make_app(None, None), Probes(30))
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    endpoint = Endpoint(Listen("127.0.0.1", port), frozenset({PROBES}))
    try:
        with caplog.at_level(logging.WARNING, logger="reconciler.gitops.listeners"):
            listeners.sync([endpoint])
            listeners.sync([endpoint])
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, warnings  # said once, not at every pass
        assert f"cannot listen on 127.0.0.1:{port}" in warnings[0]
        assert "probes (/liveness, /readiness)" in warnings[0]
        assert not listeners.serving
        assert listeners.report() == [{"serves": "probes (/liveness, /readiness)",
                                       "address": f"127.0.0.1:{port}", "listening": False}]
        busy.close()
        listeners.sync([endpoint])
        assert set(listeners.serving) == {endpoint}
        assert listeners.report()[0]["listening"] is True
        assert get(port, "/liveness")[0] == 200
    finally:
        busy.close()
        listeners.close()
