"""Where config comes from: a directory tree or one commit of a Git repository.

Every file is named by its Git blob id, computed for plain files the same way
Git does, so a content hash is free for Git sources and identical for both:
caches keyed by it survive switching between `--config` and `--repo`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import marshal
import os
import stat
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.config import safe_tree

if TYPE_CHECKING:
    from reconciler.config.read_ahead import TreeReadAhead
    from reconciler.config.repo_config import RepoConfig

YAML_SUFFIXES = safe_tree.YAML_SUFFIXES
# The repository's own settings (reconciler.config.repo_config), at the root.
CONFIG_FILE = ".reconcile.yaml"


class SourceError(Exception):
    """The config source cannot be read (missing path, bad ref, not a repo)."""

    @property
    def problems(self) -> tuple[str, ...]:
        """Each problem on its own ("path: why"): the message joins several
        (safe_tree.PROBLEMS_JOINED)."""
        return tuple(str(self).split(safe_tree.PROBLEMS_JOINED))


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

    identity: str  # what was read: reconciler.source_identity; its commit is `commit`
    description: str
    files: tuple[SourceFile, ...]
    # From .reconcile.yaml and the flags (repo_config): documents of these
    # kinds are passed over silently; strict makes any foreign kind an error.
    skip_kinds: frozenset[str] = frozenset()
    strict_kinds: bool = False
    # A Git commit's CONFIG_FILE, read by the same rules as its YAML files (a
    # directory's is read from the directory by repo_config).
    config: SourceFile | None = None
    # Paths the tree's rules refuse (a symlink that leaves the tree, dangles
    # or loops, a FIFO named *.yaml, ...) that an ignore pattern may cover:
    # (shown path, matched as a directory, error text). Their files are never
    # in `files`. reconciler.config.repo_config.apply_to, which every reader
    # of a source goes through (spec.open_source, the pre-receive hook),
    # drops those its policy ignores (a file left unread cannot fail the
    # read) and raises the others as SourceError. from_git leaves every one
    # here; from_paths raises those its roots' .reconcile.yaml (or the
    # `config` it is given) does not ignore, and leaves the others.
    refused: tuple[tuple[str, bool, str], ...] = ()
    # The Git commit read (its full id); None for a directory.
    commit: str | None = None
    # JSON files of the tree that are not read (safe_tree.UNREAD_SUFFIX),
    # shown paths in walk order: each is a note of validation
    # (reconciler.config.diagnostics.not_read); apply_to drops those an
    # ignore pattern covers. A file named on the command line is read
    # whatever its name, and is not here.
    unread: tuple[str, ...] = ()


def _constant(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _walk_yaml(
    root: str,
) -> tuple[list[tuple[str, os.stat_result]], list[safe_tree.Refusal]]:
    """YAML files under root in a stable order, hidden entries skipped, read
    by the rules of reconciler.config.safe_tree, each with its stat data; and
    the paths that break those rules (safe_tree.walk_refusals: a SourceError
    only for the root itself or a tree over the file limit)."""
    try:
        return safe_tree.walk_refusals(root)
    except safe_tree.TreeError as exc:
        raise SourceError(str(exc)) from None


Refused = list[tuple[str, bool, str]]  # Source.refused's entries


def split_unread(refused: Iterable[tuple[str, bool, str]]) -> tuple[Refused, list[str]]:
    """A walk's refusals (safe_tree.walk_refusals) as the real ones and the
    shown paths of the JSON files it passed over."""
    kept: Refused = []
    unread: list[str] = []
    for entry in refused:
        if safe_tree.is_unread(entry):
            unread.append(entry[0])
        else:
            kept.append(entry)
    return kept, unread


def refusal_error(refused: Iterable[tuple[str, bool, str]]) -> SourceError:
    """The error of refused paths none of which is ignored: every one named."""
    return SourceError(safe_tree.PROBLEMS_JOINED.join(message for _, _, message in refused))


Signature = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device
RACY_NS = 1_000_000_000  # a file changed this close to the cache write is re-hashed


def _file_sig(path: Path) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _checked_entries(value: Any) -> tuple[int, dict[str, tuple[Signature, str]]]:
    """A stat cache's (written_ns, entries) as read back, or ValueError."""
    written, entries = value
    if not isinstance(written, int) or not isinstance(entries, dict):
        raise ValueError("not a stat cache")
    return written, entries


