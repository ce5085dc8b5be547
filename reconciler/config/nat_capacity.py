"""The NAT frontends and backends every node programs whatever it is,
against FelixConfiguration bpfMapSizeNATFrontend and bpfMapSizeNATBackend.

Each TCP or UDP port of a Service has a frontend on every node for each
IPv4 clusterIP, externalIP and load balancer ingress IP, unless the address
is within bpfExcludeCIDRsFromNAT; a nodePort adds one per node address,
which only a node knows. Its backends are the same on every node unless
topology hints let a node pick fewer (reconciler.config.nat_backends). So
both counts are lower bounds of what any node programs, and a map size
below one is refused by every node with that configuration: `--validate`
(and so the pre-receive hook) refuses it for every configuration a node can
have (the `default` FelixConfiguration's, each `node.<name>` overlaid on
it), a plan for its own node's, at the field that sets the size; the plan's
NAT compile still counts exactly (reconciler.compile.nat_tables).

Facts are small tuples (marshal's types), as node_ports' are, so that the
validation cache keeps them per file.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.config import nat_backends
from reconciler.config.diagnostics import Diagnostic, format_path
from reconciler.config.felix import DEFAULTS
from reconciler.config.model import Resource

# The protocols the datapath balances (compile.services.PROTOCOLS; a unit
# test keeps them equal).
PROTOCOLS = ("TCP", "UDP")
PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"  # another proxy's Service
SIZE = "bpfMapSizeNATFrontend"
BACKENDS = "bpfMapSizeNATBackend"
EXCLUDED = "bpfExcludeCIDRsFromNAT"
SIZE_PATH = ("spec", SIZE)

# ("nat-fe", ref, file, line, [(ip, port, proto), ...]): a Service's frontends
#   but its nodePorts'
# ("nat-size", name, file, {field: (line, size)}, excluded or None): a
#   FelixConfiguration's sizes that it sets, and its excluded CIDRs
# and nat_backends' facts
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


def bounds(resources: Iterable[Resource]) -> tuple[int, int]:
    """At least as many frontends and backends as these resources' facts
    count, counted without reading an address: a plan's quick way past the
    count."""
    fe = be = 0
    for r in resources:
        if r.kind == "Service":
            spec, status = r.spec, r.body.get("status") or {}
            ips = len(spec.get("clusterIPs") or [None]) + len(spec.get("externalIPs") or ())
            ips += len((status.get("loadBalancer") or {}).get("ingress") or ())
            fe += len(spec.get("ports") or ()) * ips
        elif r.kind == "EndpointSlice":
            addresses = sum(len(ep.get("addresses") or ()) for ep in r.body.get("endpoints") or ())
            be += len(r.body.get("ports") or ()) * addresses
    return fe, be


def facts_of(resource: Resource) -> list[Fact]:
    if resource.kind == "FelixConfiguration":
        sizes = {}
        for field in (SIZE, BACKENDS):
            size = resource.spec.get(field)
            if isinstance(size, int) and not isinstance(size, bool):
                sizes[field] = (resource.line_of(("spec", field)), size)
        excluded = resource.spec.get(EXCLUDED)
        excluded = [str(c) for c in excluded] if isinstance(excluded, list) else None
        return [("nat-size", resource.name, resource.file, sizes, excluded)]
    if resource.kind == "EndpointSlice":
        return nat_backends.slice_facts(resource)
    if resource.kind != "Service":
        return []
    found = frontends(resource)
    if not found:
        return []
    return [
        ("nat-fe", resource.ref, resource.file, resource.line, found),
        *nat_backends.port_facts(resource, PROTOCOLS),
    ]


# for whom, where the size is set (file, line, FelixConfiguration/name) or
# None (the built-in), the size, the excluded CIDRs
Configuration = tuple[str, tuple[str, int, str] | None, int, list[str]]


def configurations(facts: Iterable[Fact], field: str) -> list[Configuration]:
    """Every configuration a node can have, for the map `field` sizes."""
    felix = {f[1]: f for f in facts if f[0] == "nat-size"}

    def setter(fact: Fact | None) -> tuple[str, int, str] | None:
        if fact is None or field not in fact[3]:
            return None
        return (fact[2], fact[3][field][0], f"FelixConfiguration/{fact[1]}")

    base = felix.get("default")
    base_excluded = base[4] if base is not None and base[4] is not None else []
    base_size = base[3][field][1] if setter(base) and base else DEFAULTS[field]
    out: list[Configuration] = [("", setter(base), base_size, base_excluded)]
    for name, fact in sorted(felix.items()):
        if not name.startswith("node.") or (field not in fact[3] and fact[4] is None):
            continue
        size = fact[3][field][1] if field in fact[3] else base_size
        excluded = fact[4] if fact[4] is not None else base_excluded
        out.append((f" on node {name[5:]}", setter(fact) or out[0][1], size, excluded))
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


def too_small_for_backends(size: int, backends: int, whom: str = "") -> str:
    return (
        f"{size} is too small for {backends} backends{whom} (each Service port's ready "
        "endpoints, where no topology hint lets a node pick fewer; a Local traffic policy adds "
        f"a list of a node's own); raise it to at least {backends}, with room to grow"
    )


def problems(facts: Sequence[Fact]) -> list[Diagnostic]:
    """A frontend or backend map size that some configuration a node can
    have makes too small for what every such node programs."""
    services = [f for f in facts if f[0] == "nat-fe"]
    if not services:
        return []
    out = []
    backends = None  # counted once, when a size could be below it
    for field in (SIZE, BACKENDS):
        for whom, where, size, excluded in configurations(facts, field):
            if field == SIZE:
                needed = count(services, excluded)
                message = too_small(size, needed, whom)
            elif nat_backends.most(facts) <= size:
                continue  # the usual case: no need to count
            else:
                backends = nat_backends.count(facts) if backends is None else backends
                needed, message = backends, too_small_for_backends(size, backends, whom)
            if needed <= size:
                continue
            if where is not None:
                out.append(Diagnostic(*where, format_path(("spec", field)), message))
            else:  # the built-in size: told at the last Service
                said = message.replace(f"{size} is", f"{field} (default {size}) is", 1)
                last = services[-1]
                out.append(Diagnostic(last[2], last[3], last[1], "spec", said))
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
