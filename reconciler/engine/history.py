"""The node's reconcile history and the watcher's state, under the state
directory: what `--status` shows besides the kernel.

- `history.json`: the last HISTORY_LEN reconciles (one-shot applies and
  watcher passes), each with its trigger, result, source and duration;
- `watch.json`: the watcher's view now: the newest source it was given, the
  last good one it holds the node to, the current error and next retry, and
  the drift its last pass found.

Every write goes to a temporary file that is synced and renamed over the
old one, so a reader (or a watcher killed with -9 and restarted) sees the
previous record or the new one, never half of one. A write that fails (a
full or read-only state directory) leaves no temporary file behind and
raises StateWriteError, which says which file, why and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from reconciler.files import replace_atomically
from reconciler.source_identity import recorded_commit

HISTORY_LEN = 20
HISTORY = "history.json"
WATCH = "watch.json"
APPLIED = "applied.json"  # what the kernel was last converged to (engine.reconcile)

T = TypeVar("T")

# A reconcile that left interfaces out because objects not ours hold the
# place of ours (engine.foreign_place): the rest of the source was applied
# (with --detect-only: planned), but the node is not converged. Its `error`
# names them. Not a failed source: nothing is held back, nothing backs off.
BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class PassRecord:
    """One reconcile: why it ran, what it found and did, how long it took.

    result: "applied" (a new source reached the kernel), "repaired" (drift
    against the applied source was undone), "no-op", "drift" (found, and only
    reported: --detect-only), "planned" (--detect-only with a new source),
    "blocked" (BLOCKED), "failed"."""

    started: str
    duration_s: float
    trigger: str
    result: str
    source: str = ""  # the source identity, git:<commit> or dir:<hash>
    description: str = ""
    changes: int = 0
    error: str = ""
    drift: tuple[str, ...] = ()  # addresses found different from the source's state
    held: str = ""  # on failure: the identity the node is still held to
    # applied on link events just before the pass (engine.link_fast), counted in changes
    attached: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["drift"] = list(self.drift)
        out["attached"] = list(self.attached)
        return out


# What to do when a record cannot be written, by errno; else the OS's words alone.
_REMEDIES = {
    errno.ENOSPC: "free space there",
    errno.EDQUOT: "free space there or raise the quota",
    errno.EROFS: "remount it read-write or give a writable --state-dir",
    errno.EACCES: "run as root or give a writable --state-dir",
    errno.EPERM: "run as root or give a writable --state-dir",
}


class StateWriteError(OSError):
    """A record under the state directory could not be written. Its text
    names the file, the reason and the remedy; the caller adds what was and
    was not changed. An OSError still, for callers that only report it."""

    def __init__(self, path: Path, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror, str(path))
        why = (cause.strerror or str(cause)).lower()
        remedy = _REMEDIES.get(cause.errno or 0)
        self.message = f"cannot write {path}: {why}" + (f"; {remedy}" if remedy else "")

    def __str__(self) -> str:
        return self.message


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, value: Any, durable: bool = True, indent: int | None = 1) -> None:
    """Replace `path` atomically (and, if `durable`, on disk before this
    returns) with `value` as JSON. StateWriteError when it cannot be: the
    old record is left as it was, and no temporary file."""
    text = json.dumps(value, indent=indent, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, text, durable=durable)
    except OSError as exc:
        raise StateWriteError(path, exc) from exc


def write_applied(state_dir: Path, record: Mapping[str, Any]) -> None:
    """Record what the kernel was converged to (last_applied reads it):
    not synced, as before; StateWriteError as write_json."""
    write_json(state_dir / APPLIED, dict(record), durable=False, indent=2)


def read_json(path: Path, default: T) -> Any | T:
    """The record at `path`, or `default` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def load(state_dir: Path) -> list[dict[str, Any]]:
    """The recorded reconciles, oldest first."""
    records: Any = read_json(state_dir / HISTORY, [])
    return records if isinstance(records, list) else []


def append(state_dir: Path, record: PassRecord) -> None:
    records = [*load(state_dir), record.as_json()][-HISTORY_LEN:]
    write_json(state_dir / HISTORY, records)


def write_watch_state(state_dir: Path, state: Mapping[str, Any]) -> None:
    write_json(state_dir / WATCH, dict(state))


def watch_state(state_dir: Path) -> dict[str, Any] | None:
    state = read_json(state_dir / WATCH, None)
    return state if isinstance(state, dict) else None


def last_applied(state_dir: Path) -> dict[str, Any] | None:
    """The record of the last apply (engine.reconcile.record_applied)."""
    record = read_json(state_dir / APPLIED, None)
    return record if isinstance(record, dict) else None


def applied_commit(state_dir: Path, repo: str) -> str | None:
    """The commit last applied from `repo`, or None when the node runs
    something else (a directory, another repository) or nothing."""
    record = last_applied(state_dir) or {}
    source = record.get("source") or {}
    spec = source.get("spec") or {}
    if spec.get("kind") != "git" or not _same_repo(str(spec.get("repo", "")), repo):
        return None
    return recorded_commit(source)


def _same_repo(a: str, b: str) -> bool:
    if "://" in a or "://" in b or a.startswith("git@") or b.startswith("git@"):
        return a.rstrip("/") == b.rstrip("/")
    return os.path.realpath(a) == os.path.realpath(b)


def timed(
    state_dir: Path,
    trigger: str,
    run: Callable[[], T],
    describe: Callable[[T], PassRecord],
    on_error: Callable[[BaseException], PassRecord | None],
) -> T:
    """Run one reconcile and append its record, whether it succeeds or raises.
    `describe`/`on_error` build the record (on_error None: nothing to record);
    its time fields are filled here."""
    started, began = now_iso(), time.monotonic()
    try:
        result = run()
    except Exception as exc:
        record = on_error(exc)
        if record is not None:
            _append_quietly(state_dir, _stamped(record, started, began, trigger))
        raise
    _append_quietly(state_dir, _stamped(describe(result), started, began, trigger))
    return result


def _stamped(record: PassRecord, started: str, began: float, trigger: str) -> PassRecord:
    return replace(
        record,
        started=started,
        duration_s=round(time.monotonic() - began, 4),
        trigger=record.trigger or trigger,
    )


def _append_quietly(state_dir: Path, record: PassRecord) -> None:
    with contextlib.suppress(OSError):  # a report: never the reason a reconcile fails
        append(state_dir, record)


def summary(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many of the recorded reconciles ended in each result."""
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r.get("result"))] = counts.get(str(r.get("result")), 0) + 1
    return counts


__all__ = [
    "HISTORY_LEN",
    "PassRecord",
    "StateWriteError",
    "append",
    "applied_commit",
    "last_applied",
    "load",
    "now_iso",
    "read_json",
    "summary",
    "timed",
    "watch_state",
    "write_applied",
    "write_json",
    "write_watch_state",
]
