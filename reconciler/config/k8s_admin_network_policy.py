"""A Kubernetes `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy or
BaselineAdminNetworkPolicy as the Calico v3 GlobalNetworkPolicy Calico
v3.31 makes of it (libcalico-go's K8sAdminNetworkPolicyToCalico and its
baseline twin), so that validation, compile, plan and explain handle one
kind of policy. As Calico's converter does:

- name `kanp.adminnetworkpolicy.<name>` in tier `adminnetworkpolicy`, order
  the priority; a baseline policy `kbanp.baselineadminnetworkpolicy.default`
  in tier `baselineadminnetworkpolicy`, no order (the only policy there);
- subject `namespaces`: selector `projectcalico.org/orchestrator == 'k8s'`
  and namespaceSelector the namespaces' selector; subject `pods`: selector
  the orchestrator term and the pod selector's terms, namespaceSelector the
  namespace selector's (`{}` is `all()`);
- one rule per (protocol group x peer) of each rule, in rule order, its
  action the rule's (Allow, Deny, Pass): ports grouped by protocol
  (protocols sorted, each group's ports merged into ranges), protocol only
  where ports are given;
- a `namespaces` peer is a namespaceSelector alone; a `pods` peer a
  namespaceSelector and the pod selector (with the orchestrator term);
- types: Ingress where ingress rules are given, Egress where egress rules.

What this node cannot convert never gets here: validation
(reconciler.config.k8s_admin_policy_rules) refuses it, so no rule is
dropped (a dropped Allow or Pass could hand traffic to a wider rule).

The converted Resource keeps the document's file and line, and its line
table maps each converted field to the line of the field it came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.config.diagnostics import Path
from reconciler.config.k8s_network_policy import ORCHESTRATOR_TERM, label_selector, simplify_ports
from reconciler.config.model import CALICO_API, Resource
from reconciler.config.shapes import items, mapping

API_VERSION = "policy.networking.k8s.io/v1alpha1"
ADMIN_KIND = "KubernetesAdminNetworkPolicy"  # the loader's kinds for them
BASELINE_KIND = "KubernetesBaselineAdminNetworkPolicy"
# the loader's kind -> (Kubernetes kind, Calico name prefix, tier)
KINDS = {
    ADMIN_KIND: ("AdminNetworkPolicy", "kanp.adminnetworkpolicy.", "adminnetworkpolicy"),
    BASELINE_KIND: (
        "BaselineAdminNetworkPolicy",
        "kbanp.baselineadminnetworkpolicy.",
        "baselineadminnetworkpolicy",
    ),
}
BY_KUBERNETES_KIND = {kubernetes: kind for kind, (kubernetes, _, _) in KINDS.items()}




def calico_name(kind: str, name: str) -> str:
    return KINDS[kind][1] + name


def _pod_selectors(pods: Mapping[str, Any]) -> dict[str, str]:
    """A NamespacedPod: its pods (with the orchestrator term) in its namespaces."""
    return {
        "selector": label_selector(mapping(pods.get("podSelector")), pods=True),
        "namespaceSelector": label_selector(mapping(pods.get("namespaceSelector")), pods=False),
    }


def subject_selectors(subject: Mapping[str, Any]) -> dict[str, str]:
    """The policy's selector and namespaceSelector of its subject."""
    pods = subject.get("pods")
    if isinstance(pods, Mapping):
        return _pod_selectors(pods)
    namespaces = label_selector(mapping(subject.get("namespaces")), pods=False)
    return {"selector": ORCHESTRATOR_TERM, "namespaceSelector": namespaces}


def peer_fields(peer: Mapping[str, Any]) -> dict[str, str]:
    """A rule peer's match: a `namespaces` peer is a namespaceSelector alone."""
    pods = peer.get("pods")
    if isinstance(pods, Mapping):
        return _pod_selectors(pods)
    return {"namespaceSelector": label_selector(mapping(peer.get("namespaces")), pods=False)}


def port_groups(ports: Sequence[Any]) -> dict[str, list[int | str]]:
    """Protocol -> its ports, of portNumber and portRange entries (validation
    refuses every other kind of port)."""
    groups: dict[str, list[int | str]] = {}
    for entry in ports:
        entry = mapping(entry)
        number, span = mapping(entry.get("portNumber")), mapping(entry.get("portRange"))
        if number:
            port: int | str = number.get("port", 0)
            protocol = number.get("protocol") or "TCP"
        else:
            port = f"{span.get('start')}:{span.get('end')}"  # validation: start < end
            protocol = span.get("protocol") or "TCP"
        groups.setdefault(str(protocol), []).append(port)
    return groups