# Stat caches a cache directory keeps, one per set of roots: a CI runner
# that validates a fresh checkout per job would otherwise gain a file a job.
STAT_CACHES_KEPT = 64


def prune_stat_caches(directory: Path, keep: int) -> None:
    """Remove all but the `keep` most recently written stat caches in
    `directory`. Another process may be using one: losing it costs that
    process a re-hash of its tree, never a wrong answer."""
    try:
        with os.scandir(directory) as entries:
            caches = [(e.stat().st_mtime_ns, e.path) for e in entries if e.name[-8:] == ".marshal"]
    except OSError:
        return
    caches.sort()
    for _, stale in caches[: max(0, len(caches) - keep)]:
        with contextlib.suppress(OSError):
            os.unlink(stale)


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
        # the file's stat data when read or last written: another process
        # wrote it when that moved (SourceCache.stat_cache reads it again)
        self.signature = _file_sig(path) if path is not None else None
        if path is None:
            return
        try:
            with open(path, "rb") as fh:
                self.written_ns, self.entries = _checked_entries(marshal.loads(fh.read()))
        except Exception:  # noqa: BLE001 - a cache must never make reading fail
            self.entries, self.written_ns = {}, 0

    def get(self, path: str, sig: Signature) -> str | None:
        return self.trusted()(path, sig)

    def trusted(self) -> Callable[[str, Signature], str | None]:
        """get() as one function with its lookups bound (a scan calls it per file)."""
        entries_get, limit = self.entries.get, self.written_ns - RACY_NS

        def trusted(path: str, sig: Signature) -> str | None:
            hit = entries_get(path)
            if hit is None or hit[0] != sig or sig[2] >= limit:
                return None
            return hit[1]

        return trusted

    def put(self, path: str, sig: Signature, digest: str) -> None:
        self.entries[path] = (sig, digest)
        self.dirty = True

    def save(self, seen: set[str]) -> None:
        if self.path is None or not (self.dirty or seen != set(self.entries)):
            return
        entries = {k: v for k, v in self.entries.items() if k in seen}
        written = time.time_ns()
        new_tree = self.signature is None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(marshal.dumps((written, entries)))
            tmp.replace(self.path)
        except OSError:
            return
        if new_tree:
            prune_stat_caches(self.path.parent, STAT_CACHES_KEPT)
        # what a fresh read of the file would now give
        self.entries, self.written_ns, self.dirty = entries, written, False
        self.signature = _file_sig(self.path)


class SourceCache:
    """What reading sources keeps in memory for the process that owns it (one
    per command; --watch keeps one across its passes): the stat caches it
    read, the last snapshot of each single-directory source (refresh builds
    on it), the last commit read by its id (a commit never changes, and a
    watcher's passes between pushes read the same one again), and the last
    tree read from each repository (reconciler.config.git_tree reads the
    next commit as its difference)."""

    def __init__(self) -> None:
        self.stat_caches: dict[Path, StatCache] = {}
        self.snapshots: dict[str, tuple[Source, dict[str, str]]] = {}
        self.commit: tuple[tuple[str, str], Source] | None = None
        self.trees: dict[str, Any] = {}  # git directory -> git_tree's last tree
        # a child reading a working tree ahead (reconciler.config.read_ahead)
        self.read_ahead: TreeReadAhead | None = None

    def reading_ahead(self) -> bool:
        """A read-ahead child is reading a tree whose records are not taken yet."""
        return self.read_ahead is not None and self.read_ahead.pending()

    def settle(self) -> None:
        """Before validating the files that changed: let a read-ahead child
        finish validating them (it started first)."""
        if self.read_ahead is not None:
            self.read_ahead.settle()

    def stat_cache(self, path: Path | None) -> StatCache:
        """The stat cache at `path`: read once, then kept until another
        process writes the file."""
        if path is None:
            return StatCache(None)
        kept = self.stat_caches.get(path)
        if kept is None or kept.signature != _file_sig(path):
            kept = self.stat_caches[path] = StatCache(path)
        return kept

    def refresh(
        self, given: str, changed: Iterable[str], stat_cache: Path | None = None
    ) -> Source | None:
        """The last snapshot of `given` with only the `changed` absolute paths
        read again (file events from --watch), or None when there is no
        snapshot. The result equals what from_paths would return for the
        same tree."""
        return _refresh(self, given, changed, stat_cache)


