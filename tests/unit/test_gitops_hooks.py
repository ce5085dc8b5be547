"""`reconcile --install-hooks`: real `git push`es to a bare repository."""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
from pathlib import Path

import git
import pytest

from reconciler.cli import hooks_cmd
from reconciler.cli.main import main
from reconciler.gitops import triggers
from reconciler.gitops.hooks import CATCH_UP
from tests.unit.test_git_source import commit
from tests.unit.test_validate_cli import BAD, GOOD

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bare = tmp_path / "server.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    work.create_remote("origin", str(bare))
    return bare, work


def push(work: git.Repo, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", work.working_tree_dir, "push", *extra, "origin", "main"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )


def test_pre_receive_rejects_every_ref_with_every_diagnostic(server, capsys):
    bare, work = server
    assert main(["--install-hooks", str(bare)]) == 0
    assert "installed" in capsys.readouterr().out
    assert os.access(bare / "hooks" / "pre-receive", os.X_OK)
    commit(work, {"gnp.yaml": GOOD}, "good")
    ok = push(work)
    assert ok.returncode == 0, ok.stderr
    assert "validating refs/heads/main" in ok.stderr
    commit(work, {"bad.yaml": BAD}, "bad")
    rejected = push(work)
    assert rejected.returncode != 0
    assert "bad.yaml:7: GlobalNetworkPolicy/broken: spec.egres: unknown field" in rejected.stderr
    assert "bad.yaml:6: GlobalNetworkPolicy/broken: spec.selector" in rejected.stderr
    assert "push to refs/heads/main rejected" in rejected.stderr
    assert git.Repo(bare).commit("main").message.strip() == "good"
    # installing again replaces our own hooks
    assert main(["--install-hooks", str(bare)]) == 0


def test_a_hook_we_did_not_write_is_left_alone(server, capsys):
    bare, _ = server
    mine = bare / "hooks" / "pre-receive"
    mine.write_text("#!/bin/sh\nexit 0\n")
    assert main(["--install-hooks", str(bare)]) == 1
    err = capsys.readouterr().err
    assert "exists and was not installed by reconcile" in err
    assert mine.read_text() == "#!/bin/sh\nexit 0\n"
    assert not (bare / "hooks" / "post-receive").exists()
    assert main(["--install-hooks", str(bare / "nothing")]) == 1
    assert "not a Git repository" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url,message",
    [
        ("notaurl", "--node-url 'notaurl': expected http://HOST:PORT (a watcher's --wake-addr)"),
        ("ftp://node:9000", "--node-url 'ftp://node:9000': expected http://HOST:PORT"),
        ("http://:9000", "--node-url 'http://:9000': expected http://HOST:PORT"),
        ("http://node:99999", "--node-url 'http://node:99999': the port is not a number from 1"),
        ("http://node:0", "--node-url 'http://node:0': the port is not a number from 1 to 65535"),
        ("http://[::1:9000", "--node-url 'http://[::1:9000': Invalid IPv6 URL"),
    ],
)
def test_a_node_url_curl_cannot_use_is_refused_before_any_hook_is_written(
    server, capsys, url, message
):
    bare, _ = server
    argv = ["--install-hooks", str(bare), "--node-url", "http://node-1:9000", "--node-url", url]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: {message}" in err
    assert err.rstrip().endswith("; nothing was changed")
    assert not (bare / "hooks" / "pre-receive").exists()
    assert not (bare / "hooks" / "post-receive").exists()


def test_node_urls_as_watchers_listen_are_taken(server, capsys):
    bare, _ = server
    for url in ("http://node-1:9000", "https://node-2", "http://[fd00::1]:9000/"):
        assert main(["--install-hooks", str(bare), "--node-url", url]) == 0, capsys.readouterr()
        assert "/wake" in (bare / "hooks" / "post-receive").read_text()


def test_post_receive_wakes_the_watchers(server):
    bare, work = server
    events: queue.Queue[triggers.Event] = queue.Queue()
    http = triggers.serve_wake("127.0.0.1:0", events)
    port = http.server_address[1]
    try:
        url = f"http://127.0.0.1:{port}"
        dead = "http://127.0.0.1:9"  # nobody listens: reported, the push still succeeds
        assert main(["--install-hooks", str(bare), "--node-url", url, "--node-url", dead]) == 0
        sha = commit(work, {"gnp.yaml": GOOD}, "good")
        result = push(work)
        assert result.returncode == 0, result.stderr
        event = events.get(timeout=10)
        assert event.reason == "push refs/heads/main" and event.fetch
        assert f"could not wake {dead}/wake" in result.stderr
        assert f"; {CATCH_UP}" in result.stderr and "woke 1 node(s)" in result.stderr
        assert git.Repo(bare).commit("main").hexsha == sha
    finally:
        http.shutdown()


