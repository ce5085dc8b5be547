"""Where config comes from: a directory tree or one commit of a Git repository.

Every file is named by its Git blob id, computed for plain files the same way
Git does, so a content hash is free for Git sources and identical for both:
caches keyed by it survive switching between `--config` and `--repo`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import time
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


Signature = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
RACY_NS = 1_000_000_000  # a file changed this close to the cache write is re-hashed


class StatCache:
    """Blob ids of working-tree files by their stat data, as git's index does.

    A file is trusted unchanged only when size, mtime, ctime (which no tool
    can set back), inode and device all match, and its last change came at
    least a second before the cache was written ("racily clean" entries are
    hashed again). Content read later is checked against the id it was
    trusted for, so a file edited mid-run fails loudly instead of mixing up.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, tuple[Signature, str]] = {}
        self.written_ns = 0
        self.dirty = False
        if path is None:
            return
        try:
            with open(path, "rb") as fh:
                self.written_ns, self.entries = pickle.load(fh)
        except Exception:  # noqa: BLE001 - a cache must never make reading fail
            self.entries, self.written_ns = {}, 0

    def get(self, path: str, sig: Signature) -> str | None:
        hit = self.entries.get(path)
        if hit is None or hit[0] != sig or sig[2] >= self.written_ns - RACY_NS:
            return None
        return hit[1]

    def put(self, path: str, sig: Signature, digest: str) -> None:
        self.entries[path] = (sig, digest)
        self.dirty = True

    def save(self, seen: set[str]) -> None:
        if self.path is None or not (self.dirty or seen != set(self.entries)):
            return
        entries = {k: v for k, v in self.entries.items() if k in seen}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump((time.time_ns(), entries), fh, protocol=pickle.HIGHEST_PROTOCOL)
            tmp.replace(self.path)
        except OSError:
            pass


def stat_cache_path(cache_dir: Path, paths: Iterable[str]) -> Path:
    """One stat cache per set of roots, so alternating trees do not evict each other."""
    roots = "\0".join(sorted(os.path.abspath(p) for p in paths))
    return cache_dir / "stat" / f"{hashlib.sha256(roots.encode()).hexdigest()[:16]}.pickle"


def _read_verified(path: str, digest: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read()
    if blob_id(data) != digest:
        raise SourceError(f"{path} changed while it was being read; run again")
    return data


def from_paths(paths: Iterable[str], stat_cache: Path | None = None) -> Source:
    """Read YAML files from directories and files (a working tree).

    With `stat_cache`, files whose stat data is unchanged are not read again
    to be hashed (10,000 files: 0.2 s saved on every plan). The loop runs once
    per file on every plan, so it stays lean: one stat, no path normalising."""
    cache = StatCache(stat_cache)
    files: list[SourceFile] = []
    seen: set[str] = set()
    stat, partial = os.stat, functools.partial
    for given in paths:
        if not os.path.exists(given):
            raise SourceError(f"{given}: no such file or directory")
        # Paths are shown as given (normalised), keyed absolute: both are the
        # root's form plus the same relative tail.
        root = given.rstrip("/") or "/"
        shown_root = root if os.path.isabs(root) else os.path.normpath(root)
        key_root = os.path.abspath(root)
        for path in _walk_yaml(root):
            tail = path[len(root) :]
            shown, key = shown_root + tail, key_root + tail
            seen.add(key)
            st = stat(path)
            sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
            digest = cache.get(key, sig)
            if digest is not None:
                files.append(SourceFile(shown, digest, partial(_read_verified, path, digest)))
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            digest = blob_id(data)
            cache.put(key, sig, digest)
            files.append(SourceFile(shown, digest, _constant(data)))
    cache.save(seen)
    summary = hashlib.sha256()
    summary.update("".join(f"{f.path}\0{f.digest}\n" for f in files).encode())
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
