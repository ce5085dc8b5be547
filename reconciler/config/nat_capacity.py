"""The NAT frontends every node programs whatever its addresses, against
FelixConfiguration bpfMapSizeNATFrontend.

Each TCP or UDP port of a Service has a frontend on every node for
each IPv4 clusterIP, externalIP and load balancer ingress IP, unless the
address is within bpfExcludeCIDRsFromNAT; a nodePort adds one per node
address, which only a node knows. So the frontends without the nodePorts
are a lower bound of what any node programs, and a map size below it is
refused by every node with that configuration: `--validate` (and so the
pre-receive hook) refuses it for every configuration a node can have (the
`default` FelixConfiguration's, each `node.<name>` overlaid on it), a plan
for its own node's, at the field that sets the size; the plan's NAT compile
still counts the nodePorts (reconciler.compile.nat_tables).

Facts are small tuples (marshal's types), as node_ports' are, so that the
validation cache keeps them per file.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.config.diagnostics import Diagnostic, format_path
from reconciler.config.felix import DEFAULTS
from reconciler.config.model import Resource

# The protocols the datapath balances (compile.services.PROTOCOLS; a unit
# test keeps them equal).
PROTOCOLS = ("TCP", "UDP")
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"  # another proxy's Service
SIZE = "bpfMapSizeNATFrontend"
EXCLUDED = "bpfExcludeCIDRsFromNAT"
SIZE_PATH = ("spec", SIZE)

# ("nat-fe", ref, file, line, [(ip, port, proto), ...]): a Service's frontends
#   but its nodePorts'
# ("nat-size", name, file, line, size or None, excluded or None): a
#   FelixConfiguration's fields, `line` that of its size field
Fact = tuple[Any, ...]


def frontends(resource: Resource) -> list[tuple[str, int, str]]:
    """(address, port, PROTOCOL) of each frontend of a Service that every
    node programs (its nodePorts aside); an address both an externalIP and
    a load balancer IP is one frontend. None for a Service kube-proxy
    leaves alone (headless, ExternalName, another proxy's)."""
    spec = resource.spec
    if (
        PROXY_NAME_LABEL in resource.labels
        or spec.get("type") == "ExternalName"
        or spec.get("clusterIP") in ("None", None, "")
    ):
        return []
    ips = [*(spec.get("clusterIPs") or [spec.get("clusterIP")]), *(spec.get("externalIPs") or [])]
    ingress = ((resource.body.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    ips += [i.get("ip") for i in ingress or () if isinstance(i, Mapping)]
    addresses = sorted({ip for ip in ips if _ipv4(ip)})
    out = []
    for port in spec.get("ports") or ():
        if not isinstance(port, Mapping) or not isinstance(port.get("port"), int):
            continue
        proto = str(port.get("protocol") or "TCP")
        if proto in PROTOCOLS:
            out += [(ip, port["port"], proto) for ip in addresses]
    return sorted(set(out))


def most(resources: Iterable[Resource]) -> int:
    """At least as many frontends as `frontends` finds in these Services,
    counted without reading an address: a plan's quick way past the count."""
    total = 0
    for svc in resources:
        if svc.kind == "Service":
            spec, status = svc.spec, svc.body.get("status") or {}
            ips = len(spec.get("clusterIPs") or [None]) + len(spec.get("externalIPs") or ())
            ips += len((status.get("loadBalancer") or {}).get("ingress") or ())
            total += len(spec.get("ports") or ()) * ips
    return total


def facts_of(resource: Resource) -> list[Fact]:
    if resource.kind == "FelixConfiguration":
        size = resource.spec.get(SIZE)
        size = size if isinstance(size, int) and not isinstance(size, bool) else None
        excluded = resource.spec.get(EXCLUDED)
        excluded = [str(c) for c in excluded] if isinstance(excluded, list) else None
        line = resource.line_of(SIZE_PATH) if size is not None else resource.line
        return [("nat-size", resource.name, resource.file, line, size, excluded)]
    if resource.kind == "Service":
        found = frontends(resource)
        return [("nat-fe", resource.ref, resource.file, resource.line, found)] if found else []
    return []


def configurations(facts: Iterable[Fact]) -> list[tuple[str, Fact | None, int, list[str]]]:
    """(for whom, the fact of the FelixConfiguration that sets the size or
    None, size, excluded CIDRs) of every configuration a node can have."""
    felix = {f[1]: f for f in facts if f[0] == "nat-size"}
    base = felix.get("default")
    base_size = base[4] if base is not None and base[4] is not None else None
    base_excluded = base[5] if base is not None and base[5] is not None else []
    out = [("", base if base_size is not None else None,
            base_size if base_size is not None else DEFAULTS[SIZE], base_excluded)]  # fmt: skip
    for name, fact in sorted(felix.items()):
        if not name.startswith("node.") or (fact[4] is None and fact[5] is None):
            continue
        setter = fact if fact[4] is not None else out[0][1]
        size = fact[4] if fact[4] is not None else out[0][2]
        excluded = fact[5] if fact[5] is not None else base_excluded
        out.append((f" on node {name[5:]}", setter, size, excluded))
    return out


def count(facts: Iterable[Fact], excluded: Sequence[str]) -> int:
    """The frontends every node programs under these excluded CIDRs."""
    nets = [n for n in (_network(c) for c in excluded) if n is not None]
    return sum(
        1
        for fact in facts
        if fact[0] == "nat-fe"
        for ip, _, _ in fact[4]
        if not any(ipaddress.ip_address(ip) in net for net in nets)
    )


def too_small(size: int, frontends: int, whom: str = "") -> str:
    return (
        f"{size} is too small for {frontends} frontends{whom} (each Service port's clusterIPs, "
        "externalIPs and load balancer IPs; nodePorts add one per node address); raise it to "
        f"at least {frontends}, with room for the nodePorts"
    )


def problems(facts: Sequence[Fact]) -> list[Diagnostic]:
    """A frontend map size that some configuration a node can have makes too
    small for the frontends every such node programs."""
    services = [f for f in facts if f[0] == "nat-fe"]
    if not services:
        return []
    out = []
    for whom, setter, size, excluded in configurations(facts):
        needed = count(services, excluded)
        if needed <= size:
            continue
        if setter is not None:
            where = (setter[2], setter[3], f"FelixConfiguration/{setter[1]}")
            out.append(Diagnostic(*where, format_path(SIZE_PATH), too_small(size, needed, whom)))
        else:  # the built-in size: told at the Service that overflows it
            last = services[-1]
            message = too_small(size, needed, whom).replace(
                f"{size} is", f"{SIZE} (default {size}) is", 1
            )
            out.append(Diagnostic(last[2], last[3], last[1], "spec", message))
    return out


def _ipv4(text: object) -> bool:
    """A dotted quad, strictly, as the NAT compile reads one (in C: ipaddress
    is slower by far at thousands of Services)."""
    try:
        return isinstance(text, str) and bool(socket.inet_pton(socket.AF_INET, text))
    except OSError:
        return False


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None
