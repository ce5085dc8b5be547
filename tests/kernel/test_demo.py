"""`make demo`, the README's first command, end to end: the script it runs
must converge the example node, show policy and NAT at work, and leave
nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_converges_enforces_and_cleans_up():
    done = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "No changes. The kernel matches the configuration." in out
    assert "2 packets transmitted, 0 received, 100% packet loss" in out  # ICMP is not allowed in
    assert "Verdict: Deny" in out and "Verdict: Allow" in out
    assert "compiled program" in out and "agrees: yes" in out  # --explain --kernel
    assert "reply from backend-0 10.65.0.10" in out  # through the ClusterIP, no SNAT
    # --explain follows the ClusterIP to its backend, whose policy lets port 8080 in
    assert "10.96.0.50:80/tcp is service shop/backend:http/tcp" in out
    assert "-> backend 10.65.0.20:8080" in out and "(agrees)" in out
    assert "In sync: the kernel matches the source of the last apply." in out
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "rcldemo-" not in namespaces
    assert not os.path.exists("/sys/fs/bpf/rcldemo")
