"""The NAT backends every node programs whatever it is, for
reconciler.config.nat_capacity.

A Service port's backends on a node are its ready endpoints (none ready:
those still serving while they terminate), unless topology hints let the
node pick fewer: every ready endpoint hinted for nodes, or every one for
zones. A port whose ready endpoints are not all hinted alike has the same
backends on every node, so their sum is a lower bound of what any node
programs (a hinted port and a Local traffic policy's own list only add to
it). This mirrors the choice reconciler.compile.services makes per node;
it counts an address listed twice once, so it never counts more.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from reconciler.config.model import Resource

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# ("nat-port", namespace, service, port name, PROTOCOL): a Service port a node balances
# ("nat-eps", namespace, service, [(port name, PROTOCOL, port)],
#   [(packed address, ready, serving while terminating, node hints, zone hints)])
Fact = tuple[Any, ...]


def port_facts(resource: Resource, protocols: Iterable[str]) -> list[Fact]:
    """A balanced Service's ports (the caller has judged it balanced)."""
    out = []
    for port in resource.spec.get("ports") or ():
        proto = str(port.get("protocol") or "TCP") if isinstance(port, dict) else ""
        if proto in protocols:
            out.append(
                ("nat-port", resource.namespace, resource.name, port.get("name") or "", proto)
            )
    return out


def slice_facts(resource: Resource) -> list[Fact]:
    """An IPv4 EndpointSlice's ports and endpoints, as the NAT compile reads them."""
    body = resource.body
    owner = resource.labels.get(SERVICE_NAME_LABEL)
    if body.get("addressType") != "IPv4" or not isinstance(owner, str):
        return []
    ports = [
        (p.get("name") or "", p.get("protocol") or "TCP", p.get("port"))
        for p in body.get("ports") or ()
        if isinstance(p, dict) and isinstance(p.get("port"), int)
    ]
    endpoints = []
    for ep in body.get("endpoints") or ():
        if not isinstance(ep, dict):
            continue
        conditions = ep.get("conditions") or {}
        ready = conditions.get("ready") is not False
        serving = conditions.get("serving", ready) is not False
        terminating = conditions.get("terminating") is True
        by_node, by_zone = (
            _hinted(ep.get("hints"), "forNodes"),
            _hinted(ep.get("hints"), "forZones"),
        )
        for addr in ep.get("addresses") or ():
            packed = _packed(addr)
            if packed is not None:
                endpoints.append((packed, ready, serving and terminating, by_node, by_zone))
    return [("nat-eps", resource.namespace, owner, ports, endpoints)] if endpoints else []


def most(facts: Iterable[Fact]) -> int:
    """At least as many backends as `count` finds: every endpoint address
    once per port of its slice."""
    return sum(len(f[3]) * len(f[4]) for f in facts if f[0] == "nat-eps")


def count(facts: Iterable[Fact]) -> int:
    """The backends every node programs, at least."""
    facts = list(facts)
    slices: dict[tuple[Any, Any], list[Fact]] = {}
    for fact in facts:
        if fact[0] == "nat-eps":
            slices.setdefault((fact[1], fact[2]), []).append(fact)
    total = 0
    for _, namespace, service, name, proto in (f for f in facts if f[0] == "nat-port"):
        found: dict[tuple[bytes, int], tuple[bool, bool, bool, bool]] = {}
        for sl in slices.get((namespace, service), ()):
            port = next((p for n, pr, p in sl[3] if n == name and pr == proto), None)
            if port is None:
                continue
            for packed, ready, terminating, by_node, by_zone in sl[4]:
                seen = found.get((packed, port))
                if seen is None or (ready and not seen[0]):
                    found[(packed, port)] = (ready, terminating, by_node, by_zone)
        ready = [c for c in found.values() if c[0]]
        if not ready:
            total += sum(1 for c in found.values() if c[1])
        elif not all(c[2] for c in ready) and not all(c[3] for c in ready):
            total += len(ready)
    return total


def _hinted(hints: object, key: str) -> bool:
    """Does an endpoint name a node (or zone) in its hints?"""
    names = hints.get(key) if isinstance(hints, dict) else None
    return isinstance(names, list) and any(isinstance(h, dict) and h.get("name") for h in names)


def _packed(text: object) -> bytes | None:
    try:
        return socket.inet_pton(socket.AF_INET, text) if isinstance(text, str) else None
    except OSError:
        return None
