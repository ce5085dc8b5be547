"""Reading a big working tree in a forked child while the parent imports.

A one-shot `--plan`, `--apply` or `--validate` of a 10,000-file tree spends
most of its time on two things that do not depend on each other: a stat per
file (the stat cache's check, reconciler.config.source) and importing the
engine. Threads cannot overlap them (each stat gives up the GIL and waits
for it again behind the importer), a second core can: the child reads the
tree and hands the records over a pipe, then validates the few files that
changed into the validation cache, where the parent finds them instead of
validating them itself, and saves the stat cache. Figures it protects:
bench/layout_bench.py's one changed service applied and re-validation after
one file changed.

The records are plain tuples in marshal's format, written by a process we
forked into an anonymous memory file made before the fork (memfd): nothing
is read from a place another user could write. The child writes them
whole and then says so on a pipe, so it never waits for the parent to
read (a pipe holds 64 KiB, the records of 10,000 files are ~2 MB): it goes
on to validate while the parent is still importing. Whatever
goes wrong in the child, the parent reads the tree itself, so the result
is the same either way.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import select
from pathlib import Path

from reconciler.config import source
from reconciler.config.source import Record, SourceError

# The parent's wait for the child's validation before validating itself.
VALIDATION_WAIT_S = 0.5
# More changed files than this go to the full path, which validates them in
# parallel (reconciler.engine.reconcile's services-only update has the same bound).
PREVALIDATE_MAX = 64


class TreeReadAhead:
    """source._read_tree of `paths` in a forked child. Call only from a
    single-threaded process (the fork copies no other thread, and a lock
    another thread held would stay held in the child)."""

    def __init__(self, paths: list[str], stat_cache: Path, validate_into: Path | None) -> None:
        self.paths = list(paths)
        self.stat_cache = stat_cache
        self._memory: int | None = os.memfd_create("reconcile-read-ahead", os.MFD_CLOEXEC)
        try:
            records_r, records_w = os.pipe()  # one byte when the records are written
            done_r, done_w = os.pipe()  # closed by the child when its validation is over
        except OSError:
            os.close(self._memory)
            raise
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(records_r)
            os.close(done_r)
            _child(self.paths, stat_cache, validate_into, self._memory, records_w, done_w, parent)
        os.close(records_w)
        os.close(done_w)
        self._records: int | None = records_r
        self._done: int | None = done_r

    def pending(self) -> bool:
        """The records are not taken yet."""
        return self._records is not None

    def take(
        self, paths: list[str], stat_cache: Path | None
    ) -> tuple[list[Record], dict[str, str]] | None:
        """take_tree() with any refused path raised as a SourceError."""
        taken = self.take_tree(paths, stat_cache)
        if taken is None:
            return None
        records, keys, refused = taken
        if refused:
            raise source.refusal_error(refused)
        return records, keys

    def take_tree(
        self, paths: list[str], stat_cache: Path | None
    ) -> tuple[list[Record], dict[str, str], source.Refused] | None:
        """The child's records, shown -> absolute paths and refused paths
        (source.scan_tree's; its SourceError raised here), or None: other
        paths, taken already, or the child failed (the caller then reads the
        tree itself)."""
        if self._records is None or paths != self.paths or stat_cache != self.stat_cache:
            return None
        ready = os.read(self._records, 1)  # b"": the child died before writing them all
        os.close(self._records)
        self._records = None
        if ready != _WRITTEN or self._memory is None:
            return None
        try:
            result = marshal.loads(_read_all(self._memory))
        except (EOFError, ValueError, TypeError, OSError):
            return None
        if result[0] == "error":
            raise SourceError(result[1])
        return result[1], result[2], result[3]

    def settle(self, timeout: float = VALIDATION_WAIT_S) -> None:
        """Wait (at most `timeout`) for the child to validate the changed
        files: it started long before the caller could, so waiting is
        sooner than validating them again here."""
        if self._done is not None:
            select.select([self._done], [], [], timeout)
            os.close(self._done)
            self._done = None

    def close(self) -> None:
        """Close the pipes and reap the child."""
        for fd in (self._records, self._done, self._memory):
            if fd is not None:
                os.close(fd)
        self._records = self._done = self._memory = None
        if self.pid > 0:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0


_WRITTEN = b"w"


def _read_all(fd: int) -> bytes:
    """The whole memory file `fd`, from its start (the offset is shared with
    the child that wrote it)."""
    size = os.fstat(fd).st_size
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _child(
    paths: list[str],
    stat_cache: Path,
    validate_into: Path | None,
    memory: int,
    records_w: int,
    done_w: int,
    parent: int,
) -> None:
    """Read, hand over, validate, save the stat cache, leave: never returns,
    and never runs the parent's exit handlers or flushes its buffers."""
    code = 1
    try:
        gc.disable()  # 10,000 records and nothing cyclic
        cache = None
        records: list[Record] = []
        try:
            refused: source.Refused = []
            records, keys, cache = source.scan_tree(
                paths, stat_cache, source.SourceCache(), refused
            )
            result: tuple[str, list[Record], dict[str, str], source.Refused] | tuple[str, str] = (
                "ok", records, keys, refused
            )
        except SourceError as exc:
            result = ("error", str(exc))
        _write_all(memory, marshal.dumps(result))
        os.write(records_w, _WRITTEN)  # a parent gone by now: EPIPE, and out
        os.close(records_w)
        from reconciler.procs import die_with_parent  # (ctypes: the child's cost only)

        die_with_parent(parent)  # what follows must not outlive it
        if cache is not None and validate_into is not None:
            _prevalidate(records, validate_into)  # first: the parent may be waiting for it
        os.close(done_w)
        if cache is not None:  # no one waits for this
            cache.save(set(keys.values()))
        code = 0
    finally:
        os._exit(code)


def _prevalidate(records: list[Record], cache_dir: Path) -> None:
    """Validate the files whose bytes had to be read (new or changed) into
    the validation cache. Results are keyed by content: the same whoever
    stores them first."""
    changed = [source.as_file(r) for r in records if r[3] is not None]
    if not changed or len(changed) > PREVALIDATE_MAX:
        return
    from reconciler.config.validate import validate_files

    validate_files(changed, cache_dir)
