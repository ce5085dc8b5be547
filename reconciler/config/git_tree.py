"""One commit of a Git repository read as a config Source, through the git
command itself: `rev-parse` for the commit, `ls-tree -r -l` for every blob
with its size (which makes git open each object: a missing or corrupt one
is found even when the validation cache would spare reading it), and one
`cat-file --batch` process, started on the first read, for the contents.

Nothing is imported that a push hook does not need (no GitPython), and
listing 10,000 files is one process instead of 10,000 object lookups in
Python. A watcher reads one commit after another: the next one from the
same repository is read as the last tree changed by `diff-tree` (only the
changed blobs are looked up: the others were when the last tree was read).

The tree's rules are the working tree's (reconciler.config.safe_tree):
hidden entries are skipped, a symlink is followed only to a file of the same
tree (one that leaves it, dangles, names a directory or loops is an error
naming it), and a file is read up to MAX_FILE_BYTES + 1 bytes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import re
import subprocess
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.config import safe_tree
from reconciler.config.limits import MAX_FILE_BYTES
from reconciler.config.source import (
    CONFIG_FILE,
    YAML_SUFFIXES,
    Source,
    SourceError,
    SourceFile,
)

GIT_TIMEOUT_S = 60.0
_LINK_MODE = "120000"
_CONFIG_PATH = CONFIG_FILE.encode()
_MAX_LINK_HOPS = 40


def git_dir_of(repo: str) -> str:
    """The git directory of a repository path: a bare repository itself, or
    its .git (a directory, or a file naming one). The path is never searched
    upwards: a directory inside some other repository is not a repository."""
    path = Path(repo)
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return str(path)
    if (path / ".git").exists():
        return str(path / ".git")
    raise SourceError(f"{safe_tree.shown(repo)}: not a Git repository")


_DUBIOUS = re.compile(r"dubious ownership in repository at '([^']*)'")


def dubious_ownership(label: str, exc: SourceError) -> SourceError | None:
    """git's refusal to read a repository another user owns (its
    safe.directory check), said as such with the fix, or None: otherwise it
    reads as a ref that does not exist."""
    found = _DUBIOUS.search(str(exc))
    if found is None:
        return None
    return SourceError(
        f"{label}: git refuses to read {found[1]}: detected dubious ownership (the "
        "repository's owner differs from the user running reconcile); if it is trusted: "
        f"git config --global --add safe.directory {found[1]}"
    )


def run_git(
    where: Sequence[str], *args: str, timeout: float = GIT_TIMEOUT_S, place: str = ""
) -> bytes:
    """git's stdout, with `where` (`--git-dir D`, `-C D`) before `args`.
    SourceError when git fails (its stderr, after the command and `place`
    when a place is named), gives no answer within `timeout`, or cannot run.
    The caller's environment passes through (in a pre-receive hook it names
    the quarantined objects), with terminal prompts off."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    what = f"git {args[0]} in {place}" if place else f"git {args[0]}"
    try:
        done = subprocess.run(
            ["git", *where, *args], capture_output=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"{what}: no answer after {timeout:g}s") from exc
    except OSError as exc:
        raise SourceError(f"cannot run git: {exc.strerror or exc}") from exc
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
        raise SourceError(f"{what}: {why}" if place else why)
    return done.stdout


def _git(git_dir: str, *args: str) -> bytes:
    return run_git(("--git-dir", git_dir), *args)


