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

    def ssh_commit(name: str, signing: Path) -> str:
        (repo / name).write_text(GOOD)
        run("git", "add", name, cwd=repo)
        run("git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "gpg.format=ssh",
            "-c", f"user.signingkey={signing}.pub", "commit", "-q", "-S", "-m", name,
            cwd=repo)  # fmt: skip
        return run("git", "rev-parse", "HEAD", cwd=repo).strip()

    good, foreign = ssh_commit("a.yaml", key), ssh_commit("b.yaml", other)
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
