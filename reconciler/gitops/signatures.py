"""Signed commits: refuse a commit that is unsigned or signed by a key the
node does not trust. Git checks the signature; the keyring says whom to trust.

A keyring directory holding an `allowed_signers` file is an ssh keyring (the
file is git's gpg.ssh.allowedSignersFile); any other directory is a GnuPG
home whose public keys are the trusted ones (a key's presence in this
dedicated keyring is the trust: GnuPG's "good signature, unknown validity"
is accepted).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconciler.config.source import SourceError

ALLOWED_SIGNERS = "allowed_signers"
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


class SignatureError(SourceError):
    """A commit the keyring does not vouch for."""


@dataclass(frozen=True, slots=True)
class Keyring:
    path: Path

    @classmethod
    def at(cls, path: str) -> Keyring:
        p = Path(path)
        if not p.is_dir():
            raise SignatureError(f"--keyring {path}: not a directory")
        return cls(p.resolve())

    @property
    def ssh(self) -> bool:
        return (self.path / ALLOWED_SIGNERS).is_file()

    def _git(self, repo: Path | str) -> tuple[list[str], dict[str, str]]:
        if self.ssh:
            allowed = str(self.path / ALLOWED_SIGNERS)
            return ["git", "-C", str(repo), "-c", f"gpg.ssh.allowedSignersFile={allowed}"], {}
        return ["git", "-C", str(repo)], {"GNUPGHOME": str(self.path)}

    def status(self, repo: Path | str, commit: str) -> tuple[str, str]:
        """git's verdict letter (%G?) and the signing key (%GK) for `commit`."""
        import os

        cmd, env = self._git(repo)
        out = subprocess.run(
            [*cmd, "log", "-1", "--format=%G?%x00%GK", commit, "--"],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        if out.returncode != 0:
            raise SignatureError(f"{commit[:12]}: cannot read the commit: {out.stderr.strip()}")
        letter, _, key = out.stdout.strip().partition("\0")
        return letter, key

    def verify(self, repo: Path | str, commits: Iterable[str]) -> None:
        """Raise SignatureError naming every commit the keyring refuses."""
        refused = []
        for commit in commits:
            letter, key = self.status(repo, commit)
            if letter == "G" or (letter == "U" and not self.ssh):
                continue
            why = _EXPLAINED.get(letter, f"failed signature check ({letter})")
            refused.append(f"commit {commit[:12]} {why}" + (f" (key {key})" if key else ""))
        if refused:
            raise SignatureError(
                "; ".join(refused) + f"; refused under --verify-signatures (keyring {self.path})"
            )
