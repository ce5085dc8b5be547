"""kube-proxy's service health checks, served while `--watch` runs.

A LoadBalancer Service with externalTrafficPolicy Local has a
healthCheckNodePort: the load balancer asks every node there whether to
send it traffic. Each such port gets an HTTP server in the node's network
namespace (http_server.py) that answers any request with 200 when this node
has a ready endpoint of the Service and the node is converged, else 503,
with the body kube-proxy sends: the Service, its local endpoint count and
whether the proxy is healthy. What to serve comes from the converged desired state
(DesiredState.health_checks); `sync` opens, moves and closes servers to
match it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from reconciler.engine.http_server import WsgiApp, close_server, open_server

log = logging.getLogger("reconciler")


def answer(name: str, local_endpoints: int, healthy: bool) -> tuple[int, bytes]:
    """The status and JSON body for service `name` ("namespace/name")."""
    namespace, _, short = name.partition("/")
    body = {
        "service": {"namespace": namespace, "name": short},
        "localEndpoints": local_endpoints,
        "serviceProxyHealthy": healthy,
    }
    status = 200 if local_endpoints > 0 and healthy else 503
    return status, json.dumps(body, indent=2).encode() + b"\n"


def _app(owner: ServiceHealth, port: int) -> WsgiApp:
    """The WSGI application of one health check port: any path, GET or
    HEAD, answered as `owner` says for `port`."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        status, body = owner.answer_for(port)
        start_response(f"{status} {HTTPStatus(status).phrase}", [
            ("Content-Type", "application/json"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Length", str(len(body))),
        ])  # fmt: skip
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    return app


class ServiceHealth:
    """The health check servers of one node (`netns`: its namespace, None
    for this process's own)."""

    def __init__(self, netns: str | None, host: str = "0.0.0.0") -> None:
        self.netns, self.host = netns, host
        self._lock = threading.Lock()
        self._checks: dict[str, tuple[int, int]] = {}
        self._healthy = False
        self._servers: dict[int, tuple[str, Any]] = {}  # port -> (service, server)
        self._refused: set[int] = set()  # ports that would not bind, reported once

    def answer_for(self, port: int) -> tuple[int, bytes]:
        with self._lock:
            name = next((n for n, (p, _) in self._checks.items() if p == port), None)
            if name is None:  # closing: the service went while a request came in
                return 503, b"{}\n"
            return answer(name, self._checks[name][1], self._healthy)

    def sync(self, checks: Mapping[str, tuple[int, int]], healthy: bool) -> None:
        """Serve `checks` ("namespace/name" -> (port, ready local endpoints));
        `healthy`: the node is converged. A port that will not bind (another
        process holds it) is logged and tried again at the next sync."""
        with self._lock:
            self._checks, self._healthy = dict(checks), healthy
        wanted = {port: name for name, (port, _) in checks.items()}
        for port, (name, server) in list(self._servers.items()):
            if wanted.get(port) != name:
                del self._servers[port]
                close_server(server)
                log.info("health check of %s on port %d closed", name, port)
        for port, name in sorted(wanted.items()):
            if port in self._servers:
                continue
            try:
                server = open_server(self.host, port, _app(self, port), self.netns)
            except OSError as exc:
                if port not in self._refused:
                    log.warning("health check of %s: cannot listen on port %d: %s", name, port, exc)
                self._refused.add(port)
                continue
            self._refused.discard(port)
            self._servers[port] = (name, server)
            log.info("health check of %s on port %d", name, port)

    def report(self) -> list[dict[str, Any]]:
        """What each health check answers now, for the watcher's state:
        service, port, local endpoints, status, and whether it listens."""
        with self._lock:
            checks, healthy = dict(self._checks), self._healthy
        return [
            {"service": name, "port": port, "local_endpoints": count,
             "status": answer(name, count, healthy)[0], "listening": port in self._servers}
            for name, (port, count) in sorted(checks.items())
        ]  # fmt: skip

    @property
    def ports(self) -> dict[int, str]:
        """The ports served now, and whose."""
        return {port: name for port, (name, _) in self._servers.items()}

    def close(self) -> None:
        self.sync({}, False)
