"""Reading a config tree that other people write, as root, safely.

The rules: only regular files are config (a FIFO, socket or device named
`*.yaml` is an error that names it: opening one could block or never end);
a symlink is followed only while it stays inside the tree (one that leaves
it, dangles or loops is an error: root must not read a file the pusher could
not); a symlinked directory inside the tree is read like any directory; an
unreadable directory or file is an error, never skipped; a symlink that
would not be read anyway (a name that is not `*.yaml` and leads to no
directory: `notes.txt -> /etc/hostname`, a dangling or looping one) is
passed over, as a regular file of that name is; a file is read up
to MAX_FILE_BYTES + 1 bytes, so the loader can refuse it without memory
growing with whatever the file claims to hold. Hidden entries (a leading
dot) are skipped. Every name works: names that are not UTF-8, or that hold
control characters, are shown escaped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from reconciler.config.limits import MAX_FILE_BYTES, MAX_FILES

YAML_SUFFIXES = (".yaml", ".yml")
# A manifest format a directory walk does not read but names: a JSON export
# (`kubectl get ... -o json`) left among the YAML would otherwise be dropped
# without a word, and a plan would remove what it defines.
UNREAD_SUFFIX = ".json"
# What is said of each such file (a note: the file is valid to keep).
NOT_READ = (
    "not read: reconcile reads *.yaml and *.yml files of a directory; a JSON manifest "
    "here is not applied (name it on the command line to validate it, convert it to "
    "YAML to apply it, or add it to ignorePaths)"
)

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symlink",
}


# What the walk could not read, path by path: (path as walked, whether the
# path is matched as a directory by an ignore pattern, the error's text).
# A caller that leaves some paths unread (reconciler.config.repo_config's
# ignorePaths) drops the refusals of those and raises the others. A JSON
# file the walk passes over is listed the same way with NOT_READ as its
# text (is_unread), so it crosses every hand-over a refusal crosses (a
# read-ahead child's) and meets the same ignore policy; it is a note, never
# an error.
Refusal = tuple[str, bool, str]


def is_unread(refusal: Refusal) -> bool:
    """Whether a Refusal stands for a JSON file passed over, not a problem."""
    return refusal[2] == NOT_READ


# How an error that names several problems joins them: each on a line of its
# own, said as the command says an error (reconciler.config.source.SourceError
# splits them again).
PROBLEMS_JOINED = "\nerror: "


class TreeError(Exception):
    """The tree holds paths that cannot be read as config; every one is named."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(PROBLEMS_JOINED.join(problems))
        self.problems = problems


def shown(path: str) -> str:
    """A path as it may be printed: undecodable bytes and control characters
    escaped (a name with a newline must not forge a line of output)."""
    if path.isascii() and path.isprintable():  # the common case, once per file of a tree
        return path
    try:
        path.encode("utf-8")
        text = path
    except UnicodeEncodeError:
        text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(slots=True)
class _Walk:
    root_real: str
    problems: list[Refusal]
    seen_dirs: set[tuple[int, int]]
    count: int = 0
    # Root reads every regular file whatever its mode, so asking is one
    # wasted syscall per file (10,000 on a plan); a read that still fails
    # is an error where it happens. Other users are asked, file by file.
    ask_readable: bool = True


def walk(root: str) -> Iterator[str]:
    """YAML files under `root` (a directory or a file) in a stable order: in
    each directory its files (sorted) before its subdirectories (sorted).
    Paths are given under `root` as spelled (a symlinked directory's files
    under the link's name). Raises TreeError naming every bad path, after
    the walk."""
    for path, _ in walk_stat(root):
        yield path


def walk_stat(root: str) -> list[tuple[str, os.stat_result]]:
    """walk()'s files, each with its stat data (a symlink's target's): what
    the walk had to ask the kernel for anyway, so a caller keyed by stat data
    (the working tree's stat cache) needs no second stat per file. A list,
    not a generator: the walk raises only at its end anyway, and a caller
    looping over 10,000 files saves the generator hops (the figure it
    protects: bench/layout_bench.py's one changed service applied)."""
    found, refused = walk_refusals(root)
    problems = [message for *_, message in refused if message != NOT_READ]
    if problems:
        raise TreeError(problems)
    return found


