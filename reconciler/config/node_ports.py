"""A Service's nodePort against the node port ranges and failsafe ports.

A nodePort must lie in FelixConfiguration `kubeNodePortRanges` (default
30000:32767, as the API server's --service-node-port-range) and never be a
failsafe inbound port: a nodePort of 22 would answer SSH on every node
address. A plan judges each node's ports by its effective configuration
(reconciler/compile/config_limits.py); `--validate` has no node, so it
judges them for every configuration a node can have: the `default`
FelixConfiguration's, and each `node.<name>` one overlaid on it.

The facts a check needs are small tuples (marshal's types), so that the
validation cache keeps them per file and a warm `--validate` judges the
whole source without rebuilding its resources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.config.diagnostics import Diagnostic, format_path
from reconciler.config.felix import DEFAULTS
from reconciler.config.model import Resource

DEFAULT_NODE_PORT_RANGES = ("30000:32767",)
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
FIELDS = ("kubeNodePortRanges", "failsafeInboundHostPorts")

# ("port", ref, file, line, path, protocol, number): a Service's nodePort
# ("felix", name, kubeNodePortRanges or None, failsafeInboundHostPorts or None)
# ("vip", ref, file, line, path, address): a Service's clusterIP
Fact = tuple[Any, ...]


def node_port_ranges(ranges: object) -> list[tuple[int, int]]:
    """kubeNodePortRanges (None: the default) as (first, last) pairs;
    entries that do not parse are the schema's findings and are left out."""
    ranges = ranges if isinstance(ranges, list) else list(DEFAULT_NODE_PORT_RANGES)
    out = []
    for entry in ranges:
        if isinstance(entry, int) and not isinstance(entry, bool):
            out.append((entry, entry))
            continue
        first, _, last = str(entry).partition(":")
        if first.isdigit() and (not last or last.isdigit()):
            out.append((int(first), int(last or first)))
    return out


def failsafe_ports(entries: object) -> set[tuple[str, int]]:
    """failsafeInboundHostPorts (None: the default) as (PROTOCOL, port)."""
    out = set()
    listed = entries if isinstance(entries, list) else DEFAULTS["failsafeInboundHostPorts"]
    for entry in listed:
        if isinstance(entry, Mapping) and isinstance(entry.get("port"), int):
            out.add((str(entry.get("protocol") or "TCP").upper(), entry["port"]))
    return out


def service_node_ports(resource: Resource) -> list[tuple[int, str, int]]:
    """(index in spec.ports, PROTOCOL, nodePort) of a NodePort or
    LoadBalancer Service's ports that name one (0 or absent: the API server
    allocates it)."""
    if resource.kind != "Service" or resource.spec.get("type") not in NODE_PORT_TYPES:
        return []
    out = []
    for i, port in enumerate(resource.spec.get("ports") or ()):
        if not isinstance(port, Mapping):
            continue
        number = port.get("nodePort")
        if not isinstance(number, int) or isinstance(number, bool) or number == 0:
            continue
        out.append((i, str(port.get("protocol") or "TCP").upper(), number))
    return out


def node_port_path(index: int) -> tuple[str, str, int, str]:
    return ("spec", "ports", index, "nodePort")


def facts_of(resource: Resource) -> list[Fact]:
    """What the check needs of one resource: a Service's nodePorts, a
    FelixConfiguration's fields."""
    if resource.kind == "FelixConfiguration":
        spec = resource.spec
        return [("felix", resource.name, *(_plain(spec.get(f)) for f in FIELDS))]
    facts: list[Fact] = [
        ("port", resource.ref, resource.file, resource.line_of(node_port_path(i)),
         format_path(node_port_path(i)), proto, number)
        for i, proto, number in service_node_ports(resource)
    ]  # fmt: skip
    vip = resource.spec.get("clusterIP") if resource.kind == "Service" else None
    if isinstance(vip, str) and vip and vip != "None":
        path = ("spec", "clusterIP")
        facts.append(("vip", resource.ref, resource.file, resource.line_of(path),
                      format_path(path), vip))  # fmt: skip
    return facts


