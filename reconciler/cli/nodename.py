"""This node's name, looked up as Calico's node agent does."""

from __future__ import annotations

import os
import socket

NODENAME_FILE = "/var/lib/calico/nodename"  # written by calico/node at start


def resolve_node(
    given: str | None,
    environ: dict[str, str] | None = None,
    nodename_file: str = NODENAME_FILE,
) -> tuple[str, str]:
    """(name, where it came from): --node, then $NODENAME, then Calico's
    nodename file, then the hostname."""
    env = os.environ if environ is None else environ
    if given:
        return given, "--node"
    if env.get("NODENAME"):
        return env["NODENAME"], "$NODENAME"
    try:
        with open(nodename_file, encoding="utf-8") as fh:
            name = fh.read().strip()
    except OSError:
        name = ""
    if name:
        return name, nodename_file
    return socket.gethostname(), "the hostname"