def default_cache_dir() -> Path | None:
    """The cache directory, or None when it is not safe to use (reconciler.config.cache_dir)."""
    from reconciler.config import cache_dir

    return cache_dir.default()


# A stat cache this big records over ~500 files: below it, reading the tree
# ahead in a child (reconciler.config.read_ahead) costs more than it overlaps.
READ_AHEAD_MIN_BYTES = 64 * 1024


def worth_reading_ahead(stat_cache: Path) -> bool:
    """Whether the last read of these roots was big enough to read ahead."""
    try:
        return os.stat(stat_cache).st_size >= READ_AHEAD_MIN_BYTES
    except OSError:
        return False


def stat_cache_path(cache_dir: Path, paths: Iterable[str]) -> Path:
    """One stat cache per set of roots, so alternating trees do not evict each other."""
    roots = "\0".join(sorted(os.path.abspath(p) for p in paths))
    return cache_dir / "stat" / f"{hashlib.sha256(roots.encode()).hexdigest()[:16]}.marshal"


# A PATH of "-" is standard input, one file shown as STDIN_SHOWN
# (`kustomize build | reconcile --validate -`).
STDIN = "-"
STDIN_SHOWN = "<stdin>"


def _read_stdin() -> bytes:
    if sys.stdin is None:  # the process was started with it closed
        raise SourceError(f"{STDIN_SHOWN}: standard input is closed")
    try:
        return safe_tree.read_limited(sys.stdin.fileno())
    except (OSError, ValueError) as exc:  # unreadable, or no file descriptor
        raise SourceError(f"{STDIN_SHOWN}: cannot be read: {exc}") from None


def _read(path: str) -> bytes:
    try:
        return safe_tree.read_regular(path)
    except OSError as exc:
        message = f"{safe_tree.shown(path)}: {exc.strerror}" if exc.strerror else str(exc)
        raise SourceError(message) from None


def _read_verified(path: str, digest: str) -> bytes:
    data = _read(path)
    if blob_id(data) != digest:
        raise SourceError(f"{safe_tree.shown(path)} changed while it was being read; run again")
    return data


@dataclass(frozen=True, slots=True)
class _Root:
    """One given path: files are shown as given (normalised) and keyed
    absolute; both are the root's form plus the same relative tail."""

    walk: str
    shown: str
    key: str

    @classmethod
    def of(cls, given: str) -> _Root:
        root = given.rstrip("/") or "/"  # (shown names are escaped: safe_tree.shown)
        shown = root if os.path.isabs(root) else os.path.normpath(root)
        return cls(root, shown, os.path.abspath(root))


def _source_file(path: str, shown: str, key: str, cache: StatCache) -> SourceFile:
    return as_file(_record(path, shown, key, cache))


# A file as read: shown path, blob id, where it is, and its bytes when they
# had to be read to hash it (else it is read, and checked, when needed).
Record = tuple[str, str, str, bytes | None]


def _record(path: str, shown: str, key: str, cache: StatCache) -> Record:
    st = os.stat(path)
    sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    digest = cache.get(key, sig)
    if digest is not None:
        return (shown, digest, path, None)
    return _hashed(path, shown, key, sig, cache)


def _hashed(path: str, shown: str, key: str, sig: Signature, cache: StatCache) -> Record:
    """The record of a file the stat cache cannot vouch for: read and hashed."""
    data = _read(path)
    digest = blob_id(data)
    cache.put(key, sig, digest)
    return (shown, digest, path, data)


