"""Compile Kubernetes Services + EndpointSlices into NAT map contents. Pure.

Follows kube-proxy's rules: headless and ExternalName services and those
labelled `service.kubernetes.io/service-proxy-name` are skipped; endpoints
count when `ready` is not false; ports are matched by name. Backends of one
service port share a service id; local backends (nodeName == this node) sit
at ordinals [0, local_count) so ETP/ITP Local can pick among them alone.
"""

from __future__ import annotations

import socket
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from reconciler.model import Resource

PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PROTOCOLS = {"TCP": 6, "UDP": 17}
DEFAULT_AFFINITY_S = 10800  # Kubernetes' default sessionAffinityConfig timeout

# Mirrors bpf/lib/nat_types.h RCL_FE_* flags.
FE_AFFINITY, FE_ETP_LOCAL, FE_ITP_LOCAL = 1, 2, 4


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

    @property
    def local_count(self) -> int:
        return sum(1 for b in self.backends if b.local)


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


def _backends(
    slices: Iterable[Resource], port_name: str, proto: str, node: str
) -> tuple[Backend, ...]:
    found: dict[tuple[bool, bytes, int], Backend] = {}
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
            if conditions.get("ready") is False:
                continue
            local = ep.get("nodeName") == node
            for addr in ep.get("addresses") or ():
                packed = _ipv4_bytes(addr)
                if packed is not None:
                    # sort key: local first (ETP/ITP Local pick from the front), then stable
                    found[(not local, packed, port)] = Backend(addr, port, local)
    return tuple(found[k] for k in sorted(found))


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


def compile_services(
    resources: Sequence[Resource], node: str, node_ips: Sequence[str]
) -> NatTables:
    """All service ports with their frontends and backends, for this node."""
    warnings: list[str] = []
    slices: dict[tuple[str | None, str], list[Resource]] = {}
    for r in resources:
        if r.kind == "EndpointSlice":
            owner = r.labels.get(SERVICE_NAME_LABEL)
            if isinstance(owner, str):
                slices.setdefault((r.namespace, owner), []).append(r)

    pending: list[tuple[str, Resource, Mapping[str, Any], str]] = []
    for svc in resources:
        if svc.kind != "Service" or PROXY_NAME_LABEL in svc.labels:
            continue
        spec = svc.spec
        if spec.get("type") == "ExternalName" or spec.get("clusterIP") in ("None", None, ""):
            continue  # headless or name-only: kube-proxy programs nothing
        for port in spec.get("ports") or ():
            proto = str(port.get("protocol") or "TCP")
            if proto not in PROTOCOLS:
                warnings.append(f"{svc.ref}: {proto} ports are not load-balanced; skipped")
                continue
            key = f"{svc.namespace}/{svc.name}:{port.get('name') or ''}/{proto.lower()}"
            pending.append((key, svc, port, proto))

    ids = _stable_ids([key for key, *_ in pending])
    ports: list[ServicePort] = []
    for key, svc, port, proto in pending:
        spec = svc.spec
        backends = _backends(
            slices.get((svc.namespace, svc.name), ()), port.get("name") or "", proto, node
        )
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
        ingress = ((svc.body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        outside += [i.get("ip") for i in ingress if isinstance(i, Mapping) and i.get("ip")]
        fe += [(ip, port["port"], external) for ip in outside if _is_ipv4(ip)]
        node_port = port.get("nodePort")
        if (
            spec.get("type") in ("NodePort", "LoadBalancer")
            and isinstance(node_port, int)
            and node_port > 0
        ):
            fe += [(ip, node_port, external) for ip in node_ips]
        frontends = tuple(
            Frontend(ip, p, proto.lower(), ids[key], f, timeout, key)
            for ip, p, f in sorted(set(fe))
        )
        ports.append(ServicePort(key, ids[key], backends, frontends))
    return NatTables(tuple(ports), tuple(warnings))
