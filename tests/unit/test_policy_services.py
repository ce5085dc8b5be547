"""Policy rules that name a Kubernetes Service (`services`): a destination
is the Service's endpoints on their ports, a source their addresses; the
endpoints come from its EndpointSlices, and a change to them recompiles the
policy that names them, whichever incremental path the change takes."""

from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.compile.dataplane import compile_desired
from reconciler.compile.nat_tables import update
from reconciler.compile.policy_model import ALLOW, DENY, Packet, build_model, evaluate
from reconciler.config.model import Resource
from reconciler.plan.state import Link
from tests.unit.test_incremental import FELIX

TCP, UDP = 6, 17
LINKS = [Link("cali-web", 5, ()), Link("cali-api", 6, ())]


def res(kind: str, name: str, body: dict[str, Any], ns: str | None = "shop",
        file: str = "f.yaml") -> Resource:  # fmt: skip
    body = {"kind": kind, "metadata": {"name": name, "namespace": ns,
            "labels": body.pop("labels", {})}, **body}  # fmt: skip
    return Resource(kind, name, ns, body, file, 1)


def wep(name: str, ip: str) -> Resource:
    spec = {"node": "n1", "interfaceName": f"cali-{name}", "ipNetworks": [f"{ip}/32"]}
    return res("WorkloadEndpoint", name, {"labels": {"app": name}, "spec": spec})


def slice_(service: str, ips: list[str], ports: list[tuple[str, int]], suffix: str = "a",
           ns: str = "shop") -> Resource:  # fmt: skip
    body = {
        "labels": {"kubernetes.io/service-name": service},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": i == 0}}
                      for i, ip in enumerate(ips)],
        "ports": [{"name": f"p{port}", "protocol": proto, "port": port} for proto, port in ports],
    }  # fmt: skip
    return res("EndpointSlice", f"{service}-{suffix}", body, ns, file=f"svc-{service}.yaml")


def service(name: str, ns: str = "shop") -> Resource:
    vip = f"10.96.{len(ns)}.{len(name)}"  # one of its own in these tests
    spec = {"clusterIP": vip, "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}
    return res("Service", name, {"spec": spec}, ns, file=f"svc-{name}.yaml")


def policy(direction: str, side: str, match: dict[str, str], **rule: Any) -> Resource:
    spec = {"selector": "app == 'web'", "types": [direction.capitalize()],
            direction: [{"action": "Allow", side: {"services": match}, **rule}]}  # fmt: skip
    return res("NetworkPolicy", "p", {"spec": spec}, file="policy.yaml")


def verdict(resources: list[Resource], direction: str, peer: str, proto: int, port: int) -> str:
    chain = build_model(resources, "n1").chains[("shop/web", direction)]
    return evaluate(chain, Packet(int(ipaddress.IPv4Address(peer)), proto, port, 40000)).action


BASE = [wep("web", "10.1.0.1"), service("db"), service("db", "other"),
        slice_("db", ["10.2.0.1", "10.2.0.2"], [("TCP", 5432), ("UDP", 5353)]),
        slice_("db", ["10.2.0.3"], [("TCP", 6432)], suffix="b")]  # fmt: skip


def test_a_destination_service_is_its_endpoints_on_their_ports() -> None:
    resources = [*BASE, policy("egress", "destination", {"name": "db"})]
    for peer, proto, port in (("10.2.0.1", TCP, 5432), ("10.2.0.2", UDP, 5353),
                              ("10.2.0.3", TCP, 6432)):  # fmt: skip
        assert verdict(resources, "egress", peer, proto, port) == ALLOW, (peer, port)
    # another slice's port, a port no slice has, an address no slice has
    for peer, proto, port in (("10.2.0.3", TCP, 5432), ("10.2.0.1", TCP, 80),
                              ("10.2.0.9", TCP, 5432), ("10.2.0.1", UDP, 5432)):  # fmt: skip
        assert verdict(resources, "egress", peer, proto, port) == DENY, (peer, port)
    # the rule's own protocol narrows it
    tcp_only = [*BASE, policy("egress", "destination", {"name": "db"}, protocol="TCP")]
    assert verdict(tcp_only, "egress", "10.2.0.2", UDP, 5353) == DENY
    assert verdict(tcp_only, "egress", "10.2.0.2", TCP, 5432) == ALLOW


def test_a_source_service_is_its_endpoints_addresses_in_the_named_namespace() -> None:
    here = [*BASE, policy("ingress", "source", {"name": "db"}, protocol="TCP",
                          destination={"ports": [8080]})]  # fmt: skip
    assert verdict(here, "ingress", "10.2.0.3", TCP, 8080) == ALLOW
    assert verdict(here, "ingress", "10.2.0.3", TCP, 8081) == DENY
    assert verdict(here, "ingress", "10.9.0.1", TCP, 8080) == DENY
    # the same name in another namespace has no endpoints: nothing matches
    there = [*BASE, policy("ingress", "source", {"name": "db", "namespace": "other"})]
    assert verdict(there, "ingress", "10.2.0.3", TCP, 8080) == DENY


def compile_(resources: list[Resource], previous: Any = None) -> Any:
    files = {r.file: str(hash(repr(r.body)) & 0xFFFFFFFF) for r in resources}
    desired = compile_desired([FELIX, *resources], "n1", LINKS, "/x", "s", files, "ctx",
                              previous)  # fmt: skip
    assert desired.errors == (), desired.errors
    return desired, files


def test_a_change_to_a_named_services_endpoints_recompiles_the_policy() -> None:
    named = [*BASE, policy("egress", "destination", {"name": "db"})]
    before, _ = compile_(named)
    assert before.nat_index.policy_services == frozenset({("shop", "db")})
    moved = slice_("db", ["10.2.0.1", "10.2.0.7"], [("TCP", 5432), ("UDP", 5353)])
    after = [r if r.name != "db-a" else moved for r in named]
    full, files = compile_(after)
    # the services-only update declines: the policy's tables move too
    old = {moved.file: [r for r in named if r.file == moved.file]}
    new = {moved.file: [r for r in after if r.file == moved.file]}
    assert update(before, files, old, new, {}) is None
    # the full compile from the previous state (policy compiled incrementally) agrees
    again, _ = compile_(after, before)
    assert again.objects == full.objects and again.objects != before.objects
    # a Service no rule names is still updated alone
    other = [*named, service("cache"), slice_("cache", ["10.3.0.1"], [("TCP", 1)])]
    base, _ = compile_(other)
    grown = slice_("cache", ["10.3.0.1", "10.3.0.2"], [("TCP", 1)])
    later = [r if r.name != "cache-a" else grown for r in other]
    _, files = compile_(later)
    derived = update(base, files, {grown.file: [r for r in other if r.file == grown.file]},
                     {grown.file: [r for r in later if r.file == grown.file]}, {})  # fmt: skip
    assert derived is not None
