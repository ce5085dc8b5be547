"""What the schemas of a Kubernetes AdminNetworkPolicy and
BaselineAdminNetworkPolicy (schemas/KubernetesAdminNetworkPolicy.json,
schemas/KubernetesBaselineAdminNetworkPolicy.json) cannot say: the API's
own rules (a baseline policy is named `default`, a port range ascends, a
selector's values agree with its operator), and what this node refuses
because it would not enforce it as Calico v3.31 does: `nodes` and
`networks` egress peers and `namedPort` ports. A refused rule is an error,
never a rule dropped, since dropping an Allow or a Pass can hand traffic to
a wider rule. Pure; every check tolerates shapes the schema refuses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.config.diagnostics import Finding, Path
from reconciler.config.k8s_policy_rules import rule_entries, selector_findings
from reconciler.config.model import Resource
from reconciler.config.shapes import mapping

_NOT_ENFORCED = {
    "nodes": "select the nodes' addresses with nets in a GlobalNetworkPolicy instead",
    "networks": "write the CIDRs as nets of a GlobalNetworkPolicy rule instead",
}


_EGRESS_PEERS = ("namespaces", "pods", "nodes", "networks")




def _one_of(holder: Mapping[str, Any], fields: tuple[str, ...], path: Path) -> Iterator[Finding]:
    """A subject or peer names exactly one kind of thing, as the API requires."""
    given = [f for f in fields if f in holder]
    if len(given) != 1 and all(isinstance(k, str) and k in fields for k in holder):
        named = ", ".join(fields[:-1]) + " or " + fields[-1]
        yield Finding(path, f"must set exactly one of {named}"
                            + (f", not {' and '.join(given)}" if given else ""))  # fmt: skip


def _selectors(holder: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    yield from selector_findings(holder.get("namespaces"), (*path, "namespaces"))
    pods = mapping(holder.get("pods"))
    for field in ("namespaceSelector", "podSelector"):
        yield from selector_findings(pods.get(field), (*path, "pods", field))


def _port(port: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    if port.get("namedPort") is not None:
        yield Finding(
            (*path, "namedPort"),
            "a named port is not enforced by this node: give the port's number as portNumber",
        )
    span = mapping(port.get("portRange"))
    start, end = span.get("start"), span.get("end")
    if isinstance(start, int) and isinstance(end, int) and end <= start:
        yield Finding(
            (*path, "portRange", "end"),
            f"must be greater than start: {end} is not above {start} (a single port is a "
            "portNumber)",
        )


def _rules(spec: Mapping[str, Any]) -> Iterator[Finding]:
    for direction, field, at, entry in rule_entries(spec):
        if field == "ports":
            yield from _port(entry, at)
            continue
        kinds = ("namespaces", "pods") if direction == "ingress" else _EGRESS_PEERS
        yield from _one_of(entry, kinds, at)
        yield from _selectors(entry, at)
        for kind, instead in _NOT_ENFORCED.items():
            if entry.get(kind) is None:
                continue
            if direction == "ingress":
                yield Finding((*at, kind), f"a {kind} peer is of egress rules only (to)")
            else:
                yield Finding(
                    (*at, kind),
                    f"a {kind} peer is not enforced by this node (Calico's "
                    f"conversion of it is not reproduced here): {instead}",
                )


def check(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    subject = spec.get("subject")
    if isinstance(subject, Mapping):
        yield from _one_of(subject, ("namespaces", "pods"), ("spec", "subject"))
    yield from _selectors(mapping(subject), ("spec", "subject"))
    yield from _rules(spec)


def check_baseline(resource: Resource) -> Iterator[Finding]:
    if resource.name != "default":
        yield Finding(
            ("metadata", "name"),
            f"must be 'default', not {resource.name!r}: a cluster has one "
            "BaselineAdminNetworkPolicy, named default",
        )
    yield from check(resource)
