"""`make demo`, the README's first command, end to end: the script it runs
must converge the example node, show policy and NAT at work, and leave
nothing behind. Run as `make demo KEEP=1` runs it: the node stays up for
commands by hand, and `make demo-down` (--down) removes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reconciler.kernel.bpf import ensure_bpffs

REPO = Path(__file__).resolve().parents[2]
PINS = "/sys/fs/bpf/rcldemo"
STATE = "/run/rcldemo-state"


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/demo.py", *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_the_demo_converges_enforces_is_kept_and_cleans_up():
    # what a demo killed half-way leaves: pins the next demo must not build on
    ensure_bpffs(PINS)
    os.makedirs(f"{PINS}/left-by-a-killed-demo", exist_ok=True)
    try:
        done = _demo("--keep")
        out = done.stdout
        assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
        assert "No changes. The kernel matches the configuration." in out
        assert "2 packets transmitted, 0 received, 100% packet loss" in out  # no ICMP in
        assert "Verdict: Deny" in out and "Verdict: Allow" in out
        assert "compiled program" in out and "agrees: yes" in out  # --explain --kernel
        assert "reply from backend-0 10.65.0.10" in out  # through the ClusterIP, no SNAT
        # --explain follows the ClusterIP to its backend, whose policy lets 8080 in
        assert "10.96.0.50:80/tcp is service shop/backend:http/tcp" in out
        assert "-> backend 10.65.0.20:8080" in out and "(agrees)" in out
        assert "In sync: the kernel matches the source of the last apply." in out
        assert not os.path.exists(f"{PINS}/left-by-a-killed-demo")
        # kept: the status command it prints works by hand
        assert "Remove it with: make demo-down" in out
        status = next(line.strip() for line in out.splitlines()
                      if line.strip().startswith(".venv/bin/reconcile --status"))  # fmt: skip
        assert "--netns rcldemo-node" in status and f"--state-dir {STATE}" in status
        argv = [str(Path(sys.executable).parent / "reconcile"), *status.split()[1:]]
        again = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "In sync" in again.stdout
        assert "rcldemo-node" in _namespaces()
    finally:
        gone = _demo("--down")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "rcldemo-" not in _namespaces()
    assert not os.path.exists(PINS)
    assert not os.path.exists(STATE)