def test_the_python_hook_counts_the_nodes_it_woke_not_the_urls(capsys):
    events: queue.Queue[triggers.Event] = queue.Queue()
    http = triggers.serve_wake("127.0.0.1:0", events)
    try:
        live, dead = f"http://127.0.0.1:{http.server_address[1]}", "http://127.0.0.1:9"
        lines = ["0" * 40 + " " + "1" * 40 + " refs/heads/main"]
        assert hooks_cmd.post_receive(lines, [live, dead]) == 0
        err = capsys.readouterr().err
        assert f"reconcile: could not wake {dead}/wake: " in err and f"; {CATCH_UP}\n" in err
        assert err.endswith("reconcile: woke 1 node(s)\n"), err
        assert events.get(timeout=10).reason == "push refs/heads/main"
    finally:
        http.shutdown()


def test_post_receive_is_shell_and_falls_back_to_python_without_curl(server, tmp_path):
    """The hook a push waits for starts no Python when curl is there; where
    curl is missing it runs the Python hook, which wakes the node the same way."""
    bare, work = server
    events: queue.Queue[triggers.Event] = queue.Queue()
    http = triggers.serve_wake("127.0.0.1:0", events)
    try:
        url = f"http://127.0.0.1:{http.server_address[1]}/"
        assert main(["--install-hooks", str(bare), "--node-url", url]) == 0
        hook = bare / "hooks" / "post-receive"
        text = hook.read_text()
        assert text.startswith("#!/bin/sh\n") and "curl" in text
        commit(work, {"gnp.yaml": GOOD}, "good")
        result = push(work)
        assert result.returncode == 0 and "woke 1 node(s)" in result.stderr, result.stderr
        assert events.get(timeout=10).reason == "push refs/heads/main"
        # no curl on PATH: the same lines on stdin reach the node through Python
        lines = "0" * 40 + " " + "1" * 40 + " refs/heads/other\n"
        empty = tmp_path / "no-curl"
        empty.mkdir()
        ran = subprocess.run(
            ["/bin/sh", str(hook)], input=lines, capture_output=True, text=True,
            env={"PATH": str(empty)}, timeout=30,
        )  # fmt: skip
        assert ran.returncode == 0 and "woke 1 node(s)" in ran.stderr, ran.stderr
        assert events.get(timeout=10).reason == "push refs/heads/other"
    finally:
        http.shutdown()


def test_post_receive_without_node_urls_does_nothing(server):
    bare, work = server
    assert main(["--install-hooks", str(bare)]) == 0
    hook = (bare / "hooks" / "post-receive").read_text()
    assert "curl" not in hook and "python" not in hook and "exit 0" in hook
    commit(work, {"gnp.yaml": GOOD}, "good")
    result = push(work)
    assert result.returncode == 0 and "woke" not in result.stderr, result.stderr


def test_pre_receive_reads_pushed_objects_without_gitpython(server):
    """The quarantined objects of a push are read with git itself; the hook
    never imports GitPython (nor the rest of the CLI)."""
    bare, work = server
    assert main(["--install-hooks", str(bare)]) == 0
    hook = bare / "hooks" / "pre-receive"
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['hooks_cmd', 'pre-receive']\n"
        "try:\n"
        "    runpy.run_module('reconciler.cli.hooks_cmd', run_name='__main__')\n"
        "finally:\n"
        "    heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('git', 'gitdb')\n"
        "                   or m in ('reconciler.cli.render', 'reconciler.gitops.repo'))\n"
        "    sys.stderr.write(f'imported: {heavy}\\n')\n"
    )
    run_module = "-m reconciler.cli.hooks_cmd pre-receive"
    text = hook.read_text().replace(run_module, "-c " + shlex.quote(probe))
    hook.write_text(text)
    commit(work, {"gnp.yaml": GOOD}, "good")
    ok = push(work)
    assert ok.returncode == 0 and "imported: []" in ok.stderr, ok.stderr
    commit(work, {"bad.yaml": BAD}, "bad")
    rejected = push(work)
    assert rejected.returncode != 0
    assert "bad.yaml:7: GlobalNetworkPolicy/broken: spec.egres: unknown field" in rejected.stderr
