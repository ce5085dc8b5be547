"""--verify-signatures: commits signed by a key in the keyring pass, unsigned
ones and ones signed by another key are refused (GnuPG and ssh), in the
pre-receive hook and in one-shot runs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import git
import pytest

from reconciler.cli.main import main
from reconciler.gitops.signatures import Keyring, SignatureError
from tests.unit.test_validate_cli import GOOD

pytestmark = pytest.mark.skipif(
    not (shutil.which("gpg") and shutil.which("ssh-keygen")), reason="needs gpg and ssh-keygen"
)


def run(*cmd: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    return subprocess.run(
        cmd, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd
    ).stdout


def gpg_home(path: Path, name: str) -> Path:
    path.mkdir(mode=0o700)
    run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.com>",
        "ed25519", "sign", "never", env={"GNUPGHOME": str(path)})  # fmt: skip
    return path


@pytest.fixture
def keys(tmp_path):
    signer = gpg_home(tmp_path / "signer", "alice")
    stranger = gpg_home(tmp_path / "stranger", "mallory")
    keyring = tmp_path / "keyring"
    keyring.mkdir(mode=0o700)
    public = run("gpg", "--armor", "--export", "alice@example.com", env={"GNUPGHOME": str(signer)})
    subprocess.run(["gpg", "--batch", "--import"], input=public, text=True, check=True,
                   capture_output=True, env={**os.environ, "GNUPGHOME": str(keyring)})  # fmt: skip
    yield signer, stranger, keyring
    for home in (signer, stranger, keyring):  # gpg leaves an agent per home running
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


def commit(repo: Path, name: str, text: str, home: Path | None, email: str = "alice") -> str:
    (repo / name).write_text(text)
    run("git", "add", name, cwd=repo)
    sign = ["-S", f"--gpg-sign={email}@example.com"] if home else []
    env = {"GNUPGHOME": str(home)} if home else {}
    run("git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q",
        "-m", name, *sign, cwd=repo, env=env)  # fmt: skip
    return run("git", "rev-parse", "HEAD", cwd=repo).strip()


def test_gpg_keyring(keys, tmp_path):
    signer, stranger, keyring = keys
    repo = tmp_path / "repo"
    git.Repo.init(repo, initial_branch="main")
    good = commit(repo, "a.yaml", GOOD, signer)
    unsigned = commit(repo, "b.yaml", GOOD, None)
    foreign = commit(repo, "c.yaml", GOOD, stranger, "mallory")
    ring = Keyring.at(str(keyring))
    ring.verify(repo, [good])
    with pytest.raises(SignatureError) as refused:
        ring.verify(repo, [good, unsigned, foreign])
    msg = str(refused.value)
    assert f"commit {unsigned[:12]} is not signed" in msg
    assert f"commit {foreign[:12]} is signed by a key that is not in the keyring" in msg
    assert good[:12] not in msg and "--verify-signatures" in msg
    # one-shot runs: --validate checks the signature of the commit it reads
    args = ["--validate", "--repo", str(repo), "--verify-signatures", "--keyring", str(keyring)]
    assert main([*args, "--ref", good]) == 0
    assert main([*args, "--ref", unsigned]) == 1
    assert main(["--validate", "--repo", str(repo), "--ref", "main", "--verify-signatures"]) == 1


def test_ssh_allowed_signers(tmp_path):
    key = tmp_path / "id"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    other = tmp_path / "other"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
    keyring = tmp_path / "ssh-keyring"
    keyring.mkdir()
    (keyring / "allowed_signers").write_text(f"t@example.com {(tmp_path / 'id.pub').read_text()}")
    repo = tmp_path / "repo"
    git.Repo.init(repo, initial_branch="main")

    good, foreign = ssh_signed(repo, "a.yaml", key), ssh_signed(repo, "b.yaml", other)
    ring = Keyring.at(str(keyring))
    assert ring.ssh
    ring.verify(repo, [good])
    refused = f"commit {foreign[:12]} is signed by a key that is not"
    with pytest.raises(SignatureError, match=refused):
        ring.verify(repo, [foreign])


def test_pre_receive_refuses_an_unsigned_push(keys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    signer, _, keyring = keys
    bare = tmp_path / "server.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    verify = ["--verify-signatures", "--keyring", str(keyring)]
    assert main(["--install-hooks", str(bare), *verify]) == 0
    repo = tmp_path / "work"
    git.Repo.init(repo, initial_branch="main").create_remote("origin", str(bare))
    push = ["git", "-C", str(repo), "push", "origin", "main"]
    signed = commit(repo, "a.yaml", GOOD, signer)
    ok = subprocess.run(push, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    unsigned = commit(repo, "b.yaml", GOOD, None)
    refused = subprocess.run(push, capture_output=True, text=True)
    assert refused.returncode != 0
    assert f"commit {unsigned[:12]} is not signed" in refused.stderr
    assert "push to refs/heads/main rejected" in refused.stderr
    assert git.Repo(bare).commit("main").hexsha == signed


def ssh_key(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    return key


def ssh_signed(repo: Path, name: str, key: Path) -> str:
    (repo / name).write_text(GOOD)
    run("git", "add", name, cwd=repo)
    run("git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "gpg.format=ssh",
        "-c", f"user.signingkey={key}.pub", "commit", "-q", "-S", "-m", name,
        cwd=repo)  # fmt: skip
    return run("git", "rev-parse", "HEAD", cwd=repo).strip()


@pytest.fixture
def stray(tmp_path, monkeypatch):
    """A repository with a commit ssh-signed by a key no keyring holds, and
    an allowed-signers file that lists that key (outside every keyring)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    (tmp_path / "gitconfig").write_text("")
    key = ssh_key(tmp_path, "stray")
    signers = tmp_path / "elsewhere_signers"
    signers.write_text(f"t@example.com {(tmp_path / 'stray.pub').read_text()}")
    repo = tmp_path / "repo"
    git.Repo.init(repo, initial_branch="main")
    return repo, ssh_signed(repo, "a.yaml", key), signers


