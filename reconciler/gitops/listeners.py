"""The watcher's HTTP endpoints: Prometheus metrics and the health probes.

`--metrics-addr` serves both in this process's network namespace for the
watcher's life. FelixConfiguration may ask for them too, as it asks Felix:
`prometheusMetricsEnabled` (metrics on prometheusMetricsHost and Port) and
`healthEnabled` (`/liveness` and `/readiness` on healthHost and Port),
and in BPF mode `bpfKubeProxyHealthzPort` (kube-proxy's `/healthz` and
`/livez`, on every address; reconciler.gitops.probes).
Those are served in the node's namespace (`--netns`, else this process's)
and follow the configuration: after each pass `Listeners.sync` opens,
moves and closes servers to match what the converged state asks
(reconciler.compile.agent). `--metrics-addr` takes the metrics' place when
both are given. One address asked for both gets one server with both.
A port that will not bind is logged and tried again at the next sync.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.compile.agent import AgentSettings, Listen
from reconciler.engine.http_server import WsgiApp, close_server, open_server
from reconciler.gitops.probes import Probes

log = logging.getLogger(__name__)

METRICS, PROBES, PROXY = "metrics", "probes", "kube-proxy"
PROBE_PATHS = ("/liveness", "/readiness")
PROXY_PATHS = ("/healthz", "/livez")

@dataclass(frozen=True, slots=True)
class Endpoint:
    """One server: where it listens, and what it serves."""

    listen: Listen
    serves: frozenset[str]  # METRICS and/or PROBES


def wanted(agent: AgentSettings | None, metrics_flag: bool) -> tuple[Endpoint, ...]:
    """The endpoints the configuration asks for. `metrics_flag`: metrics are
    served on --metrics-addr, so not again where FelixConfiguration says."""
    by_listen: dict[Listen, set[str]] = {}
    if agent is not None and agent.metrics is not None and not metrics_flag:
        by_listen.setdefault(agent.metrics, set()).add(METRICS)
    if agent is not None and agent.health is not None:
        by_listen.setdefault(agent.health, set()).add(PROBES)
    if agent is not None and agent.proxy_health is not None:
        by_listen.setdefault(agent.proxy_health, set()).add(PROXY)
    return tuple(Endpoint(listen, frozenset(what)) for listen, what in by_listen.items())


def make_app(
    metrics_app: WsgiApp | None, probes: Probes | None, proxy: Probes | None = None
) -> WsgiApp:
    """Probes at PROBE_PATHS (when `probes`), kube-proxy's health check at
    PROXY_PATHS (when `proxy`), metrics at every other path (when served),
    404 elsewhere."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        answer = None
        if probes is not None and path in PROBE_PATHS:
            answer = probes.liveness() if path == "/liveness" else probes.readiness()
        elif proxy is not None and path in PROXY_PATHS:
            answer = proxy.proxy_health(node=path == "/healthz")
        elif metrics_app is not None and path not in PROBE_PATHS + PROXY_PATHS:
            return metrics_app(environ, start_response)
        headers = [("X-Content-Type-Options", "nosniff")]
        if answer is not None:
            body = json.dumps(answer.body, sort_keys=True).encode() + b"\n"
            reason = "OK" if answer.status == 200 else "Service Unavailable"
            status = f"{answer.status} {reason}"
            headers.append(("Content-Type", "application/json"))
        else:
            body, status = b"not found\n", "404 Not Found"
            headers.append(("Content-Type", "text/plain"))
        start_response(status, [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return app


class Listeners:
    """The servers FelixConfiguration asks for, in the node's namespace."""

    def __init__(
        self,
        netns: str | None,
        metrics_app: WsgiApp,
        probes: Probes,
        opener: Callable[[str, int, WsgiApp, str | None], Any] = open_server,
    ) -> None:
        self.netns, self.metrics_app, self.probes, self._open = netns, metrics_app, probes, opener
        self._servers: dict[Endpoint, Any] = {}
        self._refused: set[Endpoint] = set()  # logged once until it binds
        self._wanted: list[Endpoint] = []

    def sync(self, endpoints: Iterable[Endpoint], quiet: bool = False) -> None:
        """Serve `endpoints`, and nothing else; `quiet`: closing is not news
        (the watcher stopping)."""
        want = set(endpoints)
        self._wanted = sorted(want, key=_order)
        for endpoint in [e for e in self._servers if e not in want]:
            close_server(self._servers.pop(endpoint))
            log.log(logging.DEBUG if quiet else logging.INFO, "%s on %s closed",
                    _what(endpoint), endpoint.listen.render())  # fmt: skip
        self._refused &= want
        for endpoint in sorted(want - self._servers.keys(), key=_order):
            app = make_app(
                self.metrics_app if METRICS in endpoint.serves else None,
                self.probes if PROBES in endpoint.serves else None,
                self.probes if PROXY in endpoint.serves else None,
            )
            try:
                server = self._open(endpoint.listen.host, endpoint.listen.port, app, self.netns)
            except OSError as exc:
                if endpoint not in self._refused:
                    log.warning("%s: cannot listen on %s: %s", _what(endpoint),
                                endpoint.listen.render(), exc)  # fmt: skip
                self._refused.add(endpoint)
                continue
            self._refused.discard(endpoint)
            self._servers[endpoint] = server
            log.info("%s on %s", _what(endpoint), endpoint.listen.render())

    def report(self) -> list[dict[str, Any]]:
        """What the configuration asks to serve, and whether it listens,
        for the watcher's state (`--status`)."""
        return [
            {"serves": _what(e), "address": e.listen.render(), "listening": e in self._servers}
            for e in self._wanted
        ]

    @property
    def serving(self) -> Mapping[Endpoint, Any]:
        return dict(self._servers)

    def close(self) -> None:
        self.sync((), quiet=True)


_WHAT = {
    METRICS: "metrics (/metrics)",
    PROBES: "probes (/liveness, /readiness)",
    PROXY: "kube-proxy's health check (/healthz, /livez)",
}


def _what(endpoint: Endpoint) -> str:
    return " and ".join(_WHAT[s] for s in sorted(endpoint.serves))


def _order(endpoint: Endpoint) -> tuple[str, int]:
    return endpoint.listen.host, endpoint.listen.port
