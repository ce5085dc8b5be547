"""Calico v3 validator rules beyond the schemas: IP pools, tiers, policy
names, metadata, `services` and `http` rule matches, catch-all `notNets`,
FelixConfiguration (route tables, health timeout overrides, ...).

Pure functions of one Resource, registered with semantic.check. Like the
rest of semantic, a field of the wrong type is left to the schema.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from reconciler.config import converted_kinds
from reconciler.config.diagnostics import Finding, Path
from reconciler.config.model import Resource

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = f"{_LABEL}(\\.{_LABEL})*"
_TIER_NAME = re.compile(_LABEL)
# the names Calico gives the GlobalNetworkPolicies it converts Kubernetes'
# AdminNetworkPolicy and BaselineAdminNetworkPolicy into
_GNP_NAME = re.compile(
    f"({_LABEL}\\.)?{_LABEL}"
    f"|(kanp\\.adminnetworkpolicy|kbanp\\.baselineadminnetworkpolicy)\\.{_SUBDOMAIN}"
)
_NP_NAME = re.compile(f"{_LABEL}(\\.{_LABEL})?|(knp|ossg)\\.default\\.{_SUBDOMAIN}")
_QUALIFIED = re.compile(f"({_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_ANNOTATIONS_MAX = 256 * 1024

# Calico's reserved tiers: (order, default action).
RESERVED_TIERS = {
    "default": (1_000_000, "Deny"),
    "adminnetworkpolicy": (1_000, "Pass"),
    "baselineadminnetworkpolicy": (10_000_000, "Pass"),
}


def _map(value: object) -> Mapping[str, Any] | None:
    if type(value) is dict:  # what the loader gives: no abstract-class hook (as semantic._map)
        return value
    return value if isinstance(value, Mapping) else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------- metadata


def metadata(resource: Resource) -> Iterator[Finding]:
    meta = _map(resource.body.get("metadata")) or {}
    annotations = _map(meta.get("annotations")) or {}
    yield from _annotations(annotations, ("metadata", "annotations"))
    is_set = resource.kind in ("NetworkSet", "GlobalNetworkSet")
    if is_set and "projectcalico.org/namespace" in resource.labels:
        yield Finding(
            ("metadata", "labels", "projectcalico.org/namespace"),
            "projectcalico.org/namespace is not a valid label name: Calico sets it",
        )


def _annotations(annotations: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    total = 0
    for key, value in annotations.items():
        if not isinstance(key, str):
            continue
        name = key.lower().rpartition("/")[2]
        if not _QUALIFIED.fullmatch(key.lower()) or len(name) > 63:
            yield Finding(
                (*path, key),
                f"invalid annotation key {key!r}: an optional DNS-subdomain prefix and '/', "
                "then at most 63 letters, digits, '-', '_' or '.'",
            )
        total += len(key) + (len(value) if isinstance(value, str) else 0)
    if total > _ANNOTATIONS_MAX:
        yield Finding(
            path, f"total size of annotations is too large by {total - _ANNOTATIONS_MAX} bytes"
        )


# ---------------------------------------------------------------- names and tiers


def policy_name(resource: Resource) -> Iterator[Finding]:
    name = resource.name
    rule = _GNP_NAME if resource.kind == "GlobalNetworkPolicy" else _NP_NAME
    if len(name) > 253:
        yield Finding(("metadata", "name"), f"name is too long by {len(name) - 253} bytes")
    elif not rule.fullmatch(name):
        # (the prefixes of policies Calico makes of Kubernetes ones are
        # refused on their own, by kubernetes_view: not offered here)
        allowed = (
            "at most one '.'"
            if resource.kind == "GlobalNetworkPolicy"
            else "at most one '.', or the prefix 'ossg.default.'"
        )
        yield Finding(
            ("metadata", "name"),
            f"invalid policy name {name!r}: lower case letters, digits and '-', {allowed}",
        )


KUBERNETES_VIEW = "is calicoctl's view of"


def kubernetes_view(resource: Resource) -> Iterator[Finding]:
    """A Calico policy under the name Calico gives the policy it makes of a
    Kubernetes one (`knp.default.<name>`, `kanp.adminnetworkpolicy.<name>`,
    `kbanp.baselineadminnetworkpolicy.<name>`) is what `calicoctl get`
    lists for that Kubernetes object, not a policy of its own: calicoctl
    refuses to create or apply it (Kubernetes policies are managed through
    the Kubernetes API), and beside the Kubernetes object it would be the
    same policy enforced twice."""
    for c in converted_kinds.CONVERTED:
        if resource.kind != c.calico_kind or not resource.name.startswith(c.name_prefix):
            continue
        own = resource.name[len(c.name_prefix) :]
        original = f"{resource.namespace}/{own}" if c.namespaced and resource.namespace else own
        yield Finding(
            ("metadata", "name"),
            f"{resource.name!r} {KUBERNETES_VIEW} the Kubernetes {c.kubernetes_kind} "
            f"{original} (calicoctl refuses to create it): keep the {c.api_version} "
            f"{c.kubernetes_kind} {original} and delete this {resource.kind}",
        )


def tier(resource: Resource) -> Iterator[Finding]:
    name, spec = resource.name, resource.spec
    if len(name) > 63:
        yield Finding(("metadata", "name"), f"name is too long by {len(name) - 63} bytes")
    elif not _TIER_NAME.fullmatch(name):
        yield Finding(
            ("metadata", "name"),
            f"invalid tier name {name!r}: lower case letters, digits and '-' (no '.')",
        )
    reserved = RESERVED_TIERS.get(name)
    if reserved is None:
        return
    order, action = reserved
    if spec.get("order") != order:
        yield Finding(("spec", "order"), f"the {name!r} tier's order must be {order}")
    if spec.get("defaultAction", "Deny") != action:
        yield Finding(
            ("spec", "defaultAction"), f"the {name!r} tier must have default action {action!r}"
        )


_POLICY_KINDS = frozenset({"GlobalNetworkPolicy", "NetworkPolicy"})


def tier_needed(resource: Resource) -> str | None:
    """The Tier resource a policy needs: Calico's client refuses to create a
    policy whose tier it cannot get (clientv3 globalnetworkpolicy.go and
    networkpolicy.go, Create). None for a tier Calico creates itself
    (RESERVED_TIERS) and for other kinds."""
    if resource.kind not in _POLICY_KINDS:
        return None
    tier = resource.spec.get("tier")
    if not isinstance(tier, str) or not tier or tier in RESERVED_TIERS:
        return None
    return tier


def missing_tier(tier: str) -> Finding:
    """What a policy whose tier no Tier resource names is told (at spec.tier)."""
    return Finding(
        ("spec", "tier"),
        f"tier {tier!r} does not exist: no Tier resource is named {tier!r} "
        "(Calico v3.31 creates only 'default', 'adminnetworkpolicy' and "
        "'baselineadminnetworkpolicy' itself)",
    )


def missing_tiers(
    resources: Iterable[Resource], tiers: Iterable[str]
) -> Iterator[tuple[Resource, Finding]]:
    """Each policy of `resources` whose tier is none of `tiers` (the names of
    the source's Tier resources), with its finding: a whole-source check."""
    known = frozenset(tiers)
    for resource in resources:
        tier = tier_needed(resource)
        if tier is not None and tier not in known:
            yield resource, missing_tier(tier)


# ---------------------------------------------------------------- IP pools


def _enabled(mode: object) -> bool:
    return mode in ("Always", "CrossSubnet")


def ippool(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    cidr = spec.get("cidr")
    try:
        net = ipaddress.ip_network(cidr, strict=False) if isinstance(cidr, str) else None
    except ValueError:
        net = None  # semantic's own check reports it
    uses = [u for u in _list(spec.get("allowedUses")) if isinstance(u, str)]
    lb = "LoadBalancer" in uses
    if net is not None and net.version == 6 and _enabled(spec.get("ipipMode")):
        yield Finding(("spec", "ipipMode"), "IPIP is not supported on an IPv6 IP pool")
    if _enabled(spec.get("ipipMode")) and _enabled(spec.get("vxlanMode")):
        yield Finding(("spec", "vxlanMode"), "ipipMode and vxlanMode cannot both be enabled")
    if lb and (_enabled(spec.get("ipipMode")) or _enabled(spec.get("vxlanMode"))):
        yield Finding(
            ("spec", "allowedUses"), "a LoadBalancer pool cannot enable ipipMode or vxlanMode"
        )
    for use in uses:
        if lb and use in ("Workload", "Tunnel"):
            yield Finding(
                ("spec", "allowedUses"), f"LoadBalancer cannot be used at the same time as {use}"
            )
    if lb and spec.get("disableBGPExport") is True:
        yield Finding(
            ("spec", "disableBGPExport"), "a LoadBalancer pool must export its routes over BGP"
        )
    if lb and spec.get("nodeSelector", "all()") != "all()":
        yield Finding(("spec", "nodeSelector"), "a LoadBalancer pool's nodeSelector must be all()")
    if spec.get("namespaceSelector") and "Workload" not in (uses or ["Workload"]):
        yield Finding(
            ("spec", "namespaceSelector"), "namespaceSelector is only valid on Workload pools"
        )
    if net is None:
        return
    link_local = ipaddress.ip_network("169.254.0.0/16" if net.version == 4 else "fe80::/10")
    if net.overlaps(link_local):
        yield Finding(
            ("spec", "cidr"), f"IP pool range overlaps with the link-local range {link_local}"
        )
    size = spec.get("blockSize")
    low, high, default = (20, 32, 26) if net.version == 4 else (116, 128, 122)
    block = size if isinstance(size, int) and not isinstance(size, bool) and size else default
    if isinstance(size, int) and size and not low <= size <= high:
        yield Finding(
            ("spec", "blockSize"), f"IPv{net.version} block size must be between {low} and {high}"
        )
    elif spec.get("disabled") is not True and net.prefixlen > block:
        yield Finding(
            ("spec", "cidr"),
            f"IP pool /{net.prefixlen} is smaller than its blocks (/{block}"
            f"{'' if size else ', the default'}): Calico IPAM needs at least one block",
        )


# ---------------------------------------------------------------- rules


def rules(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    is_global = resource.kind == "GlobalNetworkPolicy"
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(_list(spec.get(direction))):
            rule_map = _map(rule)
            if rule_map is None:
                continue
            path: Path = ("spec", direction, i)
            yield from _services(rule_map, path, direction, is_global)
            yield from _http(rule_map, path, direction)
            yield from _catch_all_negations(rule_map, path)
            # Calico's validateRuleMetadata: the same rules as a resource's annotations.
            annotations = _map((_map(rule_map.get("metadata")) or {}).get("annotations"))
            if annotations is not None:
                yield from _annotations(annotations, (*path, "metadata", "annotations"))


def _is_catch_all(value: str) -> bool:
    """Calico's test: IPv4 only as the literal '0.0.0.0/0'; IPv6 any spelling
    of ::/0 (it compares the parsed address and mask)."""
    if value == "0.0.0.0/0":
        return True
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        return False
    return iface.version == 6 and iface.network.prefixlen == 0


def _catch_all_negations(rule: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    # notNets holding everything matches no traffic: Calico refuses the rule.
    for side in ("source", "destination"):
        entity = _map(rule.get(side)) or {}
        for i, value in enumerate(_list(entity.get("notNets"))):
            if isinstance(value, str) and "/" in value and _is_catch_all(value):
                yield Finding(
                    (*path, side, "notNets", i),
                    f"catch-all CIDR {value!r} in notNets matches no traffic "
                    "(a logical contradiction)",
                )


def _services(
    rule: Mapping[str, Any], path: Path, direction: str, is_global: bool
) -> Iterator[Finding]:
    # Services name the peer: the source of ingress, the destination of egress.
    peer, own = ("source", "destination") if direction == "ingress" else ("destination", "source")
    own_side = _map(rule.get(own)) or {}
    if own_side.get("services") is not None:
        yield Finding(
            (*path, own, "services"), f"services are not allowed in {direction} rule {own}"
        )
    entity = _map(rule.get(peer)) or {}
    services = _map(entity.get("services"))
    if services is None:
        return
    where = (*path, peer, "services")
    if not services.get("name"):
        yield Finding(where, "must specify a service name")
    if is_global and not services.get("namespace"):
        yield Finding((*where, "namespace"), "must specify a namespace in a global policy")
    for fields, what in (
        (("namespaceSelector",), "namespaceSelector"),
        (("selector", "notSelector"), "selector/notSelector"),
        (("serviceAccounts",), "serviceAccounts"),
        (("nets", "notNets"), "nets/notNets"),
    ):
        if any(entity.get(f) for f in fields):
            yield Finding(where, f"cannot specify {what} and services on the same rule")
    if peer == "destination":
        for field in ("ports", "notPorts"):
            if _list(entity.get(field)):
                yield Finding(
                    (*path, peer, field), f"cannot specify {field} with a service selector"
                )


def _http(rule: Mapping[str, Any], path: Path, direction: str) -> Iterator[Finding]:
    http = _map(rule.get("http"))
    if http is None:
        return
    where = (*path, "http")
    if direction == "egress":
        yield Finding(where, "HTTP match is not allowed in egress rules")
    if rule.get("action") != "Allow":
        yield Finding(where, "HTTP match is only valid on Allow rules")
    protocol = rule.get("protocol")
    if protocol is not None and protocol != "TCP":
        yield Finding((*path, "protocol"), "rules with HTTP match must have protocol TCP or unset")
    methods = [m for m in _list(http.get("methods")) if isinstance(m, str)]
    if len(set(methods)) != len(methods):
        yield Finding((*where, "methods"), f"duplicate HTTP methods: {methods}")
    for i, entry in enumerate(_list(http.get("paths"))):
        entry_map = _map(entry) or {}
        exact, prefix = entry_map.get("exact"), entry_map.get("prefix")
        at = (*where, "paths", i)
        if exact and prefix:
            yield Finding(at, "set either 'exact' or 'prefix', not both")
            continue
        value = exact or prefix
        if not isinstance(value, str) or not value:
            yield Finding(at, "either 'exact' or 'prefix' must be set")
        elif not value.startswith("/") or any(c in value for c in "? #"):
            yield Finding(
                at, f"invalid path {value!r}: must start with '/' and hold no '?', '#' or space"
            )


# ---------------------------------------------------------------- FelixConfiguration

_DNS_LABEL = re.compile(_LABEL)


def felix(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    ranges = _list(spec.get("kubeNodePortRanges"))
    for i, value in enumerate(ranges):
        if isinstance(value, str) and not re.fullmatch(r"[0-9]+(:[0-9]+)?", value):
            yield Finding(
                ("spec", "kubeNodePortRanges", i), "node port ranges cannot hold named ports"
            )
    for i, value in enumerate(_list(spec.get("externalNodesList"))):
        if isinstance(value, str) and ":" in value:
            yield Finding(
                ("spec", "externalNodesList", i), f"{value!r}: only IPv4 CIDRs are allowed"
            )
    region = spec.get("openstackRegion")
    if isinstance(region, str) and region:
        if len(region) > 63 - len("openstack-region-"):
            yield Finding(("spec", "openstackRegion"), "is too long (at most 46 characters)")
        elif not _DNS_LABEL.fullmatch(region):
            yield Finding(("spec", "openstackRegion"), "must be a valid DNS label")
    yield from _route_tables(spec)
    yield from _health_timeouts(spec)


_HTO_NAME = re.compile(r"[a-zA-Z0-9_ -]+")


def _health_timeouts(spec: Mapping[str, Any]) -> Iterator[Finding]:
    # The schema checks each timeout is a Go duration; a negative one parses
    # and is refused here, as Calico's validator does.
    for i, entry in enumerate(_list(spec.get("healthTimeoutOverrides"))):
        entry_map = _map(entry) or {}
        at = ("spec", "healthTimeoutOverrides", i)
        name = entry_map.get("name")
        if isinstance(name, str) and not _HTO_NAME.fullmatch(name):
            yield Finding(
                (*at, "name"),
                f"invalid health timeout override name {name!r}: "
                "letters, digits, '_', '-' and spaces, at least one",
            )
        timeout = entry_map.get("timeout")
        if isinstance(timeout, str) and timeout.startswith("-") and _nonzero(timeout[1:]):
            yield Finding((*at, "timeout"), f"timeout {timeout!r} must not be negative")


def _nonzero(duration: str) -> bool:
    """Whether an unsigned Go duration such as '1m30s' or '0.5s' is above zero."""
    return any(float(n) > 0 for n in re.findall(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", duration))


def _route_tables(spec: Mapping[str, Any]) -> Iterator[Finding]:
    single = _map(spec.get("routeTableRange"))
    many = spec.get("routeTableRanges")
    if single is not None and many is not None:
        yield Finding(
            ("spec", "routeTableRange"), "cannot be set when routeTableRanges is also set"
        )
    if single is not None:
        low, high = single.get("min"), single.get("max")
        if isinstance(low, int) and isinstance(high, int) and not 1 <= low <= high <= 250:
            yield Finding(
                ("spec", "routeTableRange"), "must be a range of route table indices within 1..250"
            )
    total = 0
    for i, entry in enumerate(_list(many)):
        entry_map = _map(entry) or {}
        low, high = entry_map.get("min"), entry_map.get("max")
        if not (isinstance(low, int) and isinstance(high, int)):
            continue
        at = ("spec", "routeTableRanges", i)
        if low > high:
            yield Finding(at, "min value cannot be greater than max value")
        if low < 1:
            yield Finding(at, "cannot target indices < 1")
        if high > 0xFFFFFFFF:
            yield Finding(at, "max index too high")
        total += max(0, high - max(low, 1) + 1)
    if total > 0xFFFF:
        yield Finding(("spec", "routeTableRanges"), "targets too many tables (at most 65535)")
