"""Kernel test harness: a private sandbox node per test, torn down on failure too."""

from __future__ import annotations

import os
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.sandbox import Pod, Sandbox


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
"""

PODS = (Pod("front0", "10.65.0.10"), Pod("back0", "10.65.0.20"))


@dataclass
class Node:
    """A sandbox node plus a config directory and the reconcile CLI bound to both."""

    sandbox: Sandbox
    config: Path
    state: Path
    capsys: pytest.CaptureFixture[str]

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

    def args(self, *extra: str) -> list[str]:
        return [
            "--netns",
            self.sandbox.node,
            "--bpffs-root",
            self.sandbox.bpffs_root,
            "--state-dir",
            str(self.state),
            "--node",
            "node-1",
            "--config",
            str(self.config),
            "--cgroup",
            self.sandbox.cgroup,
            "--no-cache",
            *extra,
        ]

    def run(self, mode: str, *extra: str) -> tuple[int, str, str]:
        from reconciler.cli import main

        self.capsys.readouterr()
        rc = main([mode, *self.args(*extra)])
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
