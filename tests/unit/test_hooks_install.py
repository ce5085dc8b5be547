"""Installing the hooks again, where, and what pre-receive refuses that a
node would refuse too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import git
import pytest

from reconciler.cli.main import main
from tests.unit.test_git_source import commit
from tests.unit.test_gitops_hooks import push, server  # noqa: F401 - the fixture
from tests.unit.test_validate_cli import GOOD


def ssh_keyring(path: Path) -> Path:
    path.mkdir()
    key = path.parent / f"{path.name}-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (path / "allowed_signers").write_text(f"t@example.com {key.with_suffix('.pub').read_text()}")
    return path


def verifying(ring: Path) -> list[str]:
    return ["--verify-signatures", "--keyring", str(ring)]


needs_ssh_keygen = pytest.mark.skipif(not shutil.which("ssh-keygen"), reason="needs ssh-keygen")


@needs_ssh_keygen
def test_a_reinstall_names_every_check_and_node_it_drops(server, tmp_path, capsys):  # noqa: F811
    bare, _ = server
    ring = ssh_keyring(tmp_path / "ring")
    one, two = "http://node-1:9465", "http://node-2:9465"
    first = ["--install-hooks", str(bare), *verifying(ring)]
    assert main([*first, "--node-url", one, "--node-url", two]) == 0
    capsys.readouterr()
    assert main(["--install-hooks", str(bare), "--node-url", two]) == 0
    out = capsys.readouterr().out
    assert f"note: the hooks verified signatures (keyring {ring}); the new ones do not\n" in out
    assert f"note: the hooks woke {one}; the new ones do not\n" in out
    assert two not in out.replace(f"woke {one}", "")
    assert "--keyring" not in (bare / "hooks" / "pre-receive").read_text()  # still replaced


@needs_ssh_keygen
def test_a_reinstall_with_another_keyring_says_so(server, tmp_path, capsys):  # noqa: F811
    bare, _ = server
    old, new = ssh_keyring(tmp_path / "old"), ssh_keyring(tmp_path / "new")
    for ring in (old, new):
        assert main(["--install-hooks", str(bare), *verifying(ring)]) == 0
    out = capsys.readouterr().out
    changed = f"with keyring {old}; the new ones use keyring {new}"
    assert f"note: the hooks verified signatures {changed}\n" in out


def test_a_reinstall_with_the_same_settings_notes_nothing(server, capsys):  # noqa: F811
    bare, _ = server
    argv = ["--install-hooks", str(bare), "--node-url", "http://node-1:9465"]
    assert main(argv) == 0 and main(argv) == 0
    assert "the new ones do not" not in capsys.readouterr().out


def test_a_working_clone_is_refused(server, capsys):  # noqa: F811
    _, work = server
    clone = work.working_tree_dir
    assert main(["--install-hooks", clone]) == 1
    assert capsys.readouterr().err == (
        f"error: {clone}: not a bare repository; hooks belong on the server's bare repository "
        "(the one pushed to and fetched from), nothing was changed\n"
    )
    assert not (Path(clone) / ".git" / "hooks" / "pre-receive").exists()


def test_a_keyring_without_keys_is_refused_at_install(server, tmp_path, capsys):  # noqa: F811
    bare, _ = server
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--install-hooks", str(bare), *verifying(empty)]) == 1
    assert capsys.readouterr().err.startswith(f"error: --keyring {empty}: the keyring has no keys")
    assert not (bare / "hooks" / "pre-receive").exists()


@needs_ssh_keygen
def test_pre_receive_says_when_its_keyring_lost_its_keys(server, tmp_path):  # noqa: F811
    bare, work = server
    ring = ssh_keyring(tmp_path / "ring")
    assert main(["--install-hooks", str(bare), *verifying(ring)]) == 0
    (ring / "allowed_signers").write_text("")
    commit(work, {"gnp.yaml": GOOD}, "good")
    refused = push(work)
    assert refused.returncode != 0
    assert f"error: --keyring {ring}: {ring}/allowed_signers lists no key" in refused.stderr
    assert "Traceback" not in refused.stderr


def delete_everything(work: git.Repo) -> None:
    work.index.remove(["gnp.yaml"], working_tree=True)
    work.index.commit("empty")


def test_pre_receive_refuses_a_push_with_no_configuration(server):  # noqa: F811
    bare, work = server
    assert main(["--install-hooks", str(bare)]) == 0
    good = commit(work, {"gnp.yaml": GOOD}, "good")
    assert push(work).returncode == 0
    delete_everything(work)
    refused = push(work)
    assert refused.returncode != 0
    empty = work.head.commit.hexsha[:12]
    assert (
        f"refs/heads/main at {empty}: holds no configuration file (*.yaml, *.yml): nothing was "
        "validated; install the hooks with --allow-empty if that is meant" in refused.stderr
    ), refused.stderr
    assert "push to refs/heads/main rejected" in refused.stderr
    assert git.Repo(bare).commit("main").hexsha == good


def test_hooks_installed_with_allow_empty_accept_it(server):  # noqa: F811
    bare, work = server
    assert main(["--install-hooks", str(bare), "--allow-empty"]) == 0
    commit(work, {"gnp.yaml": GOOD}, "good")
    assert push(work).returncode == 0
    delete_everything(work)
    accepted = push(work)
    assert accepted.returncode == 0, accepted.stderr


def test_a_hook_edited_past_reading_is_still_replaced(server, capsys):  # noqa: F811
    bare, _ = server
    assert main(["--install-hooks", str(bare), "--node-url", "http://node-1:9465"]) == 0
    hook = bare / "hooks" / "post-receive"
    hook.write_text(hook.read_text().replace("exec ", "exec 'unclosed "))
    assert main(["--install-hooks", str(bare)]) == 0
    assert "installed" in capsys.readouterr().out
