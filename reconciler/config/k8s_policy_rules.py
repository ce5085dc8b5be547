"""The API server's rules for a Kubernetes NetworkPolicy that its JSON
Schema (schemas/KubernetesNetworkPolicy.json) cannot express: what
Kubernetes' own validation refuses (pkg/apis/networking/validation and the
label selector's), told in its words with what to write instead.

One rule is stricter than Kubernetes 1.33: a CIDR with leading zeros
('010.0.0.0/8'), which its legacy parsing takes, is refused, since
Calico's converter cannot parse it and would leave the rule open to every
address. Pure; every check tolerates shapes the schema refuses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.config.diagnostics import Finding, Path, Severity
from reconciler.config.model import Resource
from reconciler.config.shapes import items, mapping


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def selector_findings(selector: object, path: Path) -> Iterator[Finding]:
    for i, expression in enumerate(items(mapping(selector).get("matchExpressions"))):
        expression = mapping(expression)
        operator, values = expression.get("operator"), expression.get("values")
        at = (*path, "matchExpressions", i, "values")
        if operator in ("In", "NotIn") and not items(values):
            yield Finding(at, f"must be specified when operator is {operator}: list the values "
                              "the label may (In) or may not (NotIn) have")  # fmt: skip
        elif operator in ("Exists", "DoesNotExist") and items(values):
            yield Finding(at, f"may not be specified when operator is {operator}: remove "
                              "values (or use In or NotIn)")  # fmt: skip


def _port(port: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    start, end = port.get("port"), _number(port.get("endPort"))
    if end is None:
        return
    at = (*path, "endPort")
    if start is None:
        yield Finding(at, "may not be specified when port is not specified: port is the "
                          "first port of the range")  # fmt: skip
    elif isinstance(start, str):
        yield Finding(at, f"may not be specified when port is non-numeric ({start!r}): a "
                          "range is of port numbers")  # fmt: skip
    elif _number(start) is not None and end < start:
        yield Finding(at, f"must be greater than or equal to port: {end} is below {start}")


_CIDR_RULE = (
    "an address and a prefix length, such as 10.0.0.0/8 or 2001:db8::/32, without leading zeros"
)


def _network(text: object, path: Path) -> Iterator[Finding]:
    if not isinstance(text, str):
        return
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        yield Finding(path, f"{text!r} is not a valid CIDR ({_CIDR_RULE})")


def _ip_block(block: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    cidr = block.get("cidr")
    bad = list(_network(cidr, (*path, "cidr")))
    if "/" not in str(cidr) and isinstance(cidr, str) and not bad:
        bad = [Finding((*path, "cidr"), f"{cidr!r} is not a valid CIDR: give a prefix length, "
                                        f"such as {cidr}/32")]  # fmt: skip
    yield from bad
    outer = None if bad or not isinstance(cidr, str) else ipaddress.ip_network(cidr, strict=False)
    for i, text in enumerate(items(block.get("except"))):
        at = (*path, "except", i)
        problems = list(_network(text, at))
        yield from problems
        if problems or outer is None or not isinstance(text, str):
            continue
        inner = ipaddress.ip_network(text, strict=False)
        if (
            inner.version != outer.version
            or not inner.subnet_of(outer)  # type: ignore[arg-type]
            or inner.prefixlen <= outer.prefixlen
        ):
            yield Finding(at, f"must be a strict subset of cidr: {text} is not inside {cidr} "
                              "(or is all of it)")  # fmt: skip


def _peer(peer: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    kinds = ("podSelector", "namespaceSelector", "ipBlock")
    present = [f for f in kinds if peer.get(f) is not None]
    if not present:
        yield Finding(path, "must specify a peer: podSelector, namespaceSelector or ipBlock "
                            "(leave the list out to allow every peer)")  # fmt: skip
    elif "ipBlock" in present and len(present) > 1:
        yield Finding(path, "may not specify both ipBlock and another peer: write the "
                            "selectors as a peer of their own")  # fmt: skip
    for field in ("podSelector", "namespaceSelector"):
        yield from selector_findings(peer.get(field), (*path, field))
    block = peer.get("ipBlock")
    if isinstance(block, Mapping):
        yield from _ip_block(block, (*path, "ipBlock"))


def rule_entries(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, Path, Mapping[str, Any]]]:
    """Each entry of every rule's `ports` and peers (`from` on ingress, `to`
    on egress), in order: (direction, its list's field, its path, the entry)."""
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(items(spec.get(direction))):
            rule = mapping(rule)
            for field in ("ports", peers):
                for j, entry in enumerate(items(rule.get(field))):
                    yield direction, field, ("spec", direction, i, field, j), mapping(entry)


def _rules(spec: Mapping[str, Any]) -> Iterator[Finding]:
    for _, field, at, entry in rule_entries(spec):
        yield from _port(entry, at) if field == "ports" else _peer(entry, at)


def _ignored_rules(spec: Mapping[str, Any]) -> Iterator[Finding]:
    """Rules of a direction policyTypes leaves out: Kubernetes takes them and
    no implementation enforces them."""
    types = items(spec.get("policyTypes"))
    if not types:
        return
    for direction, kind in (("ingress", "Ingress"), ("egress", "Egress")):
        if items(spec.get(direction)) and kind not in types:
            yield Finding(
                ("spec", direction),
                f"{direction} rules are ignored: policyTypes does not include {kind}",
                Severity.WARNING,
            )


def check(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    yield from selector_findings(spec.get("podSelector"), ("spec", "podSelector"))
    yield from _rules(spec)
    yield from _ignored_rules(spec)
