"""Kernel test harness: a private sandbox node per test, torn down on failure too."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox.netns import Pod, Sandbox


def _kernel_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None or shutil.which("nsenter") is None:
        return "needs iproute2 and nsenter"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "needs bcc (make setup)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _kernel_ready()
    for item in items:
        if "tests/kernel" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  bpfEnabled: {enabled}
  bpfDataIfacePattern: "{pattern}"
"""

WEP = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: {name}
  namespace: shop
  labels: {{app: {name}}}
spec:
  node: node-1
  orchestrator: k8s
  interfaceName: cali-{name}
  ipNetworks: ["{ip}/32"]
  profiles: [kns.shop]
"""

# A ClusterIP Service `web` (port 80) with one endpoint on node-1 (port 8080).
WEB_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  clusterIP: {vip}
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-a
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: ["{ip}"], nodeName: node-1, conditions: {{ready: true}}}}
"""

# The namespace's profile, as Calico's Kubernetes datastore generates it: pods
# accept and send anything until a policy selects them. Without it a
# WorkloadEndpoint drops everything (Calico's end-of-profiles drop).
KNS_SHOP = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: kns.shop
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
"""


def bpftool_dump(pin: Path) -> list[tuple[bytes, bytes]]:
    """A pinned map's entries as bpftool (not our own code) reads them; for a
    per-CPU map, CPU 0's value."""
    raw = subprocess.run(
        ["bpftool", "-j", "map", "dump", "pinned", str(pin)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        (
            bytes(int(b, 16) for b in item["key"]),
            bytes(int(b, 16) for b in item.get("value") or item["values"][0]["value"]),
        )
        for item in json.loads(raw)
    ]


PODS = (Pod("front0", "10.65.0.10"), Pod("back0", "10.65.0.20"))


@dataclass
class Node:
    """A sandbox node plus a config directory and the reconcile CLI bound to both."""

    sandbox: Sandbox
    config: Path
    state: Path
    capsys: pytest.CaptureFixture[str]
    # With caches (the test points XDG_CACHE_HOME somewhere private), each run
    # keeps nothing of the previous one in memory, as separate commands do
    # (each main() makes its own reconciler.engine.caches.Caches).
    cached: bool = False

    def write(self, name: str, text: str) -> None:
        path = self.config / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))

    def remove(self, name: str) -> None:
        (self.config / name).unlink()

    def felix(self, enabled: bool = True, pattern: str = "^eth") -> None:
        self.write("felix.yaml", FELIX.format(enabled=str(enabled).lower(), pattern=pattern))

    def wep(self, pod: Pod) -> None:
        self.write(f"wep-{pod.name}.yaml", WEP.format(name=pod.name, ip=pod.ip))
        self.write("profile-kns-shop.yaml", KNS_SHOP)

    def args(self, *extra: str) -> list[str]:
        target = self.sandbox.target_args(str(self.state))
        cache = [] if self.cached else ["--no-cache"]
        return [*target, "--config", str(self.config), *cache, *extra]

    def run(self, mode: str, *extra: str) -> tuple[int, str, str]:
        from reconciler.cli.main import main

        self.capsys.readouterr()
        # --status and --snapshot take only the target (status re-reads the source its
        # last apply recorded; a snapshot is the kernel's alone)
        target_only = mode in ("--status", "--snapshot")
        args = self.sandbox.target_args(str(self.state)) if target_only else self.args()
        if mode == "--explain":  # the compiled state, the pinned programs, the node's routes
            cache = [] if self.cached else ["--no-cache"]
            args = ["--config", str(self.config), "--node", "node-1",
                    "--bpffs-root", self.sandbox.bpffs_root, "--netns", self.sandbox.node,
                    *cache]  # fmt: skip
        if "--repo" in extra or "--plan-file" in extra:  # not the working tree: a commit,
            # or the source a saved plan names
            at = args.index("--config")
            args = args[:at] + args[at + 2 :]
        rc = main([mode, *args, *extra])
        out, err = self.capsys.readouterr()
        return rc, out, err

    def apply_converged(self) -> str:
        """Apply, then prove idempotency: the next plan is empty and so is a re-apply."""
        rc, out, err = self.run("--apply")
        assert rc == 0, out + err
        assert "Verified" in out
        rc, out2, err2 = self.run("--plan")
        assert rc == 0 and "No changes." in out2, out2 + err2
        rc, out3, err3 = self.run("--apply")
        assert rc == 0 and "No changes." in out3, out3 + err3
        return out


@pytest.fixture
def node(tmp_path, capsys):
    sandbox = Sandbox()
    try:
        sandbox.up(PODS)
        n = Node(sandbox, tmp_path / "config", tmp_path / "state", capsys)
        n.config.mkdir()
        yield n
    finally:
        sandbox.down()
    assert not Path(sandbox.bpffs_root).exists()
    assert not Path(sandbox.cgroup).exists()


def foreign_tc_filter(
    node: Node,
    iface: str,
    prio: int,
    direction: str = "ingress",
    verdict: str = "TC_ACT_UNSPEC",
    name: str = "someone-else",
) -> None:
    """A BPF tc filter of someone else's on `iface` of the sandbox node,
    returning `verdict` for every packet (TC_ACT_UNSPEC: on to the next
    filter; TC_ACT_OK: accepted, later filters never run)."""
    import contextlib

    from bcc import BPF

    from reconciler.datapath.programs import TC_PARENTS
    from reconciler.kernel.pyroute import route

    other = BPF(
        text=b"#include <uapi/linux/pkt_cls.h>\n"
        b"int other_prog(struct __sk_buff *skb) { return " + verdict.encode() + b"; }"
    )
    fn = other.load_func(b"other_prog", BPF.SCHED_CLS)
    with route(node.sandbox.node) as ipr:
        idx = ipr.link_lookup(ifname=iface)[0]
        with contextlib.suppress(Exception):  # ours may be there already
            ipr.tc("add", "clsact", idx)
        ipr.tc("add-filter", "bpf", idx, ":1", fd=fn.fd, name=name,
               parent=TC_PARENTS[direction], classid=1, direct_action=True,
               prio=prio)  # fmt: skip
    other.cleanup()
