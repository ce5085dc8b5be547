"""Semantic checks: the rules JSON Schema cannot express.

`check(resource)` is pure. It runs after (and regardless of) schema
validation, so every check tolerates wrong shapes by skipping them: a field
of the wrong type is the schema's finding to report, not ours.

Where Calico has a rule (libcalico-go's v3 validator) we follow it and keep
its messages in spirit; Kubernetes rules follow the API server's.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from reconciler.config.diagnostics import Finding, Path, Severity
from reconciler.config.model import Resource
from reconciler.protocols import PROTOCOLS

Check = Callable[[Resource], Iterator[Finding]]

_WARNING = Severity.WARNING

# Protocol names Calico accepts (v3 spelling and the v1 lower-case one) -> number.
_PROTOCOLS = {**PROTOCOLS, **{name.lower(): n for name, n in PROTOCOLS.items()}}
_PORT_PROTOCOLS = frozenset({6, 17, 132})
_ICMP, _ICMPV6 = 1, 58


# The loader gives plain dicts and lists: tested first, they skip the
# abstract classes' isinstance hooks, called ~20 times per resource (the
# figure it protects: bench/layout_bench.py's cold validation).


def _map(value: object) -> Mapping[str, Any] | None:
    if type(value) is dict:
        return value
    return value if isinstance(value, Mapping) else None


def _list(value: object) -> Sequence[Any]:
    """`value` if it is a list, else empty (wrong types are the schema's business)."""
    if type(value) is list:
        return value
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return value
    return ()


def _int(value: object) -> int | None:
    # bool is an int in Python but never a valid number in YAML config.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _protocol_number(value: object) -> int | None:
    if isinstance(value, str):
        return int(value) if value.isdigit() else _PROTOCOLS.get(value)
    return _int(value)


# Parsed addresses are immutable values, and a repository names the same
# nets in rule after rule: each text is parsed once (ipaddress is a large
# part of validating policies; bench/layout_bench.py's cold validation).
@functools.lru_cache(maxsize=8192)
def _parse_net(value: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    """A CIDR or bare IP (taken as /32 or /128), keeping any host bits."""
    try:
        return ipaddress.ip_interface(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=8192)
def _parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


# ---------------------------------------------------------------- selectors


def _selector(value: object, path: Path, *, global_allowed: bool = False) -> Iterator[Finding]:
    """Parse a selector field; `global()` is only meaningful alone in a rule's
    namespaceSelector (Calico rejects it anywhere else)."""
    if not isinstance(value, str):
        return
    # Only policy kinds have selectors: bench/nat_bench.py's one-change apply
    # validates a Service and an EndpointSlice without loading the parser.
    from reconciler.config import selector

    try:
        parsed = selector.parse_cached(value)
    except selector.SelectorError as err:
        yield Finding(path, f"invalid selector: {err}")
        return
    if not any(isinstance(node, selector.Global) for node in parsed.walk()):
        return
    if not global_allowed:
        yield Finding(path, "global() can only be used in a rule's namespaceSelector")
    elif not isinstance(parsed, selector.Global):
        yield Finding(path, "global() cannot be combined with other selectors")


def _entity_selectors(entity: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    for field in ("selector", "notSelector"):
        yield from _selector(entity.get(field), (*path, field))
    yield from _selector(
        entity.get("namespaceSelector"), (*path, "namespaceSelector"), global_allowed=True
    )
    accounts = _map(entity.get("serviceAccounts"))
    if accounts is not None:
        yield from _selector(accounts.get("selector"), (*path, "serviceAccounts", "selector"))


def _policy_selectors(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    for field in ("selector", "serviceAccountSelector", "namespaceSelector"):
        yield from _selector(spec.get(field), ("spec", field))


# ---------------------------------------------------------------- rules

_PORT_RANGE = re.compile(r"(\d+):(\d+)")
# Kubernetes IANA_SVC_NAME: what a named port may be.
_PORT_NAME = re.compile(r"(?=.*[a-z])(?!.*--)[a-z0-9](?:[-a-z0-9]{0,13}[a-z0-9])?")
PORT_NAME_RULE = (
    "a port name is at most 15 lower-case letters, digits and '-', with a letter, "
    "no '--', not starting or ending with '-'"
)


def _port_number(number: int, path: Path) -> Iterator[Finding]:
    if not 1 <= number <= 65535:
        yield Finding(path, f"port {number} is out of range 1-65535")


def _port(value: object, path: Path) -> Iterator[Finding]:
    number = _int(value)
    if number is not None:
        yield from _port_number(number, path)
        return
    if not isinstance(value, str):
        return
    if value.isdigit():
        yield from _port_number(int(value), path)
        return
    m = _PORT_RANGE.fullmatch(value)
    if m is not None:
        low, high = int(m.group(1)), int(m.group(2))
        yield from _port_number(low, path)
        yield from _port_number(high, path)
        if low > high:
            yield Finding(path, f"inverted port range {value}")
    elif ":" in value:
        yield Finding(path, f"invalid port range '{value}': expected 'min:max'")
    elif not _PORT_NAME.fullmatch(value):
        yield Finding(path, f"invalid named port '{value}': {PORT_NAME_RULE}")


def _rule_ports(entity: Mapping[str, Any], path: Path, protocol: int | None) -> Iterator[Finding]:
    for field in ("ports", "notPorts"):
        ports = _list(entity.get(field))
        if not ports:
            continue
        # Calico: any port, named or numeric, in ports or notPorts needs the
        # rule's `protocol` (not notProtocol) to be TCP, UDP or SCTP.
        if protocol not in _PORT_PROTOCOLS:
            yield Finding(
                (*path, field), "rules that specify ports must set protocol to TCP, UDP or SCTP"
            )
        for i, port in enumerate(ports):
            yield from _port(port, (*path, field, i))


def _planned_not_icmp(rule: Mapping[str, Any]) -> bool:
    """Whether a notICMP rule is one the policy compiler refuses: an IPv4
    rule (not ipVersion 6, not ICMPv6 unless ipVersion 4 makes 58 IPv4's
    protocol) whose protocol is not ICMP."""
    number, version = _protocol_number(rule.get("protocol")), _int(rule.get("ipVersion"))
    ipv6_only = version == 6 or (number == _ICMPV6 and version != 4)
    return number != _ICMP and not ipv6_only


def _not_icmp_unplannable(protocol: object) -> str:
    which = "no protocol" if protocol is None else f"protocol {protocol}"
    return (
        f"Calico accepts notICMP with {which}, but an ICMP type is only defined for "
        "ICMP packets: no node of this dataplane can enforce the rule; set protocol: ICMP"
    )


def _rule_icmp(rule: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    # Calico's validateRule compares the protocol with the names ICMP and
    # ICMPv6: their numbers (1, 58, "1") and lower-case spellings are other
    # values to it. It asks `icmp` for such a protocol and never `notICMP`;
    # a notICMP no node can enforce is refused here all the same (the policy
    # compiler refuses it too), so a push every node would refuse fails.
    protocol = rule.get("protocol")
    wrong = "rules that specify ICMP fields must set protocol to ICMP or ICMPv6"
    if _protocol_number(protocol) in (_ICMP, _ICMPV6) and not isinstance(protocol, bool):
        wrong += f" by name, not the number {protocol!r}"
    for field in ("icmp", "notICMP"):
        icmp = _map(rule.get(field))
        if icmp is None:
            continue
        if field == "icmp" and protocol not in ("ICMP", "ICMPv6"):
            yield Finding((*path, field), wrong)
        if field == "notICMP" and _planned_not_icmp(rule):
            yield Finding((*path, field), _not_icmp_unplannable(protocol))
        kind, code = _int(icmp.get("type")), _int(icmp.get("code"))
        if icmp.get("code") is not None and icmp.get("type") is None:
            # The kernel can only match a code together with a type.
            yield Finding((*path, field, "code"), "ICMP code specified without an ICMP type")
        if kind is not None and not 0 <= kind <= 254:
            yield Finding((*path, field, "type"), f"ICMP type {kind} is invalid: must be 0-254")
        if code is not None and not 0 <= code <= 255:
            yield Finding((*path, field, "code"), f"ICMP code {code} is invalid: must be 0-255")
    version = _int(rule.get("ipVersion"))
    for field in ("protocol", "notProtocol"):
        # By name only, as Calico compares: protocol 1 with ipVersion 6 is a
        # rule for IPv6 packets of protocol 1, which it accepts.
        name = rule.get(field)
        if name == "ICMP" and version == 6:
            yield Finding((*path, "ipVersion"), f"{field} ICMP requires ipVersion 4")
        elif name == "ICMPv6" and version == 4:
            yield Finding((*path, "ipVersion"), f"{field} ICMPv6 requires ipVersion 6")


def _rule_nets(rule: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    version = _int(rule.get("ipVersion"))
    seen: set[int] = set()
    for side in ("source", "destination"):
        entity = _map(rule.get(side))
        if entity is None:
            continue
        for field in ("nets", "notNets"):
            field_path = (*path, side, field)
            versions: set[int] = set()
            for i, value in enumerate(_list(entity.get(field))):
                if not isinstance(value, str):
                    continue
                iface = _parse_net(value)
                if iface is None:
                    yield Finding((*field_path, i), f"invalid CIDR '{value}'")
                    continue
                versions.add(iface.version)
                if iface.ip != iface.network.network_address:
                    # Calico's rule nets are "net"-validated: strictly masked.
                    yield Finding(
                        (*field_path, i),
                        f"'{value}' has host bits set: did you mean {iface.network}?",
                    )
            if version is not None and versions - {version}:
                yield Finding(field_path, f"rule ipVersion {version} doesn't match CIDR version")
            # Blame the field that makes the rule mixed, as Calico does.
            if len(versions) > 1 or (4 in versions and 6 in seen) or (6 in versions and 4 in seen):
                yield Finding(field_path, "rule contains both IPv4 and IPv6 CIDRs")
            seen |= versions


# Not Calico's rule but this dataplane's limit (Calico's own checks of the
# match still apply: reconciler.config.calico_rules).
HTTP_NOT_ENFORCEABLE = "'http' match cannot be enforced by this dataplane"


def _rule(rule: Mapping[str, Any], path: Path) -> Iterator[Finding]:
    protocol = _protocol_number(rule.get("protocol"))
    for side in ("source", "destination"):
        entity = _map(rule.get(side))
        if entity is not None:
            yield from _entity_selectors(entity, (*path, side))
            yield from _rule_ports(entity, (*path, side), protocol)
    yield from _rule_icmp(rule, path)
    yield from _rule_nets(rule, path)
    if rule.get("http"):  # an L7 proxy's match: every node would refuse to plan it
        yield Finding((*path, "http"), HTTP_NOT_ENFORCEABLE)


def _rules(resource: Resource) -> Iterator[Finding]:
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(_list(resource.spec.get(direction))):
            rule_map = _map(rule)
            if rule_map is not None:
                yield from _rule(rule_map, ("spec", direction, i))


# ---------------------------------------------------------------- policies


def _policy_types(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    if "types" not in spec:
        return  # Calico infers types from the rules present.
    types = _list(spec.get("types"))
    seen: set[str] = set()
    for i, kind in enumerate(types):
        if isinstance(kind, str):
            if kind in seen:
                yield Finding(("spec", "types", i), f"'{kind}' type specified more than once")
            seen.add(kind)
    for direction, kind in (("ingress", "Ingress"), ("egress", "Egress")):
        if _list(spec.get(direction)) and kind not in seen:
            yield Finding(
                ("spec", direction),
                f"{direction} rules are ignored: types does not include {kind}",
                _WARNING,
            )


def _policy_flags(resource: Resource) -> Iterator[Finding]:
    """preDNAT / doNotTrack / applyOnForward, as Calico's GNP validator has them."""
    spec = resource.spec
    pre_dnat = spec.get("preDNAT") is True
    untracked = spec.get("doNotTrack") is True
    if resource.kind != "GlobalNetworkPolicy":
        for field, on in (("preDNAT", pre_dnat), ("doNotTrack", untracked)):
            if on:
                yield Finding(("spec", field), f"{field} is only valid on GlobalNetworkPolicy")
        return
    if pre_dnat and untracked:
        yield Finding(("spec", "preDNAT"), "preDNAT and doNotTrack cannot both be true")
    if pre_dnat and _list(spec.get("egress")):
        yield Finding(("spec", "egress"), "a preDNAT policy cannot have egress rules")
    if pre_dnat:
        for i, kind in enumerate(_list(spec.get("types"))):
            if kind == "Egress":
                yield Finding(("spec", "types", i), "a preDNAT policy cannot have the Egress type")
    if (pre_dnat or untracked) and spec.get("applyOnForward") is not True:
        yield Finding(
            ("spec", "applyOnForward"),
            "applyOnForward must be true when preDNAT or doNotTrack is true",
        )


# Names Calico derives from Kubernetes objects; they carry their own prefix.
_DERIVED_POLICY_PREFIXES = (
    "knp.default.",
    "kanp.adminnetworkpolicy.",
    "kbanp.baselineadminnetworkpolicy.",
    "kcnp.",
    "ossg.default.",
)


def _policy_tier(resource: Resource) -> Iterator[Finding]:
    # Calico v3.31, the release validation targets, requires `<tier>.<name>`
    # for a policy of another tier than default (a later release dropped
    # the rule). A default-tier name with a dot only looks like another tier.
    tier = resource.spec.get("tier")
    tier = tier if isinstance(tier, str) and tier else "default"
    name = resource.name
    if name.startswith(_DERIVED_POLICY_PREFIXES):
        return
    if tier != "default":
        if not name.startswith(f"{tier}."):
            yield Finding(
                ("metadata", "name"),
                f"policy in tier '{tier}' must be named '{tier}.<name>'",
            )
        return
    prefix, dot, _ = name.partition(".")
    if dot and prefix != "default":
        yield Finding(
            ("metadata", "name"),
            f"name prefix '{prefix}.' looks like a tier but the policy is in tier 'default': "
            "Calico releases that read the tier from the name disagree",
            _WARNING,
        )


# ---------------------------------------------------------------- addresses


def _nets(values: object, path: Path) -> Iterator[Finding]:
    """CIDRs Calico accepts unmasked (network sets): only unparseable ones fail."""
    for i, value in enumerate(_list(values)):
        if isinstance(value, str) and _parse_net(value) is None:
            yield Finding((*path, i), f"invalid CIDR '{value}'")


def _ips(values: object, path: Path, version: int | None = None) -> Iterator[Finding]:
    for i, value in enumerate(_list(values)):
        yield from _ip(value, (*path, i), version)


def _ip(value: object, path: Path, version: int | None = None) -> Iterator[Finding]:
    if not isinstance(value, str):
        return
    address = _parse_ip(value)
    if address is None:
        yield Finding(path, f"invalid IP address '{value}'")
    elif version is not None and address.version != version:
        yield Finding(path, f"'{value}' is not an IPv{version} address")


def _network_set(resource: Resource) -> Iterator[Finding]:
    yield from _nets(resource.spec.get("nets"), ("spec", "nets"))


def _host_endpoint(resource: Resource) -> Iterator[Finding]:
    yield from _ips(resource.spec.get("expectedIPs"), ("spec", "expectedIPs"))


def _workload_endpoint(resource: Resource) -> Iterator[Finding]:
    for i, port in enumerate(_list(resource.spec.get("ports"))):
        port_map = _map(port)
        if port_map is not None and not port_map.get("name") and not port_map.get("hostPort"):
            yield Finding(
                ("spec", "ports", i, "name"),
                "a port needs a name unless it sets a hostPort",
            )
    for i, value in enumerate(_list(resource.spec.get("ipNetworks"))):
        if not isinstance(value, str):
            continue
        iface = _parse_net(value)
        if iface is None:
            yield Finding(("spec", "ipNetworks", i), f"invalid CIDR '{value}'")
        elif iface.network.num_addresses != 1:
            yield Finding(("spec", "ipNetworks", i), "IP network contains multiple addresses")


def _ippool(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    yield from _selector(spec.get("nodeSelector"), ("spec", "nodeSelector"))
    cidr = spec.get("cidr")
    if not isinstance(cidr, str):
        return
    iface = _parse_net(cidr)
    if iface is None:
        yield Finding(("spec", "cidr"), f"invalid CIDR '{cidr}'")
    elif iface.ip != iface.network.network_address:
        yield Finding(
            ("spec", "cidr"),
            f"IP pool CIDR is not strictly masked: did you mean {iface.network}?",
        )


# ---------------------------------------------------------------- FelixConfiguration


def _felix_name(resource: Resource) -> Iterator[Finding]:
    name = resource.name
    if name == "default" or (name.startswith("node.") and len(name) > len("node.")):
        return
    yield Finding(
        ("metadata", "name"),
        "applies to no node: names are 'default' or 'node.<name>'",
        _WARNING,
    )


# Python `re` accepts these; Go's RE2, which Calico's Felix uses, does not.
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\(\?P=|\\[1-9]")


def _regex(pattern: str, path: Path, what: str) -> Iterator[Finding]:
    try:
        re.compile(pattern)
    except re.error as err:
        yield Finding(path, f"invalid regular expression{what}: {err}")
        return
    if _NOT_RE2.search(pattern):
        yield Finding(
            path,
            f"regular expression{what} uses lookaround or backreferences,"
            " which Calico (Go RE2) rejects",
            _WARNING,
        )


def _felix_regexes(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    for field in (
        "bpfDataIfacePattern",
        "bpfL3IfacePattern",
        "bpfDisableGROForIfaces",
        "mtuIfacePattern",
        "logDebugFilenameRegex",
    ):
        value = spec.get(field)
        if isinstance(value, str):
            yield from _regex(value, ("spec", field), "")
    excluded = spec.get("interfaceExclude")
    if isinstance(excluded, str):
        # Felix: a comma-separated list; entries written /.../ are regexes.
        for entry in excluded.split(","):
            entry = entry.strip()
            if len(entry) >= 2 and entry.startswith("/") and entry.endswith("/"):
                yield from _regex(entry[1:-1], ("spec", "interfaceExclude"), f" {entry!r}")


def _felix_addresses(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    for field in ("failsafeInboundHostPorts", "failsafeOutboundHostPorts"):
        for i, entry in enumerate(_list(spec.get(field))):
            entry_map = _map(entry)
            if entry_map is None:
                continue
            net = entry_map.get("net")
            if isinstance(net, str) and net and _parse_net(net) is None:
                yield Finding(("spec", field, i, "net"), f"invalid CIDR '{net}'")
            protocol = entry_map.get("protocol")
            if protocol is not None and _protocol_number(protocol) not in _PORT_PROTOCOLS:
                yield Finding(("spec", field, i, "protocol"), "protocol must be TCP, UDP or SCTP")
    for field in ("natOutgoingAddress", "deviceRouteSourceAddress"):
        yield from _ip(spec.get(field), ("spec", field), 4)
    yield from _ip(
        spec.get("deviceRouteSourceAddressIPv6"), ("spec", "deviceRouteSourceAddressIPv6"), 6
    )


# ---------------------------------------------------------------- Kubernetes


def _service_ports(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    kind = spec.get("type", "ClusterIP")
    ports = _list(spec.get("ports"))
    names: set[str] = set()
    pairs: set[tuple[object, str]] = set()
    for i, port in enumerate(ports):
        port_map = _map(port)
        if port_map is None:
            continue
        name = port_map.get("name")
        if isinstance(name, str) and name:
            if name in names:
                yield Finding(("spec", "ports", i, "name"), f"duplicate port name '{name}'")
            names.add(name)
        elif len(ports) > 1:
            yield Finding(
                ("spec", "ports", i, "name"), "name is required when a Service has several ports"
            )
        number, protocol = port_map.get("port"), port_map.get("protocol", "TCP")
        if _int(number) is not None and isinstance(protocol, str):
            if (number, protocol) in pairs:
                yield Finding(("spec", "ports", i), f"duplicate port {number}/{protocol}")
            pairs.add((number, protocol))
        node_port = port_map.get("nodePort")
        if node_port not in (None, 0) and kind not in ("NodePort", "LoadBalancer"):
            yield Finding(
                ("spec", "ports", i, "nodePort"),
                f"nodePort is only allowed when type is NodePort or LoadBalancer, not {kind}",
            )


def _service_addresses(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    cluster_ip = spec.get("clusterIP")
    if cluster_ip not in ("", "None"):  # "None" makes a headless service
        yield from _ip(cluster_ip, ("spec", "clusterIP"))
    for i, value in enumerate(_list(spec.get("clusterIPs"))):
        if value not in ("", "None"):
            yield from _ip(value, ("spec", "clusterIPs", i))
    yield from _ips(spec.get("externalIPs"), ("spec", "externalIPs"))
    if spec.get("loadBalancerIP"):
        yield from _ip(spec.get("loadBalancerIP"), ("spec", "loadBalancerIP"))


def _service_affinity(resource: Resource) -> Iterator[Finding]:
    spec = resource.spec
    if spec.get("sessionAffinityConfig") is not None and spec.get("sessionAffinity") != "ClientIP":
        yield Finding(
            ("spec", "sessionAffinityConfig"),
            "sessionAffinityConfig has no effect unless sessionAffinity is ClientIP",
            _WARNING,
        )


def _refuse_special(values: object, path: Path) -> Iterator[Finding]:
    from reconciler.config.addresses import refusal

    for i, value in enumerate(_list(values)):
        why = refusal(value) if isinstance(value, str) else None
        if why is not None:
            yield Finding((*path, i), why)


def _service_special_addresses(resource: Resource) -> Iterator[Finding]:
    """Service addresses that would take over node traffic (reconciler.config.addresses)."""
    spec = resource.spec
    for field in ("clusterIP", "loadBalancerIP"):
        value = spec.get(field)
        if isinstance(value, str):
            for finding in _refuse_special([value], ("spec", field)):
                yield Finding(("spec", field), finding.message)
    for field in ("clusterIPs", "externalIPs"):
        yield from _refuse_special(spec.get(field), ("spec", field))
    status = _map(resource.body.get("status")) or {}
    ingress = _list((_map(status.get("loadBalancer")) or {}).get("ingress"))
    for i, entry in enumerate(ingress):
        entry_map = _map(entry)
        if entry_map is not None and isinstance(entry_map.get("ip"), str):
            for finding in _refuse_special([entry_map["ip"]], ()):
                yield Finding(("status", "loadBalancer", "ingress", i, "ip"), finding.message)


def _endpoint_special_addresses(resource: Resource) -> Iterator[Finding]:
    for i, endpoint in enumerate(_list(resource.body.get("endpoints"))):
        endpoint_map = _map(endpoint)
        if endpoint_map is not None:
            yield from _refuse_special(endpoint_map.get("addresses"), ("endpoints", i, "addresses"))


_SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _endpoint_slice(resource: Resource) -> Iterator[Finding]:
    body = resource.body  # an EndpointSlice has no spec: its fields are top level
    if _SERVICE_NAME_LABEL not in resource.labels:
        yield Finding(
            ("metadata", "labels"),
            f"no {_SERVICE_NAME_LABEL} label: this slice belongs to no Service",
            _WARNING,
        )
    version = {"IPv4": 4, "IPv6": 6}.get(str(body.get("addressType")))
    if version is None:
        return  # FQDN slices carry names, not addresses
    for i, endpoint in enumerate(_list(body.get("endpoints"))):
        endpoint_map = _map(endpoint)
        if endpoint_map is not None:
            yield from _ips(endpoint_map.get("addresses"), ("endpoints", i, "addresses"), version)


# ---------------------------------------------------------------- dispatch

def _finite_order(resource: Resource) -> Iterator[Finding]:
    """Calico stores `order` as a JSON number: NaN and the infinities,
    which YAML can write (.nan, .inf), have none."""
    order = resource.spec.get("order")
    if isinstance(order, float) and not math.isfinite(order):
        yield Finding(("spec", "order"), f"order must be a finite number, not {order}")


_POLICY_CHECKS: tuple[Check, ...] = (
    _finite_order,
    _policy_selectors,
    _rules,
    _policy_types,
    _policy_flags,
    _policy_tier,
)

from reconciler.config import calico_rules as _cr  # noqa: E402 - the rules beyond this module's
from reconciler.config import k8s_admin_policy_rules, k8s_policy_rules  # noqa: E402

_META = _cr.metadata
_CHECKS: Mapping[str, tuple[Check, ...]] = {
    "GlobalNetworkPolicy": (*_POLICY_CHECKS, _cr.policy_name, _cr.kubernetes_view, _cr.rules,
                            _META),  # fmt: skip
    "NetworkPolicy": (*_POLICY_CHECKS, _cr.policy_name, _cr.kubernetes_view, _cr.rules, _META),
    "Profile": (_rules, _cr.rules, _META),
    "IPPool": (_ippool, _cr.ippool, _META),
    "GlobalNetworkSet": (_network_set, _META),
    "NetworkSet": (_network_set, _META),
    "HostEndpoint": (_host_endpoint, _META),
    "WorkloadEndpoint": (_workload_endpoint, _META),
    "Tier": (_cr.tier, _finite_order, _META),
    "FelixConfiguration": (_felix_name, _felix_regexes, _felix_addresses, _cr.felix, _META),
    "Service": (
        _service_ports, _service_addresses, _service_affinity, _service_special_addresses
    ),
    "EndpointSlice": (_endpoint_slice, _endpoint_special_addresses),
    "KubernetesNetworkPolicy": (k8s_policy_rules.check, _META),
    "KubernetesAdminNetworkPolicy": (k8s_admin_policy_rules.check, _META),
    "KubernetesBaselineAdminNetworkPolicy": (k8s_admin_policy_rules.check_baseline, _META),
}


def check(resource: Resource) -> list[Finding]:
    """Every semantic finding for one resource (pure; never raises on odd shapes)."""
    findings: list[Finding] = []
    for run in _CHECKS.get(resource.kind, ()):
        findings.extend(run(resource))
    return findings
