"""Plan-time limits that need the node's whole configuration.

- A Service's nodePort must lie in the node port ranges
  (FelixConfiguration `kubeNodePortRanges`, default 30000:32767, as the API
  server's --service-node-port-range) and never be a failsafe inbound port:
  a nodePort of 22 would answer SSH on every node address.
- Durations the datapath keeps in 32-bit fields must fit them, so a plan
  that cannot be applied whole is refused before anything is applied.

Each problem is a `file:line: Kind/name: field: message` string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.config import felix
from reconciler.config.model import Resource

DEFAULT_NODE_PORT_RANGES = ("30000:32767",)
MAX_U32 = 2**32 - 1
_NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def node_port_ranges(config: Mapping[str, Any]) -> list[tuple[int, int]]:
    """kubeNodePortRanges as (first, last) pairs; entries that do not parse
    are the schema's findings and are left out."""
    ranges = []
    for entry in config.get("kubeNodePortRanges") or DEFAULT_NODE_PORT_RANGES:
        if isinstance(entry, int) and not isinstance(entry, bool):
            ranges.append((entry, entry))
            continue
        first, _, last = str(entry).partition(":")
        if first.isdigit() and (not last or last.isdigit()):
            ranges.append((int(first), int(last or first)))
    return ranges


def _failsafe(config: Mapping[str, Any]) -> set[tuple[str, int]]:
    out = set()
    for entry in config.get("failsafeInboundHostPorts") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("port"), int):
            out.add((str(entry.get("protocol") or "TCP").upper(), entry["port"]))
    return out


def _where(resource: Resource, path: Sequence[str | int]) -> str:
    text = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
    from reconciler.config.load import with_lines  # an error path only: it may read the file

    line = with_lines(resource).line_of(tuple(path))
    return f"{resource.file}:{line}: {resource.ref}: {text}"


def node_port_problems(resources: Iterable[Resource], config: Mapping[str, Any]) -> list[str]:
    ranges = node_port_ranges(config)
    shown = ",".join(f"{a}:{b}" for a, b in ranges) or "none"
    failsafe = _failsafe(config)
    problems = []
    for svc in resources:
        if svc.kind != "Service" or svc.spec.get("type") not in _NODE_PORT_TYPES:
            continue
        for i, port in enumerate(svc.spec.get("ports") or ()):
            if not isinstance(port, Mapping):
                continue
            number = port.get("nodePort")
            if not isinstance(number, int) or isinstance(number, bool) or number == 0:
                continue  # 0 or absent: the API server would allocate one
            where = _where(svc, ("spec", "ports", i, "nodePort"))
            proto = str(port.get("protocol") or "TCP").upper()
            if (proto, number) in failsafe:
                problems.append(
                    f"{where}: {number}/{proto} is a failsafe inbound host port "
                    "(failsafeInboundHostPorts), never a nodePort"
                )
            elif not any(a <= number <= b for a, b in ranges):
                problems.append(
                    f"{where}: {number} is outside the node port ranges "
                    f"(kubeNodePortRanges: {shown})"
                )
    return problems


def timeout_problems(resources: Iterable[Resource], node: str) -> list[str]:
    """bpfConntrackTimeouts that do not fit the datapath's 32-bit seconds."""
    felixes = {r.name: r for r in resources if r.kind == "FelixConfiguration"}
    problems = []
    for key in felix.DEFAULTS["bpfConntrackTimeouts"]:
        source = None
        for name in ("default", f"node.{node}"):
            resource = felixes.get(name)
            timeouts = resource.spec.get("bpfConntrackTimeouts") if resource else None
            if isinstance(timeouts, Mapping) and timeouts.get(key) is not None:
                source = resource
        if source is None:
            continue
        value = source.spec["bpfConntrackTimeouts"][key]
        try:
            seconds = felix.parse_duration(str(value))
        except ValueError:
            continue  # the schema's finding
        if seconds > MAX_U32:
            where = _where(source, ("spec", "bpfConntrackTimeouts", key))
            problems.append(
                f"{where}: {value} is longer than the datapath can hold ({MAX_U32} seconds)"
            )
    return problems


def problems(resources: Sequence[Resource], node: str, config: Mapping[str, Any]) -> list[str]:
    return node_port_problems(resources, config) + timeout_problems(resources, node)
