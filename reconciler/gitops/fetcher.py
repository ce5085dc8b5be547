"""Fetching a followed remote off the watcher's pass.

A fetch may take as long as git's timeout when the server hangs; the node
must not wait that long for anything else (a new pod's filters, a drift
repair). So one fetch at a time runs in a thread of its own: the pass and
the poll join the one in flight instead of starting another; the pass
waits only a short while for it and then goes on with the commits last
fetched. The fetch's end then wakes the loop (`on_end`), when a pass gave up
waiting for it or when its outcome (fetched or failed) differs from the
previous fetch's: a failure is reported by a pass, and so is a recovery.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.config.source import SourceError

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Attempt:
    """One fetch: `done` once it ended; `error` then says why it failed ("": fetched)."""

    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""
    awaited: bool = False  # a pass waits for it
    abandoned: bool = False  # a pass stopped waiting for it before it ended


class Fetcher:
    """`fetch()` raises SourceError when it fails. `on_result(error)` sees
    every fetch's outcome ("": fetched); `on_end(error)` is the wake-up
    described above."""

    def __init__(
        self,
        fetch: Callable[[], None],
        on_result: Callable[[str], None] = lambda error: None,
        on_end: Callable[[str], None] = lambda error: None,
    ) -> None:
        self._fetch, self._on_result, self._on_end = fetch, on_result, on_end
        self._lock = threading.Lock()
        self._current: Attempt | None = None
        self.last_error = ""  # the last fetch that ended: why it failed ("": fetched)

    def begin(self, by_pass: bool = False) -> Attempt:
        """The fetch in flight, started now when there is none; `by_pass`:
        a pass waits for it (and reports its outcome, or gives up)."""
        with self._lock:
            if self._current is None:
                self._current = Attempt()
                threading.Thread(target=self._run, args=(self._current,), daemon=True,
                                 name="fetch").start()  # fmt: skip
            self._current.awaited |= by_pass
            return self._current

    def give_up(self, attempt: Attempt) -> bool:
        """A pass stops waiting for `attempt`. True when it has ended after
        all (its outcome is `last_error`); else its end wakes the loop."""
        with self._lock:
            if attempt.done.is_set():
                return True
            attempt.abandoned = True
            return False

    def _run(self, attempt: Attempt) -> None:
        try:
            self._fetch()
            error = ""
        except SourceError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a fetch's thread must report, never vanish
            error = f"fetch failed: {exc}"
        with self._lock:
            changed = bool(error) != bool(self.last_error)
            attempt.error, self.last_error = error, error
            self._current = None
            attempt.done.set()
            wake = attempt.abandoned or (changed and not attempt.awaited)
        self._on_result(error)
        if wake:
            self._on_end(error)
