"""An HTTP server for a WSGI application, listening in a network namespace
(the node's, for the watcher's metrics and probes)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from reconciler.kernel.rtnetlink import inside

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # a scrape or probe every few seconds is not news


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def _sockets(host: str, port: int, netns: str | None) -> list[tuple[socket.socket, str]]:
    """Sockets to try for (host, port), made inside `netns`, each with the
    address to bind: "" is every address, IPv6 and IPv4 at once where the
    namespace has IPv6, else IPv4's."""
    with inside(netns):
        if host:  # a name's IPv4 address first ("localhost" is 127.0.0.1 wherever ::1 is too)
            resolved = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            resolved.sort(key=lambda a: a[0] != socket.AF_INET)
            family, kind, proto, _, address = resolved[0]
            return [(socket.socket(family, kind, proto), str(address[0]))]
        found = []
        try:
            both = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            both.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            found.append((both, "::"))
        except OSError:
            pass
        return [*found, (socket.socket(socket.AF_INET, socket.SOCK_STREAM), "0.0.0.0")]


def open_server(host: str, port: int, app: WsgiApp, netns: str | None = None) -> _Server:
    """An HTTP server for `app` on (host, port) in `netns`, serving in a
    daemon thread. Raises OSError when the address will not bind."""
    candidates = _sockets(host, port, netns)
    error: OSError | None = None
    for i, (sock, address) in enumerate(candidates):
        server = _Server((address, port), _QuietHandler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        try:
            server.server_bind()
            server.server_activate()
        except OSError as exc:
            server.server_close()
            error = exc
            continue
        for other, _ in candidates[i + 1 :]:
            other.close()
        server.set_app(app)
        threading.Thread(
            target=server.serve_forever, args=(0.1,), name=f"http-{port}", daemon=True
        ).start()  # (polling every 0.1 s: a close waits for the loop to notice)
        return server
    assert error is not None
    raise error


def close_server(server: Any) -> None:
    server.shutdown()
    server.server_close()