def walk_refusals(root: str) -> tuple[list[tuple[str, os.stat_result]], list[Refusal]]:
    """walk_stat()'s files, and what it would raise path by path instead of
    raising it: a path ignored by the caller's policy must not fail the read
    (its refusal is dropped), every other one must; the JSON files passed
    over are among them (is_unread). Raises TreeError only for the root
    itself and for a tree over MAX_FILES."""
    try:
        st = os.stat(root)
    except OSError as exc:
        raise TreeError([f"{shown(root)}: {exc.strerror}"]) from None
    if not stat.S_ISDIR(st.st_mode):
        if not stat.S_ISREG(st.st_mode):
            raise TreeError([f"{shown(root)}: is {kind_of(st.st_mode)}, not a regular file"])
        return [(root, st)], []
    state = _Walk(
        os.path.realpath(root), [], {(st.st_dev, st.st_ino)}, ask_readable=os.geteuid() != 0
    )
    found: list[tuple[str, os.stat_result]] = []
    if not _walk_dir(root, state, found):
        raise TreeError([message for *_, message in state.problems if message != NOT_READ])
    return found, state.problems


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _walk_dir(directory: str, state: _Walk, found: list[tuple[str, os.stat_result]]) -> bool:
    """Add one directory's YAML files to `found`, then its subdirectories';
    False once the tree holds more than MAX_FILES. Each entry costs one
    lstat relative to the open directory, which gives its kind and the stat
    data the caller keys on in one call."""
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        state.problems.append(
            (directory, True, f"{shown(directory)}: cannot read the directory: {exc.strerror}")
        )
        return True
    prefix = directory if directory.endswith("/") else directory + "/"
    subdirs: list[str] = []
    try:
        try:
            names = sorted(os.listdir(fd))
        except OSError as exc:
            state.problems.append(
                (directory, True, f"{shown(directory)}: cannot read the directory: {exc.strerror}")
            )
            return True
        if not _entries(fd, prefix, names, state, found, subdirs):
            return False
    finally:
        os.close(fd)
    for sub in subdirs:
        try:
            st = os.stat(sub)
        except OSError as exc:
            state.problems.append((sub, True, f"{shown(sub)}: {exc.strerror}"))
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in state.seen_dirs:
            state.problems.append(
                (sub, True,
                 f"{shown(sub)}: a directory already read under another name (a symlink loop?)")
            )  # fmt: skip
            continue
        state.seen_dirs.add(ident)
        if not _walk_dir(sub, state, found):
            return False
    return True


def _entries(
    fd: int,
    prefix: str,
    names: list[str],
    state: _Walk,
    found: list[tuple[str, os.stat_result]],
    subdirs: list[str],
) -> bool:
    """Sort the entries of the directory open as `fd` into `found` (YAML
    files) and `subdirs`; False once the tree holds more than MAX_FILES. A
    symlink is followed only where its path would be read: a YAML name, or
    a directory to walk (a link whose name is not YAML, which dangles, loops
    or leads to a file, is passed over like a regular file of that name)."""
    lstat, problems, add = os.lstat, state.problems, found.append
    for name in names:
        if name.startswith("."):
            continue
        path = prefix + name
        try:
            st = lstat(name, dir_fd=fd)
        except OSError as exc:
            as_dir = not name.endswith(YAML_SUFFIXES)  # (it matters only as a directory)
            problems.append((path, as_dir, f"{shown(path)}: {exc.strerror}"))
            continue
        kind = stat.S_IFMT(st.st_mode)
        is_yaml = name.endswith(YAML_SUFFIXES)
        if kind == stat.S_IFLNK:
            followed = _symlink(path, state) if is_yaml else _symlinked_dir(path, state)
            if followed is None:
                continue
            kind, st = followed
        if kind == stat.S_IFDIR:
            subdirs.append(path)
        elif not is_yaml:
            if kind == stat.S_IFREG and name.endswith(UNREAD_SUFFIX):
                problems.append((path, False, NOT_READ))  # named only: never opened
            continue
        elif kind != stat.S_IFREG:
            problems.append((path, False, f"{shown(path)}: is {kind_of(kind)}, not a regular file"))
        elif state.ask_readable and not os.access(path, os.R_OK):
            why = "cannot read the file: Permission denied"
            problems.append((path, False, f"{shown(path)}: {why}"))
        else:
            state.count += 1
            if state.count > MAX_FILES:
                problems.append((path, False, f"{shown(path)}: more than {MAX_FILES} YAML files"))
                return False
            add((path, st))
    return True


def _symlink(path: str, state: _Walk) -> tuple[int, os.stat_result] | None:
    """The file type a symlink leads to and the target's stat data, or None
    after noting why it is refused."""
    target = os.path.realpath(path)
    if not _inside(target, state.root_real):
        state.problems.append((path, False, _LEAVES.format(shown(path))))
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        why = "a symlink loop" if exc.errno == 40 else f"a dangling symlink ({exc.strerror})"
        state.problems.append((path, False, f"{shown(path)}: is {why}"))
        return None
    return stat.S_IFMT(st.st_mode), st


_LEAVES = "{}: is a symlink that leaves the config tree (refused)"


def _symlinked_dir(path: str, state: _Walk) -> tuple[int, os.stat_result] | None:
    """For a symlink whose name is not YAML: the directory it leads to
    (walked like any), or None: it leads to no directory (a file, nothing,
    a loop), so nothing under it would be read and it is passed over; or
    to a directory outside the tree, refused (noted) as _symlink refuses."""
    try:
        st = os.stat(path)  # the kind only: nothing outside the tree is read
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    if not _inside(os.path.realpath(path), state.root_real):
        state.problems.append((path, True, _LEAVES.format(shown(path))))
        return None
    return stat.S_IFDIR, st


def read_regular(path: str) -> bytes:
    """A regular file's bytes, at most MAX_FILE_BYTES + 1 of them (the loader
    refuses a longer file). Opening never blocks: a path swapped for a FIFO or
    a device after the walk raises OSError instead."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{shown(path)}: is {kind_of(st.st_mode)}, not a regular file")
        return read_limited(fd)
    finally:
        os.close(fd)


def read_limited(fd: int) -> bytes:
    """At most MAX_FILE_BYTES + 1 bytes from `fd`, up to its end: the loader
    refuses what is longer, and memory never grows with what a writer sends."""
    chunks = []
    left = MAX_FILE_BYTES + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
