"""Compile Kubernetes Services + EndpointSlices into NAT map contents. Pure.

Follows kube-proxy's rules: headless and ExternalName services and those
labelled `service.kubernetes.io/service-proxy-name` are skipped; ports are
matched by name; within a traffic policy's scope (every endpoint, or this
node's for ETP/ITP Local) the ready endpoints are used, or, when none is
ready, those still serving while they terminate (KEP-1669). Backends of one
service port share a service id; local backends (nodeName == this node) sit
at ordinals [0, local_count) so ETP/ITP Local can pick among them alone. When
the local choice is not that prefix, it gets a list and an id of its own.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from reconciler.config.model import Resource
from reconciler.datapath.maps.codecs import SRC_VALUE, be_key, be_value, fe_key, fe_value, src_key
from reconciler.datapath.maps.nat_types import FeFlag, Proto

PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = {p.name: int(p) for p in Proto}  # the protocols the datapath balances
DEFAULT_AFFINITY_S = 10800  # Kubernetes' default sessionAffinityConfig timeout

FE_AFFINITY = int(FeFlag.AFFINITY)
FE_ETP_LOCAL = int(FeFlag.ETP_LOCAL)
FE_ITP_LOCAL = int(FeFlag.ITP_LOCAL)
FE_SRC_RANGES = int(FeFlag.SRC_RANGES)
LOCAL_FLAGS = FE_ETP_LOCAL | FE_ITP_LOCAL


class Backend(NamedTuple):
    """A NamedTuple, not a dataclass: there are 100k of these at scale."""

    ip: str
    port: int
    local: bool


@dataclass(frozen=True, slots=True)
class Frontend:
    vip: str
    port: int
    proto: str  # "tcp" / "udp"
    svc_id: int
    flags: int
    affinity_timeout_s: int
    service: str  # "namespace/name:portname", for plans

    @property
    def label(self) -> str:
        return f"{self.vip}:{self.port}/{self.proto}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One service port: its frontends and its ordered backends."""

    service: str
    svc_id: int
    backends: tuple[Backend, ...]
    frontends: tuple[Frontend, ...]
    # (its own service id, its backends) when the Local policy's choice is not
    # the local part of `backends`; every backend in it is local
    local_list: tuple[int, tuple[Backend, ...]] | None = None
    # loadBalancerSourceRanges, IPv4 networks: the sources a new flow to a
    # frontend flagged FE_SRC_RANGES (a load balancer IP) may come from
    source_ranges: tuple[str, ...] = ()

    @property
    def local_count(self) -> int:
        return sum(1 for b in self.backends if b.local)

    def balanced_among(self, fe: Frontend) -> tuple[Backend, ...]:
        """The backends a new flow to `fe` is balanced among, as the datapath
        picks: its own list for a Local policy's split choice, else the
        first local_count ordinals (the local ones) under a Local policy,
        else every backend."""
        if self.local_list is not None and fe.svc_id == self.local_list[0]:
            return self.local_list[1]
        return self.backends[: self.local_count] if fe.flags & LOCAL_FLAGS else self.backends


@dataclass(frozen=True, slots=True)
class NatTables:
    ports: tuple[ServicePort, ...]
    warnings: tuple[str, ...]

    @property
    def frontend_count(self) -> int:
        return sum(len(p.frontends) for p in self.ports)

    @property
    def backend_count(self) -> int:
        return sum(len(p.backends) for p in self.ports)


def _ipv4_bytes(text: Any) -> bytes | None:
    """Strict dotted-quad parse in C (ipaddress is ~10x slower at 100k backends)."""
    try:
        return socket.inet_pton(socket.AF_INET, text) if isinstance(text, str) else None
    except OSError:
        return None


def _is_ipv4(text: Any) -> bool:
    return _ipv4_bytes(text) is not None


class _Candidate(NamedTuple):
    backend: Backend
    ready: bool
    serving_terminating: bool  # the fallback when nothing in scope is ready
    zones: frozenset[str] = frozenset()  # hints.forZones
    nodes: frozenset[str] = frozenset()  # hints.forNodes


ZONE_LABEL = "topology.kubernetes.io/zone"


