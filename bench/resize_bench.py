"""Conntrack resizes under load: a sandbox node with a ClusterIP service and
three echo backends, a client pod opening new connections one after another
through the VIP, and `reconcile --apply` run again and again with
bpfMapSizeConntrack alternating between two sizes (down, up, ...). Counted:
the connections that failed (reset, refused or timed out) while the applies
ran, on the tc NAT path (connect-time load balancing disabled: every
packet meets the tc programs and conntrack) and on the connect-time path
(the client in the node's cgroup: its socket is pointed at a backend).

Target: 0 lost on both paths across 20 resize applies.

Run: sudo .venv/bin/python -m bench.resize_bench [--quick]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import cli_env, report
from reconciler.datapath.maps import nat_types as nat
from sandbox.nat_stats import pinned_stat
from sandbox.netns import Pod, Sandbox
from tests.kernel.conftest import KNS_SHOP, PODS, WEP
from tests.kernel.test_resize_under_load import LOOP
from tests.kernel.test_services import BACKENDS, CLIENT, ENDPOINT, READY, SERVICE, VIP

RESIZES = 20
# As tests/kernel/test_resize_under_load.py: the load keeps tens of thousands
# of entries, so full buckets evict some (counted), resize or not.
SIZES = (100_000, 150_000)
REPO = Path(__file__).resolve().parents[1]

FELIX_CONFIG = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  bpfEnabled: true
  bpfDataIfacePattern: "^eth"
  bpfConnectTimeLoadBalancing: {ctlb}
  bpfMapSizeConntrack: {size}
  # the sizes alternate as written, whatever the table evicts
  bpfMapSizeConntrackScaling: Disabled
"""


class Node:
    """A sandbox node with the service, its backends serving, and the
    reconcile CLI (this tree's) pointed at it."""

    def __init__(self, tmp: Path) -> None:
        self.sb = Sandbox(prefix=f"rclbrsz{uuid.uuid4().hex[:4]}")
        self.config = tmp / "config"
        self.state = tmp / "state"
        self.servers: list[subprocess.Popen[str]] = []

    def up(self) -> None:
        self.sb.up(PODS)
        for pod in BACKENDS[1:]:
            self.sb.add_pod(pod)
        for pod in BACKENDS:
            self._serve(pod)
        self.config.mkdir(parents=True)
        for pod in (CLIENT, *BACKENDS):
            (self.config / f"wep-{pod.name}.yaml").write_text(WEP.format(name=pod.name, ip=pod.ip))
        (self.config / "profile-kns-shop.yaml").write_text(KNS_SHOP)
        endpoints = "".join(
            ENDPOINT.format(ip=p.ip, node="node-1", conditions=READY) for p in BACKENDS
        )
        (self.config / "service.yaml").write_text(
            SERVICE.format(
                type="ClusterIP", vip=VIP, affinity="None", etp="Cluster", nodeport="",
                endpoints=endpoints,
            )
        )  # fmt: skip

    def _serve(self, pod: Pod) -> None:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.sb.pod_ns(pod)}", sys.executable, "-m",
             "sandbox.echo", pod.name, "8080"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        self.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def configure(self, ctlb: str, size: int) -> None:
        (self.config / "felix.yaml").write_text(FELIX_CONFIG.format(ctlb=ctlb, size=size))

    def apply(self) -> tuple[float, str]:
        cmd = [sys.executable, "-m", "reconciler.cli.main", "--apply",
               *self.sb.target_args(str(self.state)), "--config", str(self.config)]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=cli_env({"PYTHONPATH": str(REPO)})
        )
        if proc.returncode != 0:
            tail = proc.stdout[-1500:] + proc.stderr[-1500:]
            raise RuntimeError(f"apply exited {proc.returncode}: {tail}")
        return time.perf_counter() - start, proc.stdout

    def evicted(self) -> int:
        """Entries of live flows evicted by full buckets so far."""
        return pinned_stat(self.sb.bpffs_root, nat.NatStat.CT_EVICTED)

    def down(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()
        self.sb.down()


def resizes_under_load(node: Node, ctlb: str, resizes: int, tmp: Path) -> dict[str, Any]:
    """Connections made and lost while `resizes` resize applies run."""
    node.configure(ctlb, SIZES[1])
    node.apply()
    stop = tmp / f"stop-{ctlb}"
    netns = node.sb.pod_ns(CLIENT)
    cmd = (sys.executable, "-c", LOOP, str(stop), VIP)
    if ctlb == "Disabled":
        client = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", *cmd], stdout=subprocess.PIPE, text=True
        )
    else:  # in the node's cgroup: connect-time load balancing points the socket
        client = node.sb.spawn_in_cgroup(netns, *cmd)
    walls = []
    evicted = node.evicted()
    try:
        time.sleep(1)
        for i in range(resizes):
            node.configure(ctlb, SIZES[i % 2])
            wall, out = node.apply()
            if "-/+ map/rcl_ct" not in out:
                raise RuntimeError(f"apply {i} did not resize the conntrack table:\n{out}")
            walls.append(wall)
        stop.touch()
        out, _ = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    ok, failed = map(int, out.split())
    return {
        "ok": ok,
        "lost": failed,
        "resizes": resizes,
        "apply_s": statistics.median(walls),
        "evicted": node.evicted() - evicted,
    }


def main(quick: bool = False) -> dict[str, Any]:
    if os.geteuid() != 0:
        print("\n## Conntrack resize under load: skipped (needs root)")
        return {}
    resizes = 4 if quick else RESIZES
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rclbrsz-") as tmp:
        node = Node(Path(tmp))
        try:
            node.up()
            for path, ctlb in (("tc NAT", "Disabled"), ("connect-time LB", "Enabled")):
                results[path] = resizes_under_load(node, ctlb, resizes, Path(tmp))
        finally:
            node.down()
    rows: list[tuple[str, Any, str]] = []
    for path, r in results.items():
        rows += [
            (f"{path}: connections lost, {r['resizes']} resize applies", r["lost"], "target 0"),
            (f"{path}: connections made meanwhile", r["ok"] + r["lost"], ""),
            (f"{path}: median resize apply (s)", r["apply_s"], "under that load"),
            (f"{path}: live entries evicted meanwhile", r["evicted"], "full buckets"),
        ]
    return report("Conntrack resize under load", rows)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