def _plain(value: object) -> object:
    """A field's value as marshal keeps it (lists of str, int and dicts of
    them); None when unset or of another shape (the schema's finding)."""
    if not isinstance(value, list):
        return None
    return [dict(v) if isinstance(v, Mapping) else v for v in value
            if isinstance(v, str | int | Mapping)]  # fmt: skip


def judge(
    proto: str, number: int, ranges: Sequence[tuple[int, int]], failsafe: set[tuple[str, int]]
) -> str:
    """Why nodePort `number`/`proto` is refused under these ranges and
    failsafe ports, or ""."""
    if (proto, number) in failsafe:
        return (f"{number}/{proto} is a failsafe inbound host port "
                "(failsafeInboundHostPorts), never a nodePort")  # fmt: skip
    if not any(a <= number <= b for a, b in ranges):
        shown = ",".join(f"{a}:{b}" for a, b in ranges) or "none"
        return f"{number} is outside the node port ranges (kubeNodePortRanges: {shown})"
    return ""


def configurations(facts: Iterable[Fact]) -> list[tuple[str, Any, Any]]:
    """(for whom, kubeNodePortRanges, failsafeInboundHostPorts) of every
    configuration a node can have: `default` (or the built-in defaults),
    and each `node.<name>` overlaid on it field by field."""
    felix = {f[1]: f for f in facts if f[0] == "felix"}
    base = felix.get("default", ("felix", "default", None, None))
    out = [("", base[2], base[3])]
    for name, fact in sorted(felix.items()):
        if name.startswith("node.") and (fact[2] is not None or fact[3] is not None):
            ranges = fact[2] if fact[2] is not None else base[2]
            failsafe = fact[3] if fact[3] is not None else base[3]
            out.append((f" on node {name[5:]} (FelixConfiguration {name})", ranges, failsafe))
    return out


def shared(facts: Sequence[Fact]) -> list[Diagnostic]:
    """A clusterIP, or a nodePort of a protocol, that two Services claim:
    the API server gives each to one Service only, and a node cannot
    balance one address to two. Every claim is refused, naming the others:
    which one was there first is not in the files, and a push that adds a
    claim must not take a live Service's address over."""
    claims: dict[tuple[Any, ...], list[Fact]] = {}
    for fact in facts:
        if fact[0] in ("port", "vip"):
            claims.setdefault((fact[0], *fact[5:]), []).append(fact)
    out = []
    for (kind, *value), claimants in claims.items():
        if len({c[1] for c in claimants}) < 2:
            continue
        what = f"clusterIP {value[0]}" if kind == "vip" else f"nodePort {value[1]}/{value[0]}"
        for fact in claimants:
            others = ", ".join(f"{c[1]} ({c[2]}:{c[3]})" for c in claimants if c[1] != fact[1])
            out.append(Diagnostic(
                fact[2], fact[3], fact[1], fact[4],
                f"{what} is also claimed by {others}: a Service address belongs to one Service",
            ))  # fmt: skip
    return out


def problems(facts: Sequence[Fact]) -> list[Diagnostic]:
    """Every nodePort refused by some configuration a node can have."""
    ports = [f for f in facts if f[0] == "port"]
    if not ports:
        return []
    out = []
    told: set[tuple[Fact, str]] = set()  # a port refused alike by several: told once
    for whom, ranges, failsafe in configurations(facts):
        judged_ranges, judged_failsafe = node_port_ranges(ranges), failsafe_ports(failsafe)
        for port in ports:
            _, ref, file, line, path, proto, number = port
            why = judge(proto, number, judged_ranges, judged_failsafe)
            if why and (port, why) not in told:
                told.add((port, why))
                out.append(Diagnostic(file, line, ref, path, why + whom))
    return out
