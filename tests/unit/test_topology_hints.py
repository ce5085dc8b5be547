"""Topology hints, as kube-proxy reads them: the Cluster traffic policy's
endpoints narrowed to those hinted for this node (PreferSameNode), else for
its zone (PreferSameZone), when every ready endpoint carries such hints and
one names this node or zone. This node's zone comes from its HostEndpoints'
topology.kubernetes.io/zone label."""

from __future__ import annotations

import pytest

from reconciler.compile.services import ZONELESS, compile_services, node_zone
from reconciler.config.model import Resource
from tests.unit.test_incremental import compile_, file_ids, incremental, same

ZONE = "topology.kubernetes.io/zone"


def hep(node: str, zone: str | None, name: str = "h"):
    labels = {ZONE: zone} if zone else {}
    body = {"kind": "HostEndpoint", "metadata": {"name": name, "labels": labels},
            "spec": {"node": node, "interfaceName": "eth0"}}  # fmt: skip
    return Resource("HostEndpoint", name, None, body, f"hep/{name}.yaml", 1)


def svc(etp: str = "Cluster"):
    spec = {"clusterIP": "10.96.0.10", "type": "NodePort", "externalTrafficPolicy": etp,
            "ports": [{"name": "p", "port": 80, "protocol": "TCP", "nodePort": 30080}]}  # fmt: skip
    body = {"kind": "Service", "metadata": {"name": "web", "namespace": "shop"}, "spec": spec}
    return Resource("Service", "web", "shop", body, "svc/web.yaml", 1)


