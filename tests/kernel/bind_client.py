"""One TCP request from a chosen source address: bind_client.py SRC HOST PORT."""

from __future__ import annotations

import socket
import sys

if __name__ == "__main__":
    src, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with socket.socket() as s:
        s.settimeout(2)
        s.bind((src, 0))
        try:
            s.connect((host, port))
            print(s.makefile("rb").readline().decode().strip())
        except OSError as exc:
            print(f"ERR {exc}")