def as_file(record: Record) -> SourceFile:
    shown, digest, path, data = record
    if data is not None:
        return SourceFile(shown, digest, _constant(data))
    return SourceFile(shown, digest, functools.partial(_read_verified, path, digest))


def as_files(records: list[Record]) -> list[SourceFile]:
    """[as_file(r) for r in records], built by setting the slots directly: a
    frozen dataclass's __init__ sets each field through object.__setattr__,
    half the cost of 10,000 files taken from a read-ahead child (the figure
    it protects: bench/layout_bench.py's one changed service applied)."""
    new, partial, slots = object.__new__, functools.partial, vars(SourceFile)
    set_path, set_digest, set_reader = (slots[n].__set__ for n in ("path", "digest", "reader"))
    files: list[SourceFile] = []
    add = files.append
    for shown, digest, path, data in records:
        file = new(SourceFile)
        set_path(file, shown)
        set_digest(file, digest)
        reader = _constant(data) if data is not None else partial(_read_verified, path, digest)
        set_reader(file, reader)
        add(file)
    return files


def _read_tree(
    paths: list[str], stat_cache: Path | None, sources: SourceCache
) -> tuple[list[Record], dict[str, str], Refused]:
    """Every YAML file under `paths` as a record, shown path -> absolute
    path, and the refused paths (Source.refused): from the read-ahead child
    when one read these paths, else read here and the stat cache saved."""
    if sources.read_ahead is not None:
        taken = sources.read_ahead.take_tree(paths, stat_cache)
        if taken is not None:
            return taken
    refused: Refused = []
    records, keys, cache = scan_tree(paths, stat_cache, sources, refused)
    cache.save(set(keys.values()))
    return records, keys, refused


def scan_tree(
    paths: list[str],
    stat_cache: Path | None,
    sources: SourceCache,
    refusals: Refused | None = None,
) -> tuple[list[Record], dict[str, str], StatCache]:
    """_read_tree's work, the stat cache left to save: files whose stat data
    is unchanged are not read. Paths the tree's rules refuse are added to
    `refusals` (Source.refused's entries) or, without it, raised as one
    SourceError naming every one. The loop runs once per file, so it stays
    lean: the walk's own stat, no path normalising, no call that can be
    avoided (it is what a read-ahead child must finish before the parent
    has imported the engine: bench/layout_bench.py's one changed service
    applied)."""
    cache = sources.stat_cache(stat_cache)
    # StatCache.trusted's test, inlined: a call less per file
    entries_get, limit = cache.entries.get, cache.written_ns - RACY_NS
    records: list[Record] = []
    append = records.append
    keys: dict[str, str] = {}
    refused: Refused = [] if refusals is None else refusals
    shown_as = safe_tree.shown
    for given in paths:
        if given == STDIN:
            data = _read_stdin()
            append((STDIN_SHOWN, blob_id(data), given, data))
            keys[STDIN_SHOWN] = given
            continue
        if not os.path.lexists(given):
            raise SourceError(f"{shown_as(given)}: no such file or directory")
        root = _Root.of(given)
        cut, root_shown, root_key = len(root.walk), root.shown, root.key
        # A root given absolute and normalised, as --config usually is: a
        # file's shown name, key and path are one string object, which the
        # read-ahead child's hand-over (marshal) then writes once, not three
        # times (bench/layout_bench.py's one changed service applied).
        as_given = root_shown == root.walk == root_key
        found, bad = _walk_yaml(root.walk)
        refused += [
            (shown_as(path if as_given else root_shown + path[cut:]), as_dir, message)
            for path, as_dir, message in bad
        ]
        for path, st in found:  # the walk's own stat: one per file
            if as_given:
                shown, key = shown_as(path), path
            else:
                tail = path[cut:]
                shown, key = shown_as(root_shown + tail), root_key + tail
            keys[shown] = key
            sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
            hit = entries_get(key)
            if hit is not None and hit[0] == sig and sig[2] < limit:
                append((shown, hit[1], path, None))
            else:
                append(_hashed(path, shown, key, sig, cache))
    if refusals is None and (problems := split_unread(refused)[0]):
        raise refusal_error(problems)
    return records, keys, cache


