"""The post-receive hook converges a node to the pushed commit."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import git

from tests.kernel.conftest import FELIX, PODS, WEP
from tests.kernel.test_reconcile import tc_filters

ROOT = Path(__file__).resolve().parents[2]


def test_push_converges_the_node(node, tmp_path):
    server = tmp_path / "server.git"
    git.Repo.init(server, bare=True, initial_branch="main")
    hook = server / "hooks" / "post-receive"
    shutil.copy(ROOT / "hooks" / "post-receive", hook)
    hook.chmod(0o755)
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    (tmp_path / "work" / "felix.yaml").write_text(FELIX.format(enabled="true", pattern="^eth"))
    front = PODS[0]
    (tmp_path / "work" / "wep.yaml").write_text(WEP.format(name=front.name, ip=front.ip))
    work.index.add(["felix.yaml", "wep.yaml"])
    work.index.commit("node config")
    work.create_remote("origin", str(server))
    target = node.sandbox.target_args(str(node.state))
    env = {
        **os.environ,
        "RECONCILE": str(Path(sys.executable).parent / "reconcile"),
        "RECONCILE_ARGS": shlex.join([*target, "--no-cache"]),
    }
    push = subprocess.run(
        ["git", "-C", str(tmp_path / "work"), "push", "origin", "main"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert push.returncode == 0, push.stderr
    assert "Verified: the kernel matches the configuration." in push.stderr
    assert "rcl:tc@" in tc_filters(node, "cali-front0", "ingress")
    # the node now reports the pushed commit as its source
    rc, out, _ = node.run("--status", "--json")
    commit = work.head.commit.hexsha
    assert json.loads(out)["last_apply"]["source"]["identity"] == f"git:{commit}"
