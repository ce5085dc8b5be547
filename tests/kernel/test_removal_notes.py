"""A plan names what it removes from the state the node last applied, after
every apply: each verified apply records its state, also when the node's
interfaces keep rcl_ifstate slots other than a fresh compile gives them."""

from __future__ import annotations

import os

from tests.kernel.conftest import PODS
from tests.kernel.test_read_ahead_apply import service

POLICY = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: web}}
spec:
  selector: all()
  ingress:
  - action: Allow
    protocol: TCP
    destination: {{ports: [{port}]}}
"""


def test_every_apply_records_its_state_so_the_next_plan_names_its_removals(node, tmp_path):
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    try:
        node.cached = True
        node.felix()
        for pod in PODS:
            node.wep(pod)
        node.write("services/a.yaml", service(1))
        node.write("policy.yaml", POLICY.format(port=80))
        node.apply_converged()
        # the first pod leaves: the second keeps its slot, not the first free
        # one a fresh compile gives it (without a pod gone, test_read_ahead_apply)
        node.remove(f"wep-{PODS[0].name}.yaml")
        node.apply_converged()
        for port in (81, 82):  # each apply replaces what the last one wrote
            node.write("services/a.yaml", service(1, port=port))
            node.write("policy.yaml", POLICY.format(port=port))
            rc, out, err = node.run("--plan")
            assert rc == 2, out + err
            for removal, note in (("- map/rcl_nat_fe/", "(shop/s1:http/tcp)"),
                                  ("- map/rcl_pol_verdict/", "  (")):  # fmt: skip
                removed = [line for line in out.splitlines() if removal in line]
                assert removed and all(note in line for line in removed), (port, out)
            node.apply_converged()
    finally:
        del os.environ["XDG_CACHE_HOME"]