def _snapshot(
    label: str, files: list[SourceFile], refused: Refused | None = None, unread: Iterable[str] = ()
) -> Source:
    """The Source of a directory tree: its identity is its YAML files' (a
    file that is not read changes nothing a plan does)."""
    summary = hashlib.sha256()
    summary.update("".join(f"{f.path}\0{f.digest}\n" for f in files).encode())
    identity = f"dir:{summary.hexdigest()[:20]}"
    return Source(identity, label, tuple(files), refused=tuple(refused or ()), unread=tuple(unread))


def from_paths(
    paths: Iterable[str],
    stat_cache: Path | None = None,
    sources: SourceCache | None = None,
    *,
    config: RepoConfig | None = None,
) -> Source:
    """Read YAML files from directories and files (a working tree), through
    the stat cache when given. `sources` keeps what a later read can use
    (none: nothing is kept). A path the tree's rules refuse is a SourceError
    naming each, unless `config` (by default the roots' .reconcile.yaml,
    repo_config.combine) ignores it: then it is left in Source.refused, for
    repo_config.apply_to to drop. The JSON files the walk passes over are
    named in Source.unread (apply_to drops those the config ignores)."""
    paths = list(paths)
    sources = sources if sources is not None else SourceCache()
    records, keys, walked = _read_tree(paths, stat_cache, sources)
    refused, unread = split_unread(walked)
    if refused:
        from reconciler.config import repo_config  # (it imports this module)

        policy = config if config is not None else repo_config.combine(paths)
        unignored = repo_config.unignored(refused, policy, paths)
        if unignored:
            raise refusal_error(unignored)
    snapshot = _snapshot(", ".join(paths), as_files(records), refused, unread)
    if len(paths) == 1:
        sources.snapshots[paths[0]] = (snapshot, keys)
    return snapshot


def _walk_order(tail: str) -> tuple[tuple[int, str], ...]:
    """Sort key giving os.walk's order as _walk_yaml uses it: in each directory
    its files (sorted) before its subdirectories (sorted)."""
    parts = tail.strip("/").split("/")
    return (*((1, d) for d in parts[:-1]), (0, parts[-1]))


def _refresh(
    sources: SourceCache, given: str, changed: Iterable[str], stat_cache: Path | None
) -> Source | None:
    last = sources.snapshots.get(given)
    if last is None:
        return None
    snapshot, keys = last
    root = _Root.of(given)
    if snapshot.refused or not os.path.isdir(root.walk):
        return None  # (the full read says again which refused paths are still there)
    cache = sources.stat_cache(stat_cache)
    by_key = {keys[f.path]: f for f in snapshot.files}
    unread = set(snapshot.unread)
    for path in changed:
        if path != root.key and not path.startswith(root.key + "/"):
            continue
        # drop what was at or under the path, then read what is there now
        for key in [k for k in by_key if k == path or k.startswith(path + "/")]:
            del by_key[key]
        tail = path[len(root.key) :]
        gone = safe_tree.shown(root.shown + tail)  # (shown escapes character by character)
        unread -= {u for u in unread if u == gone or u.startswith(gone + "/")}
        if any(part.startswith(".") for part in tail.split("/")):
            continue
        local = root.walk + tail
        try:
            mode = os.lstat(local).st_mode
        except FileNotFoundError:
            continue
        except OSError:
            return None  # the full read names the problem
        if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            return None  # the full read applies the symlink and file-kind rules
        found, passed_over = [local], [local] if local.endswith(safe_tree.UNREAD_SUFFIX) else []
        if stat.S_ISDIR(mode):
            walked, bad = _walk_yaml(local)
            problems, passed_over = split_unread(bad)
            if problems:
                return None  # the full read leaves them to the ignore policy
            found = [p for p, _ in walked]
        unread.update(safe_tree.shown(root.shown + f[len(root.walk) :]) for f in passed_over)
        for file in found:
            if file.endswith(YAML_SUFFIXES):
                key = root.key + file[len(root.walk) :]
                name = safe_tree.shown(root.shown + file[len(root.walk) :])
                by_key[key] = _source_file(file, name, key, cache)
    order = sorted(by_key, key=lambda k: _walk_order(k[len(root.key) :]))
    files = [by_key[k] for k in order]
    new_keys = {by_key[k].path: k for k in order}
    cache.save(set(new_keys.values()))
    unread_order = sorted(unread, key=lambda u: _walk_order(u[len(root.shown) :]))
    fresh = _snapshot(snapshot.description, files, unread=unread_order)
    sources.snapshots[given] = (fresh, new_keys)
    return fresh


