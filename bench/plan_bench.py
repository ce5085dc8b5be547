"""A no-op --plan on a node with 200 managed interfaces (`--nat-outgoing`:
and an IP pool with natOutgoing, whose chain each plan reads back)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from bench.common import RECONCILE, median_wall, report
from sandbox.netns import Sandbox

FELIX = """apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {bpfEnabled: true}
"""
WEP = """---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: pod-{i}, namespace: bench}}
spec: {{node: node-1, interfaceName: cali{i:04d}, ipNetworks: [10.66.{hi}.{lo}/32]}}
"""


def build_links(sandbox: Sandbox, count: int) -> None:
    """`count` veth pairs inside the node namespace, in one `ip -batch` call."""
    lines = []
    for i in range(count):
        lines.append(f"link add cali{i:04d} type veth peer name p{i:04d}")
        lines.append(f"link set cali{i:04d} up")
        lines.append(f"link set p{i:04d} up")
    subprocess.run(
        ["ip", "-n", sandbox.node, "-batch", "-"], input="\n".join(lines), text=True, check=True
    )


POOL = """---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.66.0.0/16, natOutgoing: true}
"""


def main(count: int = 200, nat_outgoing: bool = False) -> dict[str, object]:
    sandbox = Sandbox(prefix="rclbenchplan")
    sandbox.down()
    with tempfile.TemporaryDirectory(prefix="rcl-bench-") as tmp:
        try:
            sandbox.up()
            build_links(sandbox, count)
            config = Path(tmp) / "config"
            config.mkdir()
            (config / "felix.yaml").write_text(FELIX + (POOL if nat_outgoing else ""))
            (config / "weps.yaml").write_text(
                "".join(WEP.format(i=i, hi=i // 256, lo=i % 256) for i in range(count))
            )
            args = ["--config", str(config), *sandbox.target_args(f"{tmp}/state")]
            apply = median_wall([RECONCILE, "--apply", *args], 1)
            noop = median_wall([RECONCILE, "--plan", *args], 5)
            noop_apply = median_wall([RECONCILE, "--apply", *args], 3)
        finally:
            sandbox.down()
    return report(
        f"plan: {count} interfaces" + (", natOutgoing" if nat_outgoing else ""),
        [
            ("managed interfaces", count + 1, "200 workloads + eth0"),
            ("first apply (compile, 2 filters per interface): s", apply, ""),
            ("no-op --plan: s (median of 5, whole process)", noop, "target < 1 s"),
            ("no-op --apply: s (median of 3)", noop_apply, ""),
        ],
    )


if __name__ == "__main__":
    import sys

    main(nat_outgoing="--nat-outgoing" in sys.argv[1:])
