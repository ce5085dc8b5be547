"""A one-shot plan and apply of a big working tree, read by a forked child
while the command imports (reconciler.config.read_ahead), plan and apply
exactly what a read in the process gives, and converge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from reconciler.cli import commands
from reconciler.cli.main import parser
from reconciler.config import source

ROOT = str(Path(__file__).resolve().parents[2])
SERVICE = (
    "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: shop}}\n"
    "spec:\n  clusterIP: 10.96.{hi}.{lo}\n  selector: {{app: back0}}\n"
    "  ports: [{{name: http, port: {port}, protocol: TCP}}]\n"
)


def service(i: int, port: int = 80) -> str:
    return SERVICE.format(i=i, hi=1 + i // 250, lo=1 + i % 250, port=port)


def bare_removals(plan: str) -> str:
    """A text plan with its removals' notes (what they were compiled from) left out."""
    return "".join(
        line.split("  (")[0] + "\n" if line.lstrip().startswith("- ") else line + "\n"
        for line in plan.splitlines()
    )


def test_plan_and_apply_read_ahead_agree_with_a_read_in_process_and_converge(node, tmp_path):
    from tests.kernel.conftest import PODS

    cache_home = tmp_path / "cache"
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        "PYTHONPATH": ROOT,
        "XDG_CACHE_HOME": str(cache_home),
    }
    node.cached = True
    node.felix()
    for pod in PODS:
        node.wep(pod)
    for i in range(700):  # a stat cache over the read-ahead's threshold
        node.write(f"services/s{i:03d}.yaml", service(i))

    def reconcile(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", *extra, *node.args()],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip

    first = reconcile("--apply")
    assert first.returncode == 0 and "Verified" in first.stdout, first.stdout + first.stderr
    stat_cache = source.stat_cache_path(cache_home / "calico-reconciler", [str(node.config)])
    assert source.worth_reading_ahead(stat_cache)
    node.write("services/s123.yaml", service(123, port=8080))

    # the gate opens for exactly these arguments (as root, with this cache)
    os.environ["XDG_CACHE_HOME"] = str(cache_home)
    try:
        argv = parser().parse_intermixed_args(["--apply", *node.args()])
        sources = commands.start_read_ahead(argv)
        assert sources is not None and sources.read_ahead is not None
        sources.read_ahead.close()
    finally:
        del os.environ["XDG_CACHE_HOME"]

    ahead = reconcile("--plan")
    here = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "--plan", *node.args(), "--no-cache"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert ahead.returncode == here.returncode == 2, ahead.stdout + ahead.stderr
    # (--no-cache reads no applied record: its removals are not named)
    assert "- map/rcl_nat_fe/10.96.1.124:80/tcp" in ahead.stdout
    assert "(shop/s123:http/tcp)" in ahead.stdout.split("- map/rcl_nat_fe/10.96.1.124:80/tcp")[1]
    assert bare_removals(ahead.stdout) == here.stdout
    assert "10.96.1.124:8080/tcp" in ahead.stdout
    applied = reconcile("--apply")
    assert applied.returncode == 0 and "Verified" in applied.stdout, applied.stdout
    again = reconcile("--plan")
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout + again.stderr