def from_git(
    repo: str, ref: str, cache_dir: Path | None, sources: SourceCache | None = None
) -> Source:
    """Read the tree of one commit without checking it out (bare repos work).
    A remote repository is read from a mirror under `cache_dir`, fetched
    first unless `ref` is a full commit id the mirror already holds.

    The tree's rules are the working tree's (reconciler.config.safe_tree): a
    symlink is followed only to a file of the same tree (one that is not is
    left in Source.refused, as from_paths leaves it), and a repository
    whose objects cannot be read is an error (every blob is looked up even
    when the validation cache would spare reading it). A commit read by its
    id is kept in `sources`, and so is each repository's last tree, which the
    next commit is read against (none: nothing is kept)."""
    from reconciler.config import git_tree

    if sources is not None and sources.commit is not None and sources.commit[0] == (repo, ref):
        return sources.commit[1]
    label = f"{safe_tree.shown(repo)}@{safe_tree.shown(ref)}"
    local = repo
    if is_remote(repo):
        if cache_dir is None:
            raise SourceError(f"{label}: no safe cache directory to keep a mirror in")
        local = _fetched_mirror(repo, cache_dir, ref, label)
    trees = sources.trees if sources is not None else {}
    src = git_tree.read_commit(local, ref, label, trees, defer_refusals=True)
    if _is_full_id(ref) and sources is not None:
        sources.commit = ((repo, ref), src)
    return src


def _fetched_mirror(url: str, cache_dir: Path, ref: str, label: str) -> str:
    """The git directory of the remote's mirror, fetched unless it holds `ref`."""
    import git
    from gitdb.exc import ODBError

    try:
        return str(_mirror(url, cache_dir, ref).git_dir)
    except (git.exc.GitError, ODBError, ValueError, OSError, UnicodeError) as exc:
        raise SourceError(f"{label}: {str(exc).strip() or type(exc).__name__}") from exc


def is_remote(repo: str) -> bool:
    """A URL git fetches from (anything else is a local repository path)."""
    return "://" in repo or repo.startswith("git@")


def mirror_path(url: str, cache_dir: Path) -> Path:
    return cache_dir / "repos" / hashlib.sha256(url.encode()).hexdigest()[:16]


# Every branch and tag, pruned: a ref deleted upstream disappears here too.
MIRROR_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


def _mirror(url: str, cache_dir: Path, ref: str = "") -> git.Repo:  # type: ignore[name-defined]  # noqa: F821
    """Keep a bare mirror of a remote repository and fetch it, unless `ref` is
    a full commit id it already holds (a commit never changes)."""
    import git

    target = mirror_path(url, cache_dir)
    if target.exists():
        repository = git.Repo(target)
        if _is_full_id(ref) and _has_commit(repository, ref):
            return repository
        repository.remotes.origin.fetch(list(MIRROR_REFSPECS), prune=True)
        return repository
    target.parent.mkdir(parents=True, exist_ok=True)
    return git.Repo.clone_from(url, target, mirror=True)


def _is_full_id(ref: str) -> bool:
    return len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)


def _has_commit(repository: Any, sha: str) -> bool:
    try:
        return bool(repository.commit(sha))
    except Exception:  # noqa: BLE001 - absent or unreadable: fetch
        return False
