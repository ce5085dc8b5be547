"""`--install-hooks` puts the hooks where git runs them: a repository whose
own core.hooksPath names another directory (relative to the repository, as
git reads it for a bare one) gets them there, and git then runs them on a
push; a core.hooksPath from git's global configuration is refused, with
nothing written."""

from __future__ import annotations

import os

from reconciler.cli.main import main
from tests.unit.test_git_source import commit
from tests.unit.test_gitops_hooks import push, server  # noqa: F401 - the fixture
from tests.unit.test_validate_cli import BAD, GOOD


def test_hooks_go_where_the_repositorys_core_hookspath_says_and_git_runs_them(
    server, capsys  # noqa: F811
):
    bare, work = server
    with (bare / "config").open("a") as config:
        config.write("[core]\n\thooksPath = server-hooks\n")
    assert main(["--install-hooks", str(bare)]) == 0
    out = capsys.readouterr().out
    assert f"installed {bare / 'server-hooks' / 'pre-receive'}\n" in out, out
    assert not (bare / "hooks" / "pre-receive").exists()
    commit(work, {"gnp.yaml": BAD}, "bad")
    refused = push(work)
    assert refused.returncode != 0 and "gnp.yaml:" in refused.stderr, refused.stderr
    commit(work, {"gnp.yaml": GOOD}, "good")
    assert push(work).returncode == 0


def test_an_absolute_core_hookspath_is_honoured(server, tmp_path, capsys):  # noqa: F811
    bare, _ = server
    shared = tmp_path / "srv" / "hooks"
    with (bare / "config").open("a") as config:
        config.write(f"[core]\n\thooksPath = {shared}\n")
    assert main(["--install-hooks", str(bare)]) == 0
    assert os.access(shared / "pre-receive", os.X_OK) and (shared / "post-receive").exists()
    assert f"installed {shared / 'post-receive'}" in capsys.readouterr().out


def test_a_global_core_hookspath_is_refused_and_nothing_written(
    server, tmp_path, capsys, monkeypatch  # noqa: F811
):
    bare, _ = server
    glob = tmp_path / "gitconfig"
    glob.write_text(f"[core]\n\thooksPath = {tmp_path / 'all-hooks'}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob))
    assert main(["--install-hooks", str(bare)]) == 1
    err = capsys.readouterr().err
    assert (
        f"error: {bare}: git runs its hooks from {tmp_path / 'all-hooks'}, which core.hooksPath "
        f"in git's global configuration ({glob}) names for every repository" in err
    ), err
    assert err.rstrip().endswith("nothing was changed"), err
    assert not (tmp_path / "all-hooks").exists() and not (bare / "hooks" / "pre-receive").exists()
