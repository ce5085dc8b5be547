"""Signed commits: refuse a commit that is unsigned or signed by a key the
node does not trust. Git checks the signature; the keyring says whom to trust.

A keyring directory holding an `allowed_signers` file is an ssh keyring (the
file is git's gpg.ssh.allowedSignersFile); any other directory is a GnuPG
home whose public keys are the trusted ones (a key's presence in this
dedicated keyring is the trust: GnuPG's "good signature, unknown validity"
is accepted for OpenPGP signatures).

The keyring is the only source of trust: git runs without the global and
system config and without config or a GnuPG home from the environment, and
every setting that grants trust or picks the program that checks is given on
its command line, which overrides the repository's own config (a mirror's
or a server's .git/config is not the keyring).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconciler.config.git_tree import git_dir_of
from reconciler.config.source import SourceError

ALLOWED_SIGNERS = "allowed_signers"
GPG_KEYRINGS = ("pubring.kbx", "pubring.gpg")
# git's %G?: G good; U good but of unknown validity; N none; B bad; E cannot check
# (no key); X/Y expired signature/key; R revoked key.
_EXPLAINED = {
    "N": "is not signed",
    "B": "has a bad signature",
    "E": "is signed by a key that is not in the keyring",
    "U": "is signed by a key that is not in the keyring",
    "X": "has an expired signature",
    "Y": "is signed by an expired key",
    "R": "is signed by a revoked key",
}
# Environment that would add config or trust to the git we run.
_UNTRUSTED_ENV = frozenset(
    {"GIT_CONFIG", "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_GLOBAL",
     "GIT_CONFIG_SYSTEM", "GIT_CONFIG_NOSYSTEM", "GNUPGHOME"}
)  # fmt: skip
_UNTRUSTED_ENV_PREFIXES = ("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_")
# How git tells an OpenPGP signature (gpg-interface.c's openpgp_sigs).
_OPENPGP = (b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN PGP MESSAGE-----")


class SignatureError(SourceError):
    """A commit the keyring does not vouch for."""


def _signers(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _has_gpg_keys(home: Path) -> bool:
    """Does the GnuPG home hold a public key? (gpg missing: assume so; git
    then says it cannot check.)"""
    if not any((home / name).is_file() for name in GPG_KEYRINGS):
        return False
    try:
        listing = subprocess.run(
            ["gpg", "--batch", "--homedir", str(home), "--with-colons", "--list-keys"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True
    return any(line.startswith("pub:") for line in listing.stdout.splitlines())


@dataclass(frozen=True, slots=True)
class Keyring:
    path: Path

    @classmethod
    def at(cls, path: str) -> Keyring:
        """The keyring at `path`; SignatureError when it is not a directory
        or holds no key (every commit would be refused, for the wrong reason)."""
        p = Path(path)
        if not p.is_dir():
            raise SignatureError(f"--keyring {path}: not a directory")
        ring = cls(p.resolve())
        allowed = ring.path / ALLOWED_SIGNERS
        if ring.ssh and not _signers(allowed):
            raise SignatureError(f"--keyring {path}: {allowed} lists no key")
        if not ring.ssh and not _has_gpg_keys(ring.path):
            raise SignatureError(
                f"--keyring {path}: the keyring has no keys: no {ALLOWED_SIGNERS} file (ssh) "
                f"and no public key in a GnuPG keyring ({' or '.join(GPG_KEYRINGS)})"
            )
        return ring

    @property
    def ssh(self) -> bool:
        return (self.path / ALLOWED_SIGNERS).is_file()

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in _UNTRUSTED_ENV and not k.startswith(_UNTRUSTED_ENV_PREFIXES)
        }
        # the rest passes through: in a pre-receive hook it names the quarantined objects
        env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
        env.update(GNUPGHOME=str(self.path), GIT_TERMINAL_PROMPT="0")
        return env

    def _git(self, repo: Path | str) -> list[str]:
        allowed = str(self.path / ALLOWED_SIGNERS) if self.ssh else os.devnull
        settings = {
            "gpg.program": "gpg",
            "gpg.openpgp.program": "gpg",
            "gpg.x509.program": "gpgsm",
            "gpg.ssh.program": "ssh-keygen",
            "gpg.ssh.allowedSignersFile": allowed,
        }
        overrides = [a for k, v in settings.items() for a in ("-c", f"{k}={v}")]
        return ["git", "--git-dir", git_dir_of(str(repo)), *overrides]

    def _run(self, repo: Path | str, commit: str, *args: str) -> bytes:
        out = subprocess.run(
            [*self._git(repo), *args], capture_output=True, env=self._env(), check=False
        )
        if out.returncode != 0:
            why = out.stderr.decode("utf-8", "replace").strip()
            raise SignatureError(f"{commit[:12]}: cannot read the commit: {why}")
        return out.stdout

    def status(self, repo: Path | str, commit: str) -> tuple[str, str]:
        """git's verdict letter (%G?) and the signing key (%GK) for `commit`."""
        out = self._run(repo, commit, "log", "-1", "--format=%G?%x00%GK", commit, "--")
        letter, _, key = out.decode("utf-8", "replace").strip().partition("\0")
        return letter, key

    def _openpgp(self, repo: Path | str, commit: str) -> bool:
        """Is the commit's signature OpenPGP (not ssh or x509, which this
        GnuPG keyring does not vouch for at unknown validity)?"""
        header = self._run(repo, commit, "cat-file", "commit", commit).split(b"\n\n", 1)[0]
        signature = header.partition(b"\ngpgsig")[2].partition(b" ")[2]
        return signature.startswith(_OPENPGP)

    def trusts(self, repo: Path | str, commit: str, letter: str) -> bool:
        if letter == "G":
            return True
        return letter == "U" and not self.ssh and self._openpgp(repo, commit)

    def verify(self, repo: Path | str, commits: Iterable[str]) -> None:
        """Raise SignatureError naming every commit the keyring refuses."""
        refused = []
        for commit in commits:
            letter, key = self.status(repo, commit)
            if self.trusts(repo, commit, letter):
                continue
            why = _EXPLAINED.get(letter, f"failed signature check ({letter})")
            refused.append(f"commit {commit[:12]} {why}" + (f" (key {key})" if key else ""))
        if refused:
            raise SignatureError(
                "; ".join(refused) + f"; refused under --verify-signatures (keyring {self.path})"
            )