def ssh_keyring(tmp_path: Path) -> Keyring:
    ssh_key(tmp_path, "trusted")
    ring = tmp_path / "ssh-ring"
    ring.mkdir()
    (ring / "allowed_signers").write_text(f"t@example.com {(tmp_path / 'trusted.pub').read_text()}")
    return Keyring.at(str(ring))


def not_in_keyring(commit: str) -> str:
    return f"commit {commit[:12]} is signed by a key that is not in the keyring"


def test_global_config_grants_no_trust(keys, stray, tmp_path):
    _, _, gpg_ring = keys
    repo, commit, signers = stray
    (tmp_path / "gitconfig").write_text(f"[gpg \"ssh\"]\n\tallowedSignersFile = {signers}\n")
    for ring in (Keyring.at(str(gpg_ring)), ssh_keyring(tmp_path)):
        with pytest.raises(SignatureError, match=not_in_keyring(commit)):
            ring.verify(repo, [commit])


def test_config_from_the_environment_grants_no_trust(keys, stray, monkeypatch):
    _, _, gpg_ring = keys
    repo, commit, signers = stray
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "gpg.ssh.allowedSignersFile")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", str(signers))
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", f"'gpg.ssh.allowedsignersfile'='{signers}'")
    with pytest.raises(SignatureError, match=not_in_keyring(commit)):
        Keyring.at(str(gpg_ring)).verify(repo, [commit])


def test_the_repositorys_config_grants_no_trust(keys, stray, tmp_path):
    _, _, gpg_ring = keys
    repo, commit, signers = stray
    marker = tmp_path / "ran"
    fake = tmp_path / "fake-ssh-keygen"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
    fake.chmod(0o755)
    with git.Repo(repo).config_writer() as cfg:
        cfg.set_value('gpg "ssh"', "allowedSignersFile", str(signers))
        cfg.set_value('gpg "ssh"', "program", str(fake))
        cfg.set_value("gpg", "program", str(fake))
    for ring in (Keyring.at(str(gpg_ring)), ssh_keyring(tmp_path)):
        with pytest.raises(SignatureError, match=not_in_keyring(commit)):
            ring.verify(repo, [commit])
    assert not marker.exists()


def test_a_gnupg_home_from_the_environment_grants_no_trust(keys, tmp_path, monkeypatch):
    signer, _, _ = keys
    repo = tmp_path / "repo"
    git.Repo.init(repo, initial_branch="main")
    good = commit(repo, "a.yaml", GOOD, signer)
    monkeypatch.setenv("GNUPGHOME", str(signer))  # it holds alice's key; the keyring does not
    with pytest.raises(SignatureError, match=not_in_keyring(good)):
        ssh_keyring(tmp_path).verify(repo, [good])


def test_a_keyring_without_keys_is_refused_before_any_commit(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    expected = (
        f"--keyring {empty}: the keyring has no keys: no allowed_signers file (ssh) "
        "and no public key in a GnuPG keyring (pubring.kbx or pubring.gpg)"
    )
    with pytest.raises(SignatureError) as refused:
        Keyring.at(str(empty))
    assert str(refused.value) == expected
    (empty / "allowed_signers").write_text("# nobody yet\n")
    with pytest.raises(SignatureError) as refused:
        Keyring.at(str(empty))
    listed = f"{empty.resolve()}/allowed_signers lists no key"
    assert str(refused.value) == f"--keyring {empty}: {listed}"


def test_one_shot_run_names_the_empty_keyring(keys, tmp_path, capsys):
    signer, _, _ = keys
    repo = tmp_path / "repo"
    git.Repo.init(repo, initial_branch="main")
    good = commit(repo, "a.yaml", GOOD, signer)
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--validate", "--repo", str(repo), "--ref", good]
    assert main([*args, "--verify-signatures", "--keyring", str(empty)]) == 1
    err = capsys.readouterr().err
    assert f"--keyring {empty}: the keyring has no keys" in err
    assert "is not signed" not in err
