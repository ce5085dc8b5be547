"""What a plan refuses under its own node's configuration, before anything
is compiled, is told at the field to change, and the kernel is left as it
was: a NAT frontend or backend map too small for what the node programs,
and a workload with more networks to send from (its spoofing allowances
honoured) than the datapath checks."""

from __future__ import annotations

import os

import pytest

from tests.kernel.conftest import PODS, WEB_SERVICE, WEP
from tests.kernel.test_reconcile import tc_filters

FRONT, _ = PODS
NODE_FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: node.node-1
spec:
  {field}
"""


SPOOFED = ", ".join(f"10.66.{2 * i + 1}.0/32" for i in range(8))
CASES = {
    "frontends": (
        {
            "svc.yaml": WEB_SERVICE.format(vip="10.96.0.10", ip=FRONT.ip),
            "svc-api.yaml": WEB_SERVICE.format(vip="10.96.0.11", ip=FRONT.ip).replace("web", "api"),
            "node.yaml": NODE_FELIX.format(field="bpfMapSizeNATFrontend: 1"),
        },
        "node.yaml:6: FelixConfiguration/node.node-1: spec.bpfMapSizeNATFrontend: 1 is too "
        "small for 2 frontends (each Service port's clusterIPs, externalIPs and load balancer "
        "IPs; nodePorts add one per node address); raise it to at least 2, with room for the "
        "nodePorts",
    ),
    "backends": (
        {
            "svc.yaml": WEB_SERVICE.format(vip="10.96.0.10", ip=FRONT.ip),
            "svc-api.yaml": WEB_SERVICE.format(vip="10.96.0.11", ip=FRONT.ip).replace("web", "api"),
            "node.yaml": NODE_FELIX.format(field="bpfMapSizeNATBackend: 1"),
        },
        "node.yaml:6: FelixConfiguration/node.node-1: spec.bpfMapSizeNATBackend: 1 is too "
        "small for 2 backends (each Service port's ready endpoints, where no topology hint "
        "lets a node pick fewer; a Local traffic policy adds a list of a node's own); raise it "
        "to at least 2, with room to grow",
    ),
    "spoofing": (
        {
            f"wep-{FRONT.name}.yaml": WEP.format(name=FRONT.name, ip=FRONT.ip)
            + f"  allowSpoofedSourcePrefixes: [{SPOOFED}]\n",
            "node.yaml": NODE_FELIX.format(field="workloadSourceSpoofing: Any"),
        },
        "wep-front0.yaml:13: WorkloadEndpoint/shop/front0: spec.allowSpoofedSourcePrefixes: "
        "9 IPv4 networks to send from (ipNetworks and allowSpoofedSourcePrefixes, adjacent "
        "ones merged); the datapath checks at most 8 per workload",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_plan_refuses_at_the_field_and_changes_nothing(node, case):
    node.felix()
    node.wep(FRONT)
    files, expected = CASES[case]
    for name, text in files.items():
        node.write(name, text)
    for mode in ("--plan", "--apply"):
        rc, out, err = node.run(mode)
        assert rc == 1, out + err
        assert f"{node.config}/{expected}" in err, err
        assert err.rstrip().endswith("nothing was changed"), err
    assert not os.path.exists(node.sandbox.bpffs_root)  # not even the bpffs root made
    assert "rcl:" not in tc_filters(node, "cali-front0", "ingress")
