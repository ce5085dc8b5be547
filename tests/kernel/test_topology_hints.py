"""Topology hints on a real node: a ClusterIP's traffic goes to the
endpoints hinted for this node's zone (its HostEndpoint's
topology.kubernetes.io/zone label), and follows the label when it moves."""

from __future__ import annotations

from tests.kernel.test_services import BACKENDS, SERVICE, VIP, names, svc  # noqa: F401

HINTED = """\
- addresses: ["{ip}"]
  nodeName: node-1
  conditions: {{ready: true}}
  hints: {{forZones: [{{name: {zone}}}]}}
"""
ZONED_HEP = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: node-1-eth0
  labels: {{topology.kubernetes.io/zone: {zone}}}
spec: {{node: node-1, interfaceName: eth0, expectedIPs: [192.168.50.1]}}
"""


def test_zone_hints_keep_traffic_in_this_nodes_zone(svc):  # noqa: F811
    svc.start()
    zones = {"back0": "a", "back1": "a", "back2": "b"}
    endpoints = "".join(HINTED.format(ip=p.ip, zone=zones[p.name]) for p in BACKENDS)
    svc.node.write("service.yaml", SERVICE.format(type="ClusterIP", vip=VIP, affinity="None",
                                                  etp="Cluster", nodeport="",
                                                  endpoints=endpoints))  # fmt: skip
    svc.node.write("hep.yaml", ZONED_HEP.format(zone="b"))
    svc.node.apply_converged()
    assert set(names(svc.request("tcp", VIP, 80, 20))) == {"back2"}
    svc.node.write("hep.yaml", ZONED_HEP.format(zone="a"))
    svc.node.apply_converged()
    assert set(names(svc.request("tcp", VIP, 80, 30))) == {"back0", "back1"}
    # a zone no endpoint is hinted for: every ready endpoint
    svc.node.write("hep.yaml", ZONED_HEP.format(zone="c"))
    svc.node.apply_converged()
    assert set(names(svc.request("tcp", VIP, 80, 40))) == {"back0", "back1", "back2"}