def node_zone(resources: Iterable[Resource], node: str) -> str:
    """This node's zone, as its HostEndpoints carry it (Calico copies a
    node's labels onto the HostEndpoints it creates for it); "" when none
    says, or they disagree."""
    zones = {
        str(r.labels[ZONE_LABEL])
        for r in resources
        if r.kind == "HostEndpoint" and r.spec.get("node") == node and r.labels.get(ZONE_LABEL)
    }
    return zones.pop() if len(zones) == 1 else ""


def _hinted(hints: Any, key: str) -> frozenset[str]:
    names = hints.get(key) if isinstance(hints, Mapping) else None
    return frozenset(
        str(h["name"]) for h in names or () if isinstance(h, Mapping) and h.get("name")
    )


def _candidates(
    slices: Iterable[Resource], port_name: str, proto: str, node: str
) -> list[_Candidate]:
    """Every endpoint of the port with its conditions, read as the API says:
    ready and serving default to true (serving to ready), terminating to false."""
    found: dict[tuple[bool, bytes, int], _Candidate] = {}
    for sl in slices:
        body = sl.body
        if body.get("addressType") != "IPv4":
            continue
        port = next(
            (
                p.get("port")
                for p in body.get("ports") or ()
                if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == proto
            ),
            None,
        )
        if not isinstance(port, int):
            continue
        for ep in body.get("endpoints") or ():
            conditions = ep.get("conditions") or {}
            ready = conditions.get("ready") is not False
            serving = conditions.get("serving", ready) is not False
            terminating = conditions.get("terminating") is True
            local = ep.get("nodeName") == node
            hints = ep.get("hints")
            zones, nodes = _hinted(hints, "forZones"), _hinted(hints, "forNodes")
            for addr in ep.get("addresses") or ():
                packed = _ipv4_bytes(addr)
                if packed is None:
                    continue
                # sort key: local first (ETP/ITP Local pick from the front), then stable
                key = (not local, packed, port)
                seen = found.get(key)
                if seen is None or (ready and not seen.ready):  # listed twice: the readier
                    found[key] = _Candidate(
                        Backend(addr, port, local), ready, serving and terminating, zones, nodes
                    )
    return [found[k] for k in sorted(found)]


def _usable(candidates: Sequence[_Candidate], local_only: bool) -> tuple[Backend, ...]:
    """kube-proxy's choice within a traffic policy's scope: the ready endpoints,
    or, when none is ready, those still serving while they terminate."""
    scope = [c for c in candidates if c.backend.local or not local_only]
    ready = tuple(c.backend for c in scope if c.ready)
    return ready or tuple(c.backend for c in scope if c.serving_terminating)


def _stable_ids(keys: Sequence[str]) -> dict[str, int]:
    """Service ids from a hash of the service port's name, so adding one service
    never renumbers others; collisions are probed in sorted order."""
    ids: dict[str, int] = {}
    used: set[int] = set()
    for key in sorted(keys):
        candidate = zlib.crc32(key.encode()) or 1
        while candidate in used:
            candidate = (candidate + 1) & 0xFFFFFFFF or 1
        used.add(candidate)
        ids[key] = candidate
    return ids


def _groups(
    resources: Sequence[Resource],
) -> tuple[list[Resource], dict[tuple[str | None, str], list[Resource]]]:
    """Services kube-proxy would program, and EndpointSlices by owning service."""
    slices: dict[tuple[str | None, str], list[Resource]] = {}
    for r in resources:
        if r.kind == "EndpointSlice":
            owner = r.labels.get(SERVICE_NAME_LABEL)
            if isinstance(owner, str):
                slices.setdefault((r.namespace, owner), []).append(r)
    services = []
    for svc in resources:
        if svc.kind != "Service" or PROXY_NAME_LABEL in svc.labels:
            continue
        spec = svc.spec
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") in ("None", None, ""):
            continue  # headless or name-only: kube-proxy programs nothing
        services.append(svc)
    return services, slices


def _port_keys(svc: Resource) -> list[tuple[str, Mapping[str, Any], str]]:
    """(service port key, port, protocol) for the ports we load-balance."""
    out = []
    for port in svc.spec.get("ports") or ():
        proto = str(port.get("protocol") or "TCP")
        if proto in PROTOCOLS:
            key = f"{svc.namespace}/{svc.name}:{port.get('name') or ''}/{proto.lower()}"
            out.append((key, port, proto))
    return out


LOCAL_SUFFIX = "#local"


