"""A followed Git repository: fetch it, resolve the ref to a commit, and
refuse commits the node must not move to.

A remote repository is fetched into a bare mirror under the cache directory
(config.source.mirror_path) and read from there without a checkout; a local
path (a working repository or a bare one) is read in place. Every pass then
reads one commit by its id, so what is planned cannot move under it.

Refused, leaving the kernel as it was:
- a ref that no longer exists (deleted upstream, pruned from the mirror);
- a commit that does not contain the commit last applied from the same
  repository (a force push, or a ref moved back), unless rewinds are allowed;
- with signature checking, a commit that is unsigned or signed by a key
  outside the keyring (gitops.signatures).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.config.git_tree import dubious_ownership, git_dir_of, run_git
from reconciler.config.source import (
    MIRROR_REFSPECS,
    SourceError,
    default_cache_dir,
    is_remote,
    mirror_path,
)

FETCH_TIMEOUT_S = 60.0


class RewindError(SourceError):
    """The ref moved to a commit that does not contain the applied one."""


def git(path: Path | str, *args: str, timeout: float = FETCH_TIMEOUT_S) -> str:
    """Run git in `path`; its stdout, or SourceError with its stderr."""
    out = run_git(("-C", str(path)), *args, timeout=timeout, place=str(path))
    return out.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Follower:
    """One repository and ref as a node follows them."""

    repo: str
    ref: str
    cache_dir: Path | None  # None: no safe cache directory (a remote cannot be mirrored)
    allow_rewind: bool = False

    @classmethod
    def of(cls, repo: str, ref: str, allow_rewind: bool = False) -> Follower:
        return cls(repo, ref, default_cache_dir(), allow_rewind)

    @property
    def remote(self) -> bool:
        return is_remote(self.repo)

    @property
    def local(self) -> Path:
        """Where the commits are read: the mirror of a remote, else the repo."""
        if not self.remote:
            return Path(self.repo)
        if self.cache_dir is None:
            raise SourceError(f"{self.repo}: no safe cache directory to keep a mirror in")
        return mirror_path(self.repo, self.cache_dir)

    @property
    def fetched(self) -> bool:
        """Are there commits to read: a local repository, or a remote's mirror
        that a fetch has made?"""
        return not self.remote or (self.local / "HEAD").exists()

    def fetch(self) -> None:
        """Bring the mirror up to date (nothing to do for a local repository)."""
        if not self.remote:
            return
        mirror = self.local
        if not (mirror / "HEAD").exists():
            clone_mirror(self.repo, mirror)
            return
        git(mirror, "fetch", "--quiet", "--prune", "origin", *MIRROR_REFSPECS)

    def resolve(self) -> str:
        """The commit the ref names now (in the mirror, as last fetched). A
        local path must be a repository itself: git would search upwards from
        a directory inside one."""
        if not self.fetched:
            self.fetch()
        if not self.remote:
            git_dir_of(self.repo)
        try:
            return git(self.local, "rev-parse", "--verify", "--quiet", f"{self.ref}^{{commit}}")[
                :40
            ]
        except SourceError as exc:
            label = f"{self.repo}@{self.ref}"
            raise dubious_ownership(label, exc) or SourceError(
                f"{label}: no such branch, tag or commit (deleted or never pushed?)"
            ) from exc

    def contains(self, new: str, old: str) -> bool:
        """Does commit `new` have `old` in its history (or is it `old`)?"""
        if new == old:
            return True
        result = subprocess.run(
            ["git", "-C", str(self.local), "merge-base", "--is-ancestor", old, new],
            capture_output=True,
            text=True,
        )
        return result.returncode == 0

    def holds(self, commit: str) -> bool:
        """Do the commits read here include `commit`?"""
        result = subprocess.run(
            ["git", "-C", str(self.local), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
        )
        return result.returncode == 0

    def check_forward(self, new: str, applied: str | None) -> None:
        """Refuse a commit that does not contain the one the node runs."""
        if applied is None or self.allow_rewind or self.contains(new, applied):
            return
        raise RewindError(
            f"{self.repo}@{self.ref} moved backwards: {new[:12]} does not contain the applied "
            f"commit {applied[:12]} (a force push or a rollback); the kernel is left as it is. "
            "Use --allow-rewind to apply it anyway"
        )

    def spec(self, commit: str, policy: Mapping[str, Any]) -> dict[str, Any]:
        """The source spec that reads exactly `commit`."""
        return {"kind": "git", "repo": self.repo, "ref": commit, "policy": dict(policy)}


def clone_mirror(url: str, mirror: Path, timeout: float = FETCH_TIMEOUT_S) -> None:
    """Clone `url` as a bare mirror at `mirror`. The clone is made in a
    directory of its own beside it and renamed into place once complete, so
    a reader never sees half a mirror. One that fails or times out removes
    its directory (the next fetch clones afresh); one a process that died
    left behind is removed by the next clone."""
    mirror.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_clones(mirror)
    tmp = Path(
        tempfile.mkdtemp(prefix=f"{mirror.name}.{os.getpid()}.", suffix=".tmp", dir=mirror.parent)
    )
    try:
        git(mirror.parent, "clone", "--quiet", "--mirror", url, str(tmp), timeout=timeout)
        try:
            tmp.rename(mirror)
        except OSError:
            if not (mirror / "HEAD").exists():
                raise
            # another clone of the same repository came first: use that one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_clones(mirror: Path) -> list[Path]:
    """Remove the clone directories of `mirror` (`<mirror>.<pid>[.x].tmp`)
    whose process no longer runs; returns them. A live process's own is
    left: it may still be cloning."""
    removed = []
    for tmp in mirror.parent.glob(f"{glob.escape(mirror.name)}.*.tmp"):
        pid = tmp.name[len(mirror.name) + 1 :].split(".", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


@dataclass(frozen=True, slots=True)
class Running:
    """The Git commit a node runs, and the repository it was applied from."""

    commit: str
    repo: str


def running(state_dir: Path) -> Running | None:
    """The commit of the node's last apply, whatever repository URL it was
    read from (None: a directory, or nothing applied)."""
    from reconciler.engine import history
    from reconciler.source_identity import recorded_commit

    source = (history.last_applied(state_dir) or {}).get("source") or {}
    spec = source.get("spec") or {}
    commit = recorded_commit(source) if spec.get("kind") == "git" else None
    return Running(commit, str(spec.get("repo", ""))) if commit else None


def guarded_commit(follower: Follower, state_dir: Path, fetched: bool = True) -> str | None:
    """The commit the node runs that a commit of `follower` must contain
    (Follower.check_forward), or None: the one last applied from this
    repository, or from another URL of it (an ssh and an https URL, a
    server-local path): one the commits read here hold, a commit id naming
    its history. Unless `fetched` (the last fetch failed), a commit they do
    not hold may be a newer one of the same repository: SourceError, the
    node is left as it is."""
    from reconciler.engine import history

    applied = history.applied_commit(state_dir, follower.repo)
    if applied is not None:
        return applied
    run = running(state_dir)
    if run is None:
        return None
    if follower.holds(run.commit):
        return run.commit
    if not fetched:
        raise SourceError(
            f"the node runs commit {run.commit[:12]} (applied from {run.repo}), which the "
            f"commits last fetched from {follower.repo} do not hold, and the fetch failed: it "
            "may be newer than them; the kernel is left as it is until a fetch succeeds "
            "(or --allow-rewind)"
        )
    return None


def pinned_spec(
    repo: str,
    ref: str,
    policy: Mapping[str, Any],
    state_dir: Path | None,
    allow_rewind: bool = False,
    keyring: Any = None,
) -> dict[str, Any]:
    """A one-shot run's source: the ref resolved to a commit (a remote fetched
    first), refused when it does not contain the commit last applied from
    this repository (`state_dir`'s record; None: no check), or when
    `keyring` (gitops.signatures.Keyring) refuses its signature."""
    follower = Follower.of(repo, ref, allow_rewind)
    follower.fetch()
    commit = follower.resolve()
    if state_dir is not None:
        follower.check_forward(commit, guarded_commit(follower, state_dir))
    if keyring is not None:
        keyring.verify(follower.local, [commit])
    return follower.spec(commit, policy)