class _Blobs:
    """Blob contents by id from one `git cat-file --batch` process, started
    on the first read and ended with this object. Reads are serialised."""

    def __init__(self, git_dir: str) -> None:
        self.git_dir = git_dir
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["git", "--git-dir", self.git_dir, "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        weakref.finalize(self, _end, proc)
        return proc

    def read(self, sha: str, size: int) -> bytes:
        """At most MAX_FILE_BYTES + 1 bytes of the blob (the loader refuses a
        longer file); a larger blob is read by a process of its own, cut off
        there, so memory never grows with what the pusher stored."""
        if size > MAX_FILE_BYTES:
            return _read_capped(self.git_dir, sha)
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self._start()
            stdin, stdout = self.proc.stdin, self.proc.stdout
            assert stdin is not None and stdout is not None
            try:
                stdin.write(f"{sha}\n".encode())
                stdin.flush()
                header = stdout.readline().split()
                if len(header) != 3 or header[1] != b"blob":
                    raise OSError(f"git cat-file answered {b' '.join(header)!r}")
                data = _read_exactly(stdout, int(header[2]))
                stdout.read(1)  # the newline after each object
            except (OSError, ValueError) as exc:
                self.proc.kill()
                self.proc = None
                raise SourceError(f"cannot read the object {sha[:12]}: {exc}") from None
        return data


def _read_exactly(stream: object, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(left)  # type: ignore[attr-defined]
        if not chunk:
            raise OSError("git cat-file ended early")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_capped(git_dir: str, sha: str) -> bytes:
    proc = subprocess.Popen(
        ["git", "--git-dir", git_dir, "cat-file", "blob", sha],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        data = proc.stdout.read(MAX_FILE_BYTES + 1)
    finally:
        proc.kill()
        proc.wait()
    return data


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


Entry = tuple[str, str, int]  # mode, blob id, size (-1: unreadable)


@dataclass(slots=True)
class _Tree:
    """A commit's tree as last read from one repository, and the repository's
    blob reader (one cat-file process per repository, whichever commit)."""

    commit: str
    blobs: dict[str, Entry]
    files: list[SourceFile]
    reader: _Blobs
    # YAML paths whose symlink the tree's rules refuse, and why: raised, or
    # left to the ignore policy (read_commit's defer_refusals)
    refused: tuple[tuple[str, str], ...] = ()


# How many repositories' last trees a caller's `trees` keeps.
_MAX_TREES = 4


def read_commit(
    repo: str, ref: str, label: str, trees: dict[str, _Tree], defer_refusals: bool = False
) -> Source:
    """The YAML files and the root CONFIG_FILE of the commit `ref` names in
    the local repository `repo` (a bare repository, or a working one read
    without checkout). `trees` (the caller's SourceCache.trees) keeps the
    last tree read from each repository: the next commit a watcher reads
    differs from it in a few files, so it is read as that tree updated by
    `diff-tree` when neither holds a symlink; the result is the same as a
    full read. A YAML file whose symlink leaves the tree, dangles or loops
    is raised as a SourceError naming each, or with `defer_refusals` left
    in Source.refused (reconciler.config.repo_config.apply_to raises those
    the commit's ignorePaths do not cover)."""
    git_dir = git_dir_of(repo)
    try:
        commit = _git(git_dir, "rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}")
    except SourceError as exc:
        raise dubious_ownership(label, exc) or SourceError(
            f"{label}: no such branch, tag or commit (deleted or never pushed?): {exc}"
        ) from None
    sha = commit.decode().strip()
    last = trees.get(git_dir)
    tree = None
    if last is not None:
        with contextlib.suppress(SourceError):  # (the full read says what is wrong)
            tree = _updated(git_dir, last, sha)
    if tree is None:
        try:
            tree = _full(git_dir, sha, last.reader if last is not None else _Blobs(git_dir), label)
        except _Refused:
            raise
        except SourceError as exc:
            raise SourceError(f"{label}: the repository is corrupt: {exc}") from None
    trees.pop(git_dir, None)
    while len(trees) >= _MAX_TREES:
        del trees[next(iter(trees))]
    trees[git_dir] = tree
    config = _config_file(tree, label)
    refused = tuple((name, False, f"{label}: {name}: {why}") for name, why in tree.refused)
    if refused and not defer_refusals:
        raise _Refused(safe_tree.PROBLEMS_JOINED.join(message for _, _, message in refused))
    return Source(
        f"git:{sha}",
        f"{label} ({sha[:12]})",
        tuple(tree.files),
        config=config,
        refused=refused,
        commit=sha,
        unread=_unread(tree.blobs),
    )


def _unread(blobs: dict[str, Entry]) -> tuple[str, ...]:
    """The JSON files of the tree (safe_tree.UNREAD_SUFFIX), sorted as the
    YAML files are: named by their path alone, never read. A symlink is
    left out, as a directory walk leaves one out."""
    suffix, shown = safe_tree.UNREAD_SUFFIX, safe_tree.shown
    return tuple(
        sorted(shown(p) for p, e in blobs.items() if p.endswith(suffix) and e[0] != _LINK_MODE)
    )


def _config_file(tree: _Tree, label: str) -> SourceFile | None:
    """The tree's root CONFIG_FILE when it is a file (a directory of that
    name is passed over, as in a working tree), by the rules of the YAML
    files: a symlink is followed only to a file of the same tree."""
    entry = tree.blobs.get(CONFIG_FILE)
    if entry is None:
        return None
    target, why = _resolve(CONFIG_FILE, entry, tree.blobs, tree.reader)
    if why:
        raise _Refused(f"{label}: {CONFIG_FILE}: {why}")
    read = functools.partial(_read_blob, tree.reader, target[1], target[2], CONFIG_FILE)
    return SourceFile(CONFIG_FILE, target[1], read)


def _full(git_dir: str, sha: str, reader: _Blobs, label: str) -> _Tree:
    blobs = _blob_entries(_git(git_dir, "ls-tree", "-r", "-l", "-z", "--full-tree", sha))
    files, problems = _files(blobs, reader)
    if any(not deferred for _, _, deferred in problems):  # a missing object: no policy helps
        said = (f"{label}: {name}: {why}" for name, why, _ in problems)
        raise _Refused(safe_tree.PROBLEMS_JOINED.join(said))
    files.sort(key=lambda f: f.path)
    refused = tuple((name, why) for name, why, _ in problems)
    return _Tree(sha, blobs, files, reader, refused)


class _Refused(SourceError):
    """The tree breaks a rule: said as it is, not as corruption."""


def _updated(git_dir: str, last: _Tree, sha: str) -> _Tree | None:
    """`last` changed into the tree of `sha`, or None (read it in full) when
    either tree holds a symlink, an added blob cannot be listed, or it is the
    same commit (read again: its objects are looked up again)."""
    if last.commit == sha or any(entry[0] == _LINK_MODE for entry in last.blobs.values()):
        return None
    raw = _git(git_dir, "diff-tree", "-r", "-z", "--no-renames", "--no-commit-id", last.commit, sha)
    fields = raw.split(b"\0")
    blobs = dict(last.blobs)
    added: dict[str, str] = {}  # path -> mode, for blobs to size
    ids: dict[str, str] = {}
    for meta, raw_path in zip(fields[0:-1:2], fields[1::2], strict=True):
        mode, _, new_id, status = meta.split(b" ")[1:5]  # (after ":old-mode")
        if raw_path != _CONFIG_PATH and (raw_path.startswith(b".") or b"/." in raw_path):
            continue  # hidden
        path = os.fsdecode(raw_path)
        blobs.pop(path, None)
        if status == b"D" or mode == b"160000":  # gone, or a submodule's commit
            continue
        if mode.decode() == _LINK_MODE:
            return None
        added[path], ids[path] = mode.decode(), new_id.decode()
    sizes = _sizes(git_dir, set(ids.values()))
    for path, kind in added.items():
        blobs[path] = (kind, ids[path], sizes.get(ids[path], -1))
    files, problems = _files({p: blobs[p] for p in added}, last.reader)
    if problems:
        return None  # the full read names every problem
    changed = {safe_tree.shown(p) for p in (*added, *(p for p in last.blobs if p not in blobs))}
    kept = [f for f in last.files if f.path not in changed]
    merged = sorted([*kept, *files], key=lambda f: f.path)
    return _Tree(sha, blobs, merged, last.reader)


def _sizes(git_dir: str, ids: set[str]) -> dict[str, int]:
    """Blob id -> size for the blobs git can open (the others are left out)."""
    if not ids:
        return {}
    done = subprocess.run(
        ["git", "--git-dir", git_dir, "cat-file", "--batch-check=%(objectname) %(objectsize)"],
        input="".join(f"{i}\n" for i in ids).encode(),
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    sizes = {}
    for line in done.stdout.decode().splitlines():
        words = line.split()
        if len(words) == 2 and words[1].isdigit():
            sizes[words[0]] = int(words[1])
    return sizes


# One `ls-tree -r -l -z` record: mode, blob id, size ("-" when git cannot
# open the object), path (-z: never quoted). Commits of submodules do not match.
_BLOB_RECORD = re.compile(r"(\d+) blob (\w+) +(\S+)\t([^\0]*)\0")


def _blob_entries(listing: bytes) -> dict[str, Entry]:
    """path -> entry for every blob outside hidden directories and files, and
    the root CONFIG_FILE.
    The listing is decoded once (UTF-8 with surrogate escapes, as os.fsdecode
    decodes one name: NUL and tab never fall inside a character)."""
    return {
        path: (mode, sha, int(size) if size.isdigit() else -1)
        for mode, sha, size, path in _BLOB_RECORD.findall(os.fsdecode(listing))
        if path == CONFIG_FILE or not (path.startswith(".") or "/." in path)
    }


def _files(
    blobs: dict[str, Entry], reader: _Blobs
) -> tuple[list[SourceFile], list[tuple[str, str, bool]]]:
    """The YAML files among the blobs (symlinks resolved inside the tree),
    and what is wrong with the others: (shown path, why, whether an ignore
    pattern may cover it: a symlink the rules refuse, not a missing object)."""
    files, problems = [], []
    shown = safe_tree.shown
    for path, entry in blobs.items():
        if not path.endswith(YAML_SUFFIXES) or path == CONFIG_FILE:
            continue
        name = shown(path)
        target, why = _resolve(path, entry, blobs, reader)  # a plain file: itself
        if why:
            problems.append((name, why, why.startswith("is a symlink")))
            continue
        read = functools.partial(_read_blob, reader, target[1], target[2], name)
        files.append(SourceFile(name, target[1], read))
    return files, problems


def _resolve(path: str, entry: Entry, blobs: dict[str, Entry], reader: _Blobs) -> tuple[Entry, str]:
    """The blob a tree entry stands for (symlinks followed inside the tree),
    or why there is none."""
    where, target = path, entry
    for _ in range(_MAX_LINK_HOPS):
        if target[0] != _LINK_MODE:
            break
        if target[2] < 0:
            return target, f"the object {target[1][:12]} is missing or corrupt"
        link = os.fsdecode(reader.read(target[1], target[2])[:4096])
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(where), link))
        if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
            return target, "is a symlink that leaves the repository tree (refused)"
        if resolved not in blobs:
            return target, "is a symlink to no file of the tree (dangling, or a directory)"
        where, target = resolved, blobs[resolved]
    else:
        return target, "is a symlink loop"
    if target[2] < 0:
        return target, f"the object {target[1][:12]} is missing or corrupt"
    return target, ""


def _read_blob(reader: _Blobs, sha: str, size: int, name: str) -> bytes:
    """The file `name`'s blob; SourceError naming the repository and the
    file (a read can come long after the commit was listed)."""
    try:
        return reader.read(sha, size)
    except SourceError as exc:
        repo = reader.git_dir.removesuffix("/.git")
        raise SourceError(f"{safe_tree.shown(repo)}: {name}: {exc}") from None
