"""A sandbox backend pod's server (demo and tests): says who it is and who it sees.

TCP: sends "<name> <peer ip>\\n", then echoes every line back prefixed with the
name (so a long-lived connection shows which backend it is still talking to).
UDP: answers each datagram with "<name> <peer ip>".
"""

from __future__ import annotations

import socket
import sys
import threading


def serve_tcp(name: str, port: int) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(128)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=_session, args=(conn, name, peer[0]), daemon=True).start()


def _session(conn: socket.socket, name: str, peer: str) -> None:
    with conn:
        conn.sendall(f"{name} {peer}\n".encode())
        for line in conn.makefile("rb"):
            conn.sendall(f"{name} {line.decode().strip()}\n".encode())


def serve_udp(name: str, port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("0.0.0.0", port))
    while True:
        _data, peer = srv.recvfrom(2048)
        srv.sendto(f"{name} {peer[0]}".encode(), peer)


if __name__ == "__main__":
    who, tcp_port = sys.argv[1], int(sys.argv[2])
    threading.Thread(target=serve_udp, args=(who, tcp_port), daemon=True).start()
    print("ready", flush=True)
    serve_tcp(who, tcp_port)
