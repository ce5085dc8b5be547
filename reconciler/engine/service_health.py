"""kube-proxy's service health checks, served while `--watch` runs.

A LoadBalancer Service with externalTrafficPolicy Local has a
healthCheckNodePort: the load balancer asks every node there whether to
send it traffic. Each such port gets an HTTP server in the node's network
namespace that answers any request with 200 when this node has a ready
endpoint of the Service and the node is converged, else 503, with the body
kube-proxy sends: the Service, its local endpoint count and whether the
proxy is healthy. What to serve comes from the converged desired state
(DesiredState.health_checks); `sync` opens, moves and closes servers to
match it.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.kernel.rtnetlink import socket_in

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


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _reply(self, with_body: bool) -> None:
        status, body = self.server.owner.answer_for(self.server.port)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._reply(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._reply(False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return  # a load balancer asks every few seconds: not worth a line


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, host: str, port: int, owner: ServiceHealth) -> None:
        super().__init__((host, port), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock  # made in the node's namespace
        self.port, self.owner = port, owner
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            self.server_close()
            raise


class ServiceHealth:
    """The health check servers of one node (`netns`: its namespace, None
    for this process's own)."""

    def __init__(self, netns: str | None, host: str = "0.0.0.0") -> None:
        self.netns, self.host = netns, host
        self._lock = threading.Lock()
        self._checks: dict[str, tuple[int, int]] = {}
        self._healthy = False
        self._servers: dict[int, tuple[str, _Server]] = {}  # port -> (service, server)
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
                server.shutdown()
                server.server_close()
                log.info("health check of %s on port %d closed", name, port)
        for port, name in sorted(wanted.items()):
            if port in self._servers:
                continue
            try:
                server = _Server(self._socket(), self.host, port, self)
            except OSError as exc:
                if port not in self._refused:
                    log.warning("health check of %s: cannot listen on port %d: %s", name, port, exc)
                self._refused.add(port)
                continue
            self._refused.discard(port)
            self._servers[port] = (name, server)
            threading.Thread(
                target=server.serve_forever, name=f"health-{port}", daemon=True
            ).start()
            log.info("health check of %s on port %d", name, port)

    def _socket(self) -> socket.socket:
        if self.netns:
            return socket_in(self.netns, socket.AF_INET, socket.SOCK_STREAM)
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

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
