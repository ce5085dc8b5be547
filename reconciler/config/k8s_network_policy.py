"""A Kubernetes `networking.k8s.io/v1` NetworkPolicy as the Calico v3
NetworkPolicy Calico makes of it (libcalico-go's K8sNetworkPolicyToCalico),
so that validation, compile, plan and explain handle one kind of policy.

What Calico reads is what the API server stored, so Kubernetes' defaulting
comes first: `policyTypes` absent is Ingress, plus Egress when the policy
has egress rules, and a port's protocol absent is TCP. Then, as Calico does:

- name `knp.default.<name>` in the same namespace, tier default, order 1000;
- selector: `projectcalico.org/orchestrator == 'k8s'`, then each
  matchLabels term (keys sorted), then each matchExpressions term in order,
  joined by `&&`;
- one Allow rule per (port group x peer), port groups first: a rule's ports
  are grouped by protocol (protocols sorted, a port-less entry meaning every
  port of its protocol) and each group's numeric ports merged into ranges;
  no ports at all is one group of every protocol, no peers one peer of
  everyone;
- a peer's podSelector and namespaceSelector become the rule's selector and
  namespaceSelector (a podSelector alone stays in the policy's namespace; a
  namespaceSelector `{}` is `all()`); an ipBlock its nets and notNets.

What Calico cannot convert never gets here: validation
(reconciler.config.k8s_policy_rules) refuses it first, as the API server
does. (Calico drops a rule whose port it cannot parse and enforces the
rest; an ipBlock it cannot parse would leave its rule open to every
address. Here such a rule is dropped: never wider than the file says.)

The converted Resource keeps the document's file and line, and its line
table maps each converted field to the line of the field it came from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.config.diagnostics import Path
from reconciler.config.model import CALICO_API, Resource
from reconciler.config.shapes import items, mapping

KIND = "KubernetesNetworkPolicy"  # the loader's kind for it (Calico's name for the kind)
API_VERSION = "networking.k8s.io/v1"
NAME_PREFIX = "knp.default."
ORDER = 1000
ORCHESTRATOR_TERM = "projectcalico.org/orchestrator == 'k8s'"

CalicoPort = int | str  # a port, "min:max" or a port name, as Calico's API writes them


class Unconvertible(ValueError):
    """A rule Calico's converter drops (validation refuses its input first)."""


def calico_name(name: str) -> str:
    return NAME_PREFIX + name




def label_selector(selector: object, pods: bool) -> str:
    """A LabelSelector in Calico's selector syntax. `pods`: a pod selector,
    which also asks for Kubernetes pods; a namespace selector that is
    present but empty selects every namespace (`all()`), absent none ('')."""
    terms = [ORCHESTRATOR_TERM] if pods else []
    if not isinstance(selector, Mapping):
        return " && ".join(terms)
    labels = mapping(selector.get("matchLabels"))
    expressions = items(selector.get("matchExpressions"))
    if not pods and not labels and not expressions:
        return "all()"
    terms += [f"{key} == '{labels[key]}'" for key in sorted(labels)]
    for expression in expressions:
        key = expression.get("key")
        values = "', '".join(str(v) for v in items(expression.get("values")))
        operator = expression.get("operator")
        if operator == "In":
            terms.append(f"{key} in {{ '{values}' }}")
        elif operator == "NotIn":
            terms.append(f"{key} not in {{ '{values}' }}")
        elif operator == "Exists":
            terms.append(f"has({key})")
        elif operator == "DoesNotExist":
            terms.append(f"! has({key})")
    return " && ".join(terms)


def _port(entry: Mapping[str, Any]) -> CalicoPort | None:
    """The Calico port of one NetworkPolicyPort; None: every port."""
    port, end = entry.get("port"), entry.get("endPort")
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int | str):
        raise Unconvertible(f"invalid port {port!r}")
    if end is None:
        return port
    if isinstance(port, str) or not isinstance(end, int) or isinstance(end, bool) or end < port:
        raise Unconvertible(f"invalid port {port}:{end}")
    return port if end == port else f"{port}:{end}"


def _bounds(port: CalicoPort) -> tuple[int, int]:
    if isinstance(port, int):
        return port, port
    low, _, high = port.partition(":")
    return int(low), int(high)


def simplify_ports(ports: list[CalicoPort]) -> list[CalicoPort]:
    """Calico's SimplifyPorts: named ports first, in order, then the numeric
    ones merged into the fewest ranges, ascending; a list that covers at most
    one numeric port is returned as it is."""
    named = [p for p in ports if isinstance(p, str) and ":" not in p]
    numeric = sorted(_bounds(p) for p in ports if p not in named)
    if len(ports) <= 1 or sum(high - low + 1 for low, high in numeric) <= 1:
        return ports
    merged: list[list[int]] = []
    for low, high in numeric:
        if merged and low <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [*named, *(low if low == high else f"{low}:{high}" for low, high in merged)]


def _port_groups(ports: Sequence[Any]) -> dict[str, list[CalicoPort] | None]:
    """Protocol ('' for every protocol) -> its ports (None: every port)."""
    if not ports:
        return {"": None}
    groups: dict[str, list[CalicoPort] | None] = {}
    for entry in ports:
        entry = mapping(entry)
        protocol = str(entry.get("protocol") or "TCP")
        port = _port(entry)
        if port is None:
            groups[protocol] = None  # every port of the protocol: wins over single ports
        elif protocol not in groups or groups[protocol]:
            groups[protocol] = [*(groups.get(protocol) or []), port]
    return groups


