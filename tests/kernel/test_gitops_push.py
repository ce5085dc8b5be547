"""A node that follows a repository: a push converges it (woken by the
post-receive hook, or by polling), an invalid push is refused at the door and
leaves it as it was, a force push back is refused unless rewinds are
allowed, and under --verify-signatures an unsigned commit is refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import git

from tests.kernel.conftest import FELIX, PODS, WEP
from tests.kernel.gitops_support import ENV, RECONCILE, watch
from tests.kernel.test_reconcile import has_endpoint, tc_filters
from tests.unit.test_validate_cli import BAD

FRONT, BACK = PODS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Repo:
    """A bare server repository with our hooks and a working clone to push from."""

    def __init__(self, tmp: Path, *install: str) -> None:
        self.bare = tmp / "server.git"
        git.Repo.init(self.bare, bare=True, initial_branch="main")
        self.work = git.Repo.init(tmp / "work", initial_branch="main")
        self.work.config_writer().set_value("user", "name", "t").release()
        self.work.config_writer().set_value("user", "email", "t@example.com").release()
        self.work.create_remote("origin", str(self.bare))
        from reconciler.cli.main import main

        assert main(["--install-hooks", str(self.bare), *install]) == 0

    def commit(self, files: dict[str, str | None], message: str, *flags: str) -> str:
        root = Path(self.work.working_tree_dir)
        for name, text in files.items():
            if text is None:
                (root / name).unlink()
            else:
                (root / name).write_text(text)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message, *flags)
        return self.work.head.commit.hexsha

    def git(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", self.work.working_tree_dir, *args],
            capture_output=True,
            text=True,
            env={**ENV, **(env or {})},
        )

    def push(self, *flags: str) -> subprocess.CompletedProcess:
        return self.git("push", *flags, "origin", "main")


def front_config() -> dict[str, str | None]:
    return {
        "felix.yaml": FELIX.format(enabled="true", pattern="^eth"),
        "wep-front0.yaml": WEP.format(name=FRONT.name, ip=FRONT.ip),
    }


def back_wep() -> dict[str, str | None]:
    return {"wep-back0.yaml": WEP.format(name=BACK.name, ip=BACK.ip)}


def attached(node, iface: str) -> bool:
    """Its WorkloadEndpoint applied: our filter on it and its policy in the
    kernel (a pod interface no endpoint names carries our filter, held closed)."""
    return "rcl:tc@" in tc_filters(node, iface, "ingress") and has_endpoint(node, iface)


def repo_args(node, repo: Path, *extra: str) -> list[str]:
    args = [a for a in node.args() if a not in ("--config", str(node.config))]
    return [*args, "--repo", str(repo), "--ref", "main", *extra]


def test_push_converges_the_watching_node_and_a_bad_push_is_refused(node, tmp_path):
    port = free_port()
    repo = Repo(tmp_path, "--node-url", f"http://127.0.0.1:{port}")
    first = repo.commit(front_config(), "front")
    assert repo.push().returncode == 0
    args = repo_args(node, repo.bare, "--wake-addr", f"127.0.0.1:{port}", "--poll-interval", "0")
    with watch([*args, "--interval", "300"]) as w:
        w.wait_record(lambda r: r["result"] == "applied" and r["source"] == f"git:{first}")
        assert attached(node, "cali-front0") and not attached(node, "cali-back0")
        served = json.loads(node.run("--status", "--json")[1])["watch"]["endpoints"]
        assert {
            "serves": "wake-ups from the post-receive hook (POST /wake), from --wake-addr",
            "address": f"127.0.0.1:{port}", "listening": True,
        } in served, served  # fmt: skip
        # a valid push: the post-receive hook wakes the watcher (no poll, no drift timer)
        mark = w.mark()
        second = repo.commit(back_wep(), "back")
        pushed = repo.push()
        assert pushed.returncode == 0 and "woke 1 node(s)" in pushed.stderr, pushed.stderr
        r = w.wait_after(mark, lambda r: r["source"] == f"git:{second}", timeout=10)
        assert r["result"] == "applied" and r["trigger"] == "push refs/heads/main", r
        assert attached(node, "cali-back0")
        # an invalid push never reaches the repository, nor the node
        repo.commit({"bad.yaml": BAD}, "bad")
        refused = repo.push()
        assert refused.returncode != 0
        assert "bad.yaml:7: GlobalNetworkPolicy/broken: spec.egres" in refused.stderr
        assert git.Repo(repo.bare).commit("main").hexsha == second
        assert attached(node, "cali-front0") and attached(node, "cali-back0")
        # a force push back to the first commit: refused, the node held where it is
        repo.git("reset", "-q", "--hard", first)
        mark = w.mark()
        assert repo.push("--force").returncode == 0
        held = w.wait_after(mark, lambda r: r["result"] == "failed", timeout=10)
        assert "moved backwards" in held["error"] and "--allow-rewind" in held["error"], held
        assert held["held"] == f"git:{second}"
        assert attached(node, "cali-back0")
    # one-shot runs refuse it too, until --allow-rewind
    one_shot = ["--repo", str(repo.bare), "--ref", "main"]
    rc, _, err = node.run("--plan", *one_shot)
    assert rc == 1 and err.splitlines()[-1] == (
        f"error: {repo.bare}@main moved backwards: {first[:12]} does not contain the applied "
        f"commit {second[:12]} (a force push or a rollback); the kernel is left as it is. "
        "Use --allow-rewind to apply it anyway"
    ), err
    rc, out, err = node.run("--apply", *one_shot, "--allow-rewind")
    assert rc == 0, out + err
    assert not attached(node, "cali-back0")
    status = json.loads(node.run("--status", "--json")[1])
    assert status["last_apply"]["source"]["identity"] == f"git:{first}"
    # beside the kernel plan: what changed, resource by resource, since the applied commit
    repo.commit({**back_wep(), "wep-front0.yaml": WEP.format(name=FRONT.name, ip="10.65.0.11")},
                "back, front moved")  # fmt: skip
    assert repo.push().returncode == 0
    rc, out, err = node.run("--plan", *one_shot)
    assert rc == 2, out + err
    assert f"Resources changed since the applied commit {first[:12]}:" in out
    assert "+ WorkloadEndpoint/shop/back0" in out
    assert (
        '~ WorkloadEndpoint/shop/front0: spec.ipNetworks[0]: "10.65.0.10/32" -> "10.65.0.11/32"'
        in out
    ), out
    rc, out, err = node.run("--plan", "--json", *one_shot)
    assert rc == 2, out + err
    since = json.loads(out)["resource_changes"]
    assert since["since"] == first and "+ WorkloadEndpoint/shop/back0" in since["changes"], since


def test_a_remote_never_fetched_fails_the_pass_until_it_can_be(node, tmp_path):
    """A watcher started before its repository can be fetched: each pass
    fails with the fetch's error (there are no earlier commits to go on
    with), and the node follows once the repository is there."""
    url = f"file://{tmp_path}/server.git"
    args = [a for a in node.args() if a not in ("--config", str(node.config))]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    watch_args = [*args, "--repo", url, "--ref", "main", "--poll-interval", "0.5"]
    with watch([*watch_args, "--interval", "300"], env) as w:
        failed = w.wait_record(lambda r: r["result"] == "failed")
        assert f"fatal: '{tmp_path}/server.git' does not appear to be a git repository" in (
            failed["error"]
        ), failed
        assert "using the last fetched commits" not in w.log
        repo = Repo(tmp_path)
        first = repo.commit(front_config(), "front")
        assert repo.push().returncode == 0
        w.wait_record(lambda r: r["source"] == f"git:{first}", timeout=60)
        assert attached(node, "cali-front0")


def test_a_remote_repository_is_polled(node, tmp_path):
    repo = Repo(tmp_path)
    first = repo.commit(front_config(), "front")
    assert repo.push().returncode == 0
    url = f"file://{repo.bare}"
    args = [a for a in node.args() if a not in ("--config", str(node.config))]
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    watch_args = [*args, "--repo", url, "--ref", "main", "--poll-interval", "0.5"]
    with watch([*watch_args, "--interval", "300"], env) as w:
        w.wait_record(lambda r: r["source"] == f"git:{first}")
        mark = w.mark()
        second = repo.commit(back_wep(), "back")
        assert repo.push().returncode == 0
        r = w.wait_after(mark, lambda r: r["source"] == f"git:{second}", timeout=10)
        assert r["trigger"] == "new commit (poll)" and attached(node, "cali-back0")
        # an invalid commit (a server without our hook): the pass names it, and
        # the node is held at the last good one
        (repo.bare / "hooks" / "pre-receive").unlink()
        mark = w.mark()
        bad = repo.commit({"bad.yaml": BAD}, "bad")
        assert repo.push().returncode == 0
        failed = w.wait_after(mark, lambda r: r["result"] == "failed", timeout=10)
        assert failed["source"] == f"git:{bad}" and failed["held"] == f"git:{second}", failed
        _, text, _ = node.run("--status")
        assert f"new commit (poll): git:{bad[:12]}\n" in text, text
        assert (
            "      4 error(s) in the configuration: bad.yaml:6: GlobalNetworkPolicy/broken: "
            "spec.selector: invalid selector: expected expression at column 16 (+3 more)\n"
            f"      held at git:{second[:12]}\n"
        ) in text, text
        watcher = json.loads(node.run("--status", "--json")[1])["watch"]
        assert watcher["newest"] == f"git:{bad}" and watcher["held"] == f"git:{second}"
        # the branch is deleted upstream: a clear error, the node left as it is
        mark = w.mark()
        subprocess.run(["git", "-C", str(repo.bare), "branch", "-q", "-m", "main", "gone"])
        gone = w.wait_after(mark, lambda r: r["result"] == "failed", timeout=10)
        assert "no such branch, tag or commit" in gone["error"], gone
        assert gone["held"] == f"git:{second}" and attached(node, "cali-back0")
    assert list((tmp_path / "cache" / "calico-reconciler" / "repos").iterdir())
    assert os.path.exists(node.state / "watch.json")


def test_the_watcher_never_rolls_back_a_commit_applied_by_hand(node, tmp_path):
    """The watcher follows main; a commit of another branch that contains
    main's is applied by hand. main no longer contains what the node runs:
    the watcher refuses main, and does not hold the node to main's last good
    commit either (that would roll the hand-applied one back)."""
    repo = Repo(tmp_path)
    first = repo.commit(front_config(), "front")
    assert repo.push().returncode == 0
    repo.git("checkout", "-q", "-b", "staging")
    staged = repo.commit(back_wep(), "back")
    assert repo.git("push", "-q", "origin", "staging").returncode == 0
    with watch([*repo_args(node, repo.bare, "--poll-interval", "0"), "--interval", "2"]) as w:
        w.wait_record(lambda r: r["result"] == "applied" and r["source"] == f"git:{first}")
        assert not attached(node, "cali-back0")
        # a second watcher of the node (following staging) is refused: two would
        # undo each other's passes
        staging_args = [a if a != "main" else "staging" for a in repo_args(node, repo.bare)]
        second = subprocess.run([RECONCILE, "--watch", *staging_args], capture_output=True,
                                text=True, env=ENV, timeout=120)  # fmt: skip
        assert second.returncode == 1, second.stderr
        assert f"error: another watcher follows this node: pid {w.proc.pid} " in second.stderr
        assert second.stderr.rstrip().endswith(
            "a node follows one source: stop that watcher first"
        ), second.stderr
        w.wait_quiet()
        by_hand = ["--repo", str(repo.bare), "--ref", "staging"]
        for _ in range(5):  # the watcher's pass may hold the apply lock a moment
            rc, out, err = node.run("--apply", *by_hand)
            if "lock" not in err:
                break
        assert rc == 0 and "Verified" in out, out + err
        mark = w.mark()
        for _ in range(2):  # two passes of the drift timer, neither rolls back
            refused = w.wait_after(mark, lambda r: r["result"] == "failed", timeout=30)
            mark = w.records.index(refused) + 1
            assert (
                f"moved backwards: {first[:12]} does not contain the applied commit "
                f"{staged[:12]}" in refused["error"]
            ), refused
            assert (
                f"not holding to the last good commit {first[:12]} either: it does not contain "
                f"{staged[:12]}, which the node runs; nothing is changed" in refused["error"]
            ), refused
            assert refused["changes"] == 0 and not refused.get("held"), refused
            assert attached(node, "cali-back0")
    status = json.loads(node.run("--status", "--json")[1])
    assert status["last_apply"]["source"]["identity"] == f"git:{staged}"