def endpoint(ip: str, node: str, zones=(), nodes=(), ready: bool = True):
    ep = {"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}}
    hints = {}
    if zones:
        hints["forZones"] = [{"name": z} for z in zones]
    if nodes:
        hints["forNodes"] = [{"name": n} for n in nodes]
    if hints:
        ep["hints"] = hints
    return ep


def slice_of(*endpoints):
    body = {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "web-1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
            "endpoints": list(endpoints)}  # fmt: skip
    return Resource("EndpointSlice", "web-1", "shop", body, "eps/web-1.yaml", 1)


def chosen(*resources, node: str = "n1"):
    [port] = compile_services(list(resources), node, ["192.168.1.10"]).ports
    return {b.ip for b in port.backends}, port


ZONED = (
    endpoint("10.65.0.1", "n1", zones=["a"]),
    endpoint("10.65.1.1", "n2", zones=["a"]),
    endpoint("10.65.2.1", "n3", zones=["b"]),
)


def test_this_nodes_zone_comes_from_its_host_endpoints():
    assert node_zone([hep("n1", "a")], "n1") == "a"
    assert node_zone([hep("n2", "a")], "n1") == ""  # another node's
    assert node_zone([hep("n1", None)], "n1") == ""
    assert node_zone([hep("n1", "a"), hep("n1", "b", "h2")], "n1") == ""  # they disagree


def test_zone_hints_keep_the_cluster_policy_in_this_zone():
    got, _ = chosen(svc(), slice_of(*ZONED), hep("n1", "a"))
    assert got == {"10.65.0.1", "10.65.1.1"}
    got, _ = chosen(svc(), slice_of(*ZONED), hep("n1", "b"))
    assert got == {"10.65.2.1"}


def test_hints_are_ignored_unless_every_ready_endpoint_has_one_and_one_is_ours():
    unhinted = endpoint("10.65.3.1", "n4")
    assert chosen(svc(), slice_of(*ZONED, unhinted), hep("n1", "a"))[0] == {
        "10.65.0.1", "10.65.1.1", "10.65.2.1", "10.65.3.1"
    }  # fmt: skip
    # (an endpoint that is not ready does not count)
    assert chosen(svc(), slice_of(*ZONED, endpoint("10.65.3.1", "n4", ready=False)),
                  hep("n1", "a"))[0] == {"10.65.0.1", "10.65.1.1"}  # fmt: skip
    assert chosen(svc(), slice_of(*ZONED), hep("n1", "c"))[0] == {
        "10.65.0.1", "10.65.1.1", "10.65.2.1"
    }  # fmt: skip


def test_node_hints_come_before_zone_hints():
    eps = (
        endpoint("10.65.0.1", "n1", zones=["a"], nodes=["n1"]),
        endpoint("10.65.1.1", "n2", zones=["a"], nodes=["n2"]),
    )
    assert chosen(svc(), slice_of(*eps), hep("n1", "a"))[0] == {"10.65.0.1"}
    # no endpoint for this node: the zone decides
    assert chosen(svc(), slice_of(*eps), hep("n3", "a"), node="n3")[0] == {
        "10.65.0.1", "10.65.1.1"
    }  # fmt: skip


def test_nothing_ready_falls_back_to_terminating_endpoints_whatever_the_hints():
    eps = [endpoint("10.65.0.1", "n1", zones=["a"], ready=False),
           endpoint("10.65.2.1", "n3", zones=["b"], ready=False)]  # fmt: skip
    for ep in eps:
        ep["conditions"] = {"ready": False, "serving": True, "terminating": True}
    assert chosen(svc(), slice_of(*eps), hep("n1", "a"))[0] == {"10.65.0.1", "10.65.2.1"}


def test_local_traffic_policy_is_not_narrowed_by_hints():
    eps = (endpoint("10.65.0.1", "n1", zones=["b"]), endpoint("10.65.2.1", "n3", zones=["a"]))
    got, port = chosen(svc("Local"), slice_of(*eps), hep("n1", "a"))
    assert got == {"10.65.2.1"}  # the Cluster list (cluster IP): this zone's
    local_id, local = port.local_list  # NodePorts: this node's own endpoint, hinted or not
    assert {b.ip for b in local} == {"10.65.0.1"} and local_id != port.svc_id


def test_a_zone_nobody_names_is_said_once():
    tables = compile_services([svc(), slice_of(*ZONED)], "n1", ["192.168.1.10"])
    assert tables.warnings == (f"Service/shop/web: {ZONELESS}",)
    assert {b.ip for b in tables.ports[0].backends} == {"10.65.0.1", "10.65.1.1", "10.65.2.1"}


def test_an_incremental_compile_keeps_the_zone():
    first = [hep("n1", "b"), svc(), slice_of(*ZONED)]
    previous = compile_(first, file_ids(first, {}))
    assert previous.nat_index.zone == "b"
    moved = slice_of(endpoint("10.65.0.1", "n1", zones=["b"]), *ZONED[1:])
    after = [first[0], first[1], moved]
    ids = file_ids(after, {"eps/web-1.yaml": 1})
    got = incremental(previous, first, after, ids)
    assert got is not None  # a services-only change
    same(got, compile_(after, ids))


def _hinted_slice(rng, name: str, owner: str):
    eps = []
    for k in range(rng.randrange(0, 5)):
        ep = endpoint(f"10.65.{rng.randrange(4)}.{k + 1}", rng.choice(["n1", "n2"]),
                      zones=rng.choice([(), ("a",), ("b",), ("a", "b")]),
                      nodes=rng.choice([(), (), ("n1",), ("n2",)]),
                      ready=rng.random() < 0.8)  # fmt: skip
        eps.append(ep)
    body = {"kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": owner}},
            "ports": [{"name": "p", "port": 8080, "protocol": "TCP"}],
            "endpoints": eps}  # fmt: skip
    return Resource("EndpointSlice", name, "shop", body, f"eps/{name}.yaml", 1)


def _service(name: str):
    spec = {"clusterIP": f"10.96.0.{10 + int(name[1:])}",
            "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}  # fmt: skip
    body = {"kind": "Service", "metadata": {"name": name, "namespace": "shop"}, "spec": spec}
    return Resource("Service", name, "shop", body, f"svc/{name}.yaml", 1)


@pytest.mark.parametrize("seed", range(8))
def test_random_hints_compile_the_same_in_full_and_incrementally(seed):
    """Random endpoints with and without node and zone hints, this node in
    zone a, b or none: after a random services-only change, the incremental
    compile equals a full one."""
    import random

    rng = random.Random(seed)
    zone = rng.choice(["a", "b", None])
    names = [f"s{i}" for i in range(4)]
    resources = [hep("n1", zone)] + [_service(n) for n in names]
    slices = {n: _hinted_slice(rng, f"{n}-1", n) for n in names}
    first = resources + list(slices.values())
    previous = compile_(first, file_ids(first, {}))
    version = {}
    for _ in range(3):
        changed = rng.choice(names)
        slices[changed] = _hinted_slice(rng, f"{changed}-1", changed)
        version[f"eps/{changed}-1.yaml"] = version.get(f"eps/{changed}-1.yaml", 0) + 1
        after = resources + list(slices.values())
        ids = file_ids(after, version)
        got = incremental(previous, first, after, ids)
        assert got is not None  # a services-only change
        same(got, compile_(after, ids))
        previous, first = got, after
