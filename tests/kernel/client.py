"""Client used inside a pod namespace: one request per line of output.

usage: client.py tcp|udp HOST PORT COUNT  -> prints each reply (or ERR <errno name>)
       client.py hold HOST PORT           -> keeps one TCP connection; echoes stdin lines
       client.py line HOST PORT SIZE      -> sends one line of SIZE bytes over TCP and
                                             prints the length of the line echoed back
"""

from __future__ import annotations

import errno
import socket
import sys


def once(proto: str, host: str, port: int) -> str:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(2)
        try:
            s.connect((host, port))
            if proto == "udp":
                s.send(b"hello")
                return s.recv(200).decode()
            return s.makefile("rb").readline().decode().strip()
        except OSError as exc:
            return f"ERR {errno.errorcode.get(exc.errno or 0, 'TIMEOUT')}"


def hold(host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=5) as s:
        lines = s.makefile("rb")
        print(lines.readline().decode().strip(), flush=True)
        for line in sys.stdin:
            s.sendall(line.encode())
            print(lines.readline().decode().strip(), flush=True)


def long_line(host: str, port: int, size: int) -> int:
    with socket.create_connection((host, port), timeout=10) as s:
        lines = s.makefile("rb")
        lines.readline()  # the greeting
        s.sendall(b"y" * size + b"\n")
        return len(lines.readline().strip())


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "line":
        print(long_line(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        for _ in range(int(sys.argv[4])):
            print(once(sys.argv[1], sys.argv[2], int(sys.argv[3])), flush=True)