def _has_local_policy(svc: Resource) -> bool:
    spec = svc.spec
    return "Local" in (spec.get("internalTrafficPolicy"), spec.get("externalTrafficPolicy"))


def _id_keys(svc: Resource) -> list[str]:
    """Keys that get a service id: each port, and for a service with a Local
    traffic policy a second one per port, for when its local endpoints are not
    simply the local part of its cluster-wide ones (see _service_ports)."""
    keys = [key for key, _, _ in _port_keys(svc)]
    if _has_local_policy(svc):
        keys += [key + LOCAL_SUFFIX for key in keys]
    return keys


def _source_ranges(svc: Resource) -> tuple[tuple[str, ...] | None, list[str]]:
    """A LoadBalancer Service's loadBalancerSourceRanges as IPv4 networks
    (host bits cleared), or None when its load balancer IPs admit every
    source. Ranges of another family are left to that family's proxy; when
    none of IPv4 is left, no IPv4 source is admitted (closed, not open)."""
    spec = svc.spec
    listed = spec.get("loadBalancerSourceRanges") or []
    if spec.get("type") != "LoadBalancer" or not listed:
        return None, []
    networks: set[ipaddress.IPv4Network] = set()
    warnings = []
    for text in listed:
        try:
            network = ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError:
            warnings.append(
                f"{svc.ref}: loadBalancerSourceRanges: {text!r} is not a network; ignored"
            )
            continue
        if isinstance(network, ipaddress.IPv4Network):
            networks.add(network)
    if not networks:
        warnings.append(
            f"{svc.ref}: loadBalancerSourceRanges has no IPv4 range: "
            "no IPv4 source reaches its load balancer IPs"
        )
    return tuple(str(n) for n in sorted(networks)), warnings


def _excluded(ip: str, excluded: Sequence[str]) -> bool:
    """Is `ip` within one of FelixConfiguration's bpfExcludeCIDRsFromNAT?"""
    return any(_within(ip, cidr) for cidr in excluded)