def convert_rule(rule: Mapping[str, Any], ingress: bool) -> list[tuple[dict[str, Any], int]]:
    """One Kubernetes rule as Calico's rules, each with the index of the
    peer it came from."""
    peers = items(rule.get("from" if ingress else "to"))
    ports = items(rule.get("ports"))
    groups: dict[str, list[int | str]] | dict[str, None] = (
        port_groups(ports) if ports else {"": None}
    )
    out = []
    for protocol in sorted(groups):
        group = groups[protocol]
        for index, peer in enumerate(peers):
            calico: dict[str, Any] = {"action": rule.get("action")}
            if protocol:
                calico["protocol"] = protocol
            match: dict[str, Any] = dict(peer_fields(mapping(peer)))
            ported = {"ports": simplify_ports(list(group))} if group else {}
            if ingress:
                calico["source"] = match
                if ported:
                    calico["destination"] = ported
            else:
                calico["destination"] = {**ported, **match}
            out.append((calico, index))
    return out


def _converted_rules(
    spec: Mapping[str, Any], direction: str, lines: dict[Path, Path]
) -> list[dict[str, Any]]:
    ingress = direction == "ingress"
    peers_field = "from" if ingress else "to"
    out: list[dict[str, Any]] = []
    for i, rule in enumerate(items(spec.get(direction))):
        for calico, peer in convert_rule(mapping(rule), ingress):
            at: Path = ("spec", direction, len(out))
            source: Path = ("spec", direction, i)
            lines[at] = source
            lines[(*at, "action")] = (*source, "action")
            lines[(*at, "protocol")] = lines[(*at, "destination", "ports")] = (*source, "ports")
            side = (*at, "source" if ingress else "destination")
            peer_path: Path = (*source, peers_field, peer)
            lines[side] = peer_path
            lines[(*side, "selector")] = (*peer_path, "pods", "podSelector")
            lines[(*side, "namespaceSelector")] = peer_path
            out.append(calico)
    return out


def to_calico(resource: Resource) -> Resource:
    """The Calico GlobalNetworkPolicy of a (validated) admin policy."""
    spec = resource.spec
    _, _, tier = KINDS[resource.kind]
    subject = mapping(spec.get("subject"))
    sources: dict[Path, Path] = {
        ("metadata",): ("metadata",),
        ("metadata", "name"): ("metadata", "name"),
        ("spec",): ("spec",),
        ("spec", "tier"): ("kind",),
        ("spec", "order"): ("spec", "priority"),
        ("spec", "selector"): ("spec", "subject"),
        ("spec", "namespaceSelector"): ("spec", "subject"),
        ("spec", "types"): ("spec",),
        ("spec", "ingress"): ("spec", "ingress"),
        ("spec", "egress"): ("spec", "egress"),
    }
    calico_spec: dict[str, Any] = {"tier": tier}
    if resource.kind == ADMIN_KIND:
        calico_spec["order"] = spec.get("priority")
    calico_spec.update(subject_selectors(subject))
    types = []
    for direction, kind in (("ingress", "Ingress"), ("egress", "Egress")):
        rules = _converted_rules(spec, direction, sources)
        if rules:
            calico_spec[direction] = rules
        if items(spec.get(direction)):
            types.append(kind)
    calico_spec["types"] = types or ["Ingress"]
    name = calico_name(resource.kind, resource.name)
    body = {
        "apiVersion": CALICO_API,
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": calico_spec,
    }
    lines = {path: resource.line_of(source) for path, source in sources.items()}
    return Resource("GlobalNetworkPolicy", name, None, body, resource.file, resource.line, lines)


def enforced(resource: Resource) -> Resource:
    """What the pipeline reads of a valid resource: an admin policy
    converted, any other resource as it is."""
    return to_calico(resource) if resource.kind in KINDS else resource


def collision_hint(kind: str, name: str) -> str:
    """Why two GlobalNetworkPolicies share a name when one may be converted."""
    if kind != "GlobalNetworkPolicy":
        return ""
    for kubernetes, prefix, _ in KINDS.values():
        if name.startswith(prefix):
            original = name[len(prefix) :]
            return (
                f" ({name} is also the name Calico gives the Kubernetes {kubernetes} "
                f"{original}: a {CALICO_API} GlobalNetworkPolicy of that name is calicoctl's "
                f"view of it; keep the {API_VERSION} {kubernetes} {original} and delete the "
                "GlobalNetworkPolicy)"
            )
    return ""