def _peer_fields(peer: Mapping[str, Any] | None) -> dict[str, Any]:
    if peer is None:
        return {}
    block = peer.get("ipBlock")
    if isinstance(block, Mapping):
        fields: dict[str, Any] = {"nets": [_network(block.get("cidr"))]}
        excepts = [_network(e) for e in items(block.get("except"))]
        if excepts:
            fields["notNets"] = excepts
        return fields
    fields = {"selector": label_selector(peer.get("podSelector"), pods=True)}
    namespaces = label_selector(peer.get("namespaceSelector"), pods=False)
    if namespaces:
        fields["namespaceSelector"] = namespaces
    return fields


def _network(cidr: object) -> str:
    """The network a CIDR names, host bits cleared (as Calico prints it)."""
    try:
        return str(ipaddress.ip_network(str(cidr), strict=False))
    except ValueError:
        raise Unconvertible(f"invalid CIDR {cidr!r}") from None


def convert_rule(rule: Mapping[str, Any], ingress: bool) -> list[tuple[dict[str, Any], int | None]]:
    """One Kubernetes rule as Calico's rules, each with the index of the peer
    it came from (None: no peers). Raises Unconvertible as Calico's
    converter fails on it."""
    peers: list[tuple[Mapping[str, Any] | None, int | None]] = [
        (mapping(p), i) for i, p in enumerate(items(rule.get("from" if ingress else "to")))
    ] or [(None, None)]
    groups = _port_groups(items(rule.get("ports")))
    out = []
    for protocol in sorted(groups):
        ports = groups[protocol]
        for peer, index in peers:
            calico: dict[str, Any] = {"action": "Allow"}
            if protocol:
                calico["protocol"] = protocol
            match = _peer_fields(peer)
            ported = {"ports": simplify_ports(ports)} if ports else {}
            if ingress:
                sides = {"source": match, "destination": ported}
            else:
                sides = {"destination": {**ported, **match}}
            calico.update((side, fields) for side, fields in sides.items() if fields)
            out.append((calico, index))
    return out


def policy_types(spec: Mapping[str, Any]) -> list[str]:
    """Kubernetes' defaulting, then Calico's order (Ingress before Egress)."""
    given = {t for t in items(spec.get("policyTypes")) if t in ("Ingress", "Egress")}
    if not given:
        given = {"Ingress", "Egress"} if items(spec.get("egress")) else {"Ingress"}
    return [t for t in ("Ingress", "Egress") if t in given]


def _converted_rules(
    spec: Mapping[str, Any], direction: str, lines: dict[Path, Path]
) -> list[dict[str, Any]]:
    """Every Calico rule of one direction; `lines` gains converted path ->
    source path. A rule Calico cannot convert is dropped, as Calico does."""
    ingress = direction == "ingress"
    peers_field = "from" if ingress else "to"
    out: list[dict[str, Any]] = []
    for i, rule in enumerate(items(spec.get(direction))):
        try:
            converted = convert_rule(mapping(rule), ingress)
        except Unconvertible:
            continue
        for calico, peer in converted:
            at: Path = ("spec", direction, len(out))
            source: Path = ("spec", direction, i)
            lines[at] = source
            lines[(*at, "protocol")] = lines[(*at, "destination", "ports")] = (*source, "ports")
            side = (*at, "source" if ingress else "destination")
            if peer is not None:
                peer_path: Path = (*source, peers_field, peer)
                lines[side] = peer_path
                lines[(*side, "selector")] = (*peer_path, "podSelector")
                lines[(*side, "namespaceSelector")] = (*peer_path, "namespaceSelector")
                lines[(*side, "nets")] = (*peer_path, "ipBlock", "cidr")
                lines[(*side, "notNets")] = (*peer_path, "ipBlock", "except")
            out.append(calico)
    return out


def to_calico(resource: Resource) -> Resource:
    """The Calico NetworkPolicy of a (validated) Kubernetes NetworkPolicy."""
    spec = resource.spec
    sources: dict[Path, Path] = {
        ("metadata",): ("metadata",),
        ("metadata", "name"): ("metadata", "name"),
        ("metadata", "namespace"): ("metadata", "namespace"),
        ("spec",): ("spec",),
        ("spec", "selector"): ("spec", "podSelector"),
        ("spec", "types"): ("spec", "policyTypes"),
        ("spec", "ingress"): ("spec", "ingress"),
        ("spec", "egress"): ("spec", "egress"),
    }
    calico_spec: dict[str, Any] = {
        "order": ORDER,
        "selector": label_selector(mapping(spec.get("podSelector")), pods=True),
    }
    for direction in ("ingress", "egress"):
        rules = _converted_rules(spec, direction, sources)
        if rules:
            calico_spec[direction] = rules
    calico_spec["types"] = policy_types(spec)
    name = calico_name(resource.name)
    body = {
        "apiVersion": CALICO_API,
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": resource.namespace},
        "spec": calico_spec,
    }
    lines = {path: resource.line_of(source) for path, source in sources.items()}
    return Resource(
        "NetworkPolicy", name, resource.namespace, body, resource.file, resource.line, lines
    )


def enforced(resource: Resource) -> Resource:
    """What the pipeline reads of a valid resource: a Kubernetes
    NetworkPolicy converted, any other resource as it is."""
    return to_calico(resource) if resource.kind == KIND else resource


def collision_hint(kind: str, name: str) -> str:
    """Why two NetworkPolicies share a name when one may be converted."""
    if kind != "NetworkPolicy" or not name.startswith(NAME_PREFIX):
        return ""
    original = name[len(NAME_PREFIX) :]
    return (
        f" ({name} is also the name Calico gives a Kubernetes NetworkPolicy {original} of "
        f"the namespace: a {CALICO_API} NetworkPolicy of that name is calicoctl's view of it; "
        f"keep the {API_VERSION} NetworkPolicy {original} and delete the {CALICO_API} one)"
    )