@functools.lru_cache(maxsize=4096)
def _within(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _hint_scope(ready: Sequence[_Candidate], node: str) -> str:
    """The hints kube-proxy would go by, first choice first: "node" when
    every ready endpoint carries node hints and one names this node, else
    "zone" when every ready endpoint carries zone hints, else ""."""
    if ready and all(c.nodes for c in ready) and any(node in c.nodes for c in ready):
        return "node"
    return "zone" if ready and all(c.zones for c in ready) else ""


def _cluster_usable(
    candidates: Sequence[_Candidate], node: str, zone: str
) -> tuple[tuple[Backend, ...], str]:
    """kube-proxy's choice for the Cluster traffic policy, topology included,
    and the hint scope it went by (_hint_scope): the ready endpoints hinted
    for this node (PreferSameNode); else, one being hinted for this node's
    zone, those hinted for it (PreferSameZone); else every ready one. With
    none ready, those still serving while they terminate, topology aside."""
    ready = [c for c in candidates if c.ready]
    scope = _hint_scope(ready, node)
    if scope == "node":
        return tuple(c.backend for c in ready if node in c.nodes), scope
    if scope == "zone" and any(zone in c.zones for c in ready):
        return tuple(c.backend for c in ready if zone in c.zones), scope
    return _usable(candidates, local_only=False), scope


ZONELESS = (
    f"its endpoints are hinted for zones, but this node's zone is not known (no {ZONE_LABEL} "
    "label on its HostEndpoints): every ready endpoint is used"
)


def _service_ports(
    svc: Resource,
    slices: Sequence[Resource],
    node: str,
    node_ips: Sequence[str],
    ids: Mapping[str, int],
    excluded: Sequence[str] = (),
    zone: str = "",
) -> tuple[list[ServicePort], list[str]]:
    """One service's ports with their frontends and ordered backends. An
    address within `excluded` (bpfExcludeCIDRsFromNAT) gets no frontend:
    its traffic goes to the host untranslated, as Calico leaves it to
    whatever listens there (a node-local DNS cache). `zone`: this node's
    (node_zone), for the endpoints' topology hints."""
    spec = svc.spec
    warnings = []
    for port in spec.get("ports") or ():
        proto = str(port.get("protocol") or "TCP")
        if proto not in PROTOCOLS:
            warnings.append(f"{svc.ref}: {proto} ports are not load-balanced; skipped")
    ranges, range_warnings = _source_ranges(svc)
    warnings += range_warnings
    ports: list[ServicePort] = []
    for key, port, proto in _port_keys(svc):
        candidates = _candidates(slices, port.get("name") or "", proto, node)
        backends, scope = _cluster_usable(candidates, node, zone)
        zoneless = f"{svc.ref}: {ZONELESS}"
        if not zone and scope == "zone" and zoneless not in warnings:
            warnings.append(zoneless)
        flags, timeout = 0, 0
        if spec.get("sessionAffinity") == "ClientIP":
            flags |= FE_AFFINITY
            cfg = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
            timeout = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_S)
        internal = flags | (FE_ITP_LOCAL if spec.get("internalTrafficPolicy") == "Local" else 0)
        external = flags | (FE_ETP_LOCAL if spec.get("externalTrafficPolicy") == "Local" else 0)
        fe: list[tuple[str, int, int]] = []
        cluster_ips = list(spec.get("clusterIPs") or []) or [spec.get("clusterIP")]
        fe += [(ip, port["port"], internal) for ip in cluster_ips if _is_ipv4(ip)]
        outside = list(spec.get("externalIPs") or [])
        fe += [(ip, port["port"], external) for ip in outside if _is_ipv4(ip)]
        ingress = ((svc.body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        balancer = external | (FE_SRC_RANGES if ranges is not None else 0)
        lb_ips: list[Any] = [i.get("ip") for i in ingress if isinstance(i, Mapping)]
        fe += [(ip, port["port"], balancer) for ip in lb_ips if _is_ipv4(ip)]
        node_port = port.get("nodePort")
        if (
            spec.get("type") in ("NodePort", "LoadBalancer")
            and isinstance(node_port, int)
            and node_port > 0
        ):
            fe += [(ip, node_port, external) for ip in node_ips]
        # An address both an external IP and a ranged load balancer IP keeps
        # the ranges: closed rather than open.
        ranged = {(ip, p) for ip, p, f in fe if f & FE_SRC_RANGES}
        fe = [(ip, p, f) for ip, p, f in fe if f & FE_SRC_RANGES or (ip, p) not in ranged]
        if excluded:
            fe = [(ip, p, f) for ip, p, f in fe if not _excluded(ip, excluded)]
        # Local policies pick among ordinals [0, local_count) of the cluster-wide
        # list. When the local choice is something else (no local endpoint is
        # ready, so local ones still serving while terminating are used, while
        # ready remote ones exist), it gets a list and a service id of its own.
        local = _usable(candidates, local_only=True)
        split = any(f & LOCAL_FLAGS for _, _, f in fe) and local != tuple(
            b for b in backends if b.local
        )
        local_id = ids[key + LOCAL_SUFFIX] if split else ids[key]
        frontends = tuple(
            Frontend(
                ip, p, proto.lower(), local_id if f & LOCAL_FLAGS else ids[key], f, timeout, key
            )
            for ip, p, f in sorted(set(fe))
        )
        extra = (local_id, local) if split else None
        ports.append(ServicePort(key, ids[key], backends, frontends, extra, ranges or ()))
    return ports, warnings


def compile_services(
    resources: Sequence[Resource], node: str, node_ips: Sequence[str],
    excluded: Sequence[str] = (),
) -> NatTables:
    """All service ports with their frontends and backends, for this node
    (no frontend within `excluded`, bpfExcludeCIDRsFromNAT)."""
    zone = node_zone(resources, node)
    services, slices = _groups(resources)
    ids = _stable_ids([key for svc in services for key in _id_keys(svc)])
    ports: list[ServicePort] = []
    warnings: list[str] = []
    for svc in services:
        got, warned = _service_ports(
            svc, slices.get((svc.namespace, svc.name), ()), node, node_ips, ids, excluded, zone
        )
        ports += got
        warnings += warned
    return NatTables(tuple(ports), tuple(warnings))


@dataclass(frozen=True, slots=True)
class Fragment:
    """One service's contribution to the NAT tables, already packed."""

    frontends: tuple[tuple[bytes, bytes, str, str], ...]  # key, value, label, service port
    backends: tuple[tuple[bytes, bytes], ...]
    sources: tuple[tuple[bytes, bytes], ...]  # rcl_nat_src: the ranged frontends' ranges
    info: tuple[tuple[int, str, str], ...]  # svc_id, primary frontend, service port
    warnings: tuple[str, ...]
    frontend_count: int
    backend_count: int
    # (healthCheckNodePort, ready endpoints on this node), see health_check
    health: tuple[int, int] | None = None


def health_check(svc: Resource, slices: Sequence[Resource], node: str) -> tuple[int, int] | None:
    """kube-proxy's health check of a LoadBalancer Service with
    externalTrafficPolicy Local: its healthCheckNodePort and how many of its
    endpoints on this node are ready (each address and port once), which
    tells a load balancer whether to send this node traffic. None for any
    other Service."""
    spec = svc.spec
    port = spec.get("healthCheckNodePort")
    if spec.get("type") != "LoadBalancer" or spec.get("externalTrafficPolicy") != "Local":
        return None
    if type(port) is not int or not 0 < port < 65536:
        return None
    local = {
        (c.backend.ip, c.backend.port)
        for _, p, proto in _port_keys(svc)
        for c in _candidates(slices, p.get("name") or "", proto, node)
        if c.backend.local and c.ready
    }
    return port, len(local)


def _fragment(
    ports: Sequence[ServicePort], warnings: Sequence[str], health: tuple[int, int] | None = None
) -> Fragment:
    frontends, backends, info = [], [], []
    sources: dict[bytes, bytes] = {}
    for port in ports:
        primary = port.frontends[0].label if port.frontends else port.service
        info.append((port.svc_id, f"nat/{primary}", port.service))
        lists = {port.svc_id: (port.backends, port.local_count)}
        if port.local_list is not None:
            local_id, local = port.local_list
            lists[local_id] = (local, len(local))
            info.append((local_id, f"nat/{primary} local endpoints", port.service))
        for fe in port.frontends:
            listed, local_count = lists[fe.svc_id]
            value = fe_value(fe.svc_id, len(listed), local_count, fe.flags, fe.affinity_timeout_s)
            frontends.append((fe_key(fe.vip, fe.port, fe.proto), value, fe.label, fe.service))
            if fe.flags & FE_SRC_RANGES:
                sources.update((src_key(fe.svc_id, n), SRC_VALUE) for n in port.source_ranges)
        for svc_id, (listed, _) in lists.items():
            backends += [
                (be_key(svc_id, ordinal), be_value(be.ip, be.port))
                for ordinal, be in enumerate(listed)
            ]
    return Fragment(
        tuple(frontends), tuple(backends), tuple(sources.items()), tuple(info), tuple(warnings),
        sum(len(p.frontends) for p in ports), len(backends), health,
    )  # fmt: skip


ServiceRef = tuple[str | None, str]  # (namespace, name)


def service_ids(resources: Sequence[Resource]) -> dict[str, int]:
    """Stable ids of every load-balanced service port in `resources`."""
    services, _ = _groups(resources)
    return _stable_ids([key for svc in services for key in _id_keys(svc)])


def service_fragments(
    resources: Sequence[Resource],
    node: str,
    node_ips: Sequence[str],
    ids: Mapping[str, int] | None = None,
    excluded: Sequence[str] = (),
    zone: str | None = None,
) -> dict[ServiceRef, Fragment]:
    """Each programmed service's packed NAT fragment, in resource order. `ids`
    and `zone` (node_zone) default to those of `resources`; an incremental
    compile passes those of the whole config while giving only the
    resources of the services it redoes."""
    if zone is None:
        zone = node_zone(resources, node)
    services, slices = _groups(resources)
    if ids is None:
        ids = _stable_ids([key for svc in services for key in _id_keys(svc)])
    out = {}
    for svc in services:
        ref = (svc.namespace, svc.name)
        own = slices.get(ref, ())
        ports, warnings = _service_ports(svc, own, node, node_ips, ids, excluded, zone)
        out[ref] = _fragment(ports, warnings, health_check(svc, own, node))
    return out


def feeds(resource: Resource) -> ServiceRef | None:
    """The service whose NAT entries this resource feeds, if any."""
    if resource.kind == "Service":
        return (resource.namespace, resource.name)
    if resource.kind == "EndpointSlice":
        owner = resource.labels.get(SERVICE_NAME_LABEL)
        return (resource.namespace, owner) if isinstance(owner, str) else None
    return None
