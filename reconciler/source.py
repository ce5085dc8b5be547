"""Where config comes from: a directory tree or one commit of a Git repository.

Every file is named by its Git blob id, computed for plain files the same way
Git does, so a content hash is free for Git sources and identical for both:
caches keyed by it survive switching between `--config` and `--repo`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

YAML_SUFFIXES = (".yaml", ".yml")


class SourceError(Exception):
    """The config source cannot be read (missing path, bad ref, not a repo)."""


def blob_id(data: bytes) -> str:
    """Git's object id for a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: str
    digest: str
    reader: Callable[[], bytes] = field(compare=False, repr=False)

    def read(self) -> bytes:
        return self.reader()


@dataclass(frozen=True, slots=True)
class Source:
    """A snapshot of config files and a stable identity for it."""

    identity: str  # "git:<commit>" or "dir:<hash of paths and blob ids>"
    description: str
    files: tuple[SourceFile, ...]


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _walk_yaml(root: str) -> Iterable[str]:
    """YAML files under root in a stable order, hidden entries skipped (plain
    strings and os.walk: pathlib costs a third of a warm plan at 10k files)."""
    if os.path.isfile(root):
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(YAML_SUFFIXES) and not name.startswith("."):
                yield os.path.join(dirpath, name)


def from_paths(paths: Iterable[str]) -> Source:
    """Read YAML files from directories and files (a working tree)."""
    files: list[SourceFile] = []
    for given in paths:
        if not os.path.exists(given):
            raise SourceError(f"{given}: no such file or directory")
        for path in _walk_yaml(given):
            with open(path, "rb") as fh:
                data = fh.read()
            shown = os.path.normpath(path) if not os.path.isabs(given) else path
            files.append(SourceFile(shown, blob_id(data), _constant(data)))
    summary = hashlib.sha256()
    for f in files:
        summary.update(f"{f.path}\0{f.digest}\n".encode())
    label = ", ".join(paths)
    return Source(f"dir:{summary.hexdigest()[:20]}", label, tuple(files))


def from_git(repo: str, ref: str, cache_dir: Path) -> Source:
    """Read the tree of one commit without checking it out (bare repos work)."""
    import git
    from gitdb.exc import ODBError

    try:
        if "://" in repo or repo.startswith("git@"):
            repository = _mirror(repo, cache_dir)
        else:
            repository = git.Repo(repo)
        commit = repository.commit(ref)
    except (git.exc.GitError, ODBError, ValueError, OSError) as exc:
        raise SourceError(f"{repo}@{ref}: {str(exc).strip() or type(exc).__name__}") from exc
    odb = repository.odb
    files = []
    for item in commit.tree.traverse():
        if item.type != "blob" or not item.path.endswith(YAML_SUFFIXES):
            continue
        if any(part.startswith(".") for part in item.path.split("/")):
            continue
        files.append(SourceFile(item.path, item.hexsha, _blob_reader(odb, item.binsha)))
    files.sort(key=lambda f: f.path)
    return Source(f"git:{commit.hexsha}", f"{repo}@{ref} ({commit.hexsha[:12]})", tuple(files))


def _blob_reader(odb: Any, binsha: bytes) -> Callable[[], bytes]:
    return lambda: bytes(odb.stream(binsha).read())


def _mirror(url: str, cache_dir: Path) -> git.Repo:  # type: ignore[name-defined]  # noqa: F821
    """Keep a bare mirror of a remote repository and fetch it."""
    import git

    target = cache_dir / "repos" / hashlib.sha256(url.encode()).hexdigest()[:16]
    if target.exists():
        repository = git.Repo(target)
        repository.remotes.origin.fetch("+refs/heads/*:refs/heads/*", prune=True)
        return repository
    target.parent.mkdir(parents=True, exist_ok=True)
    return git.Repo.clone_from(url, target, mirror=True)
