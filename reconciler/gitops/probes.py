"""Liveness and readiness of the watcher, for whatever runs it (a
DaemonSet's probes, a supervisor's health script), served beside the
metrics on `--metrics-addr`.

`/readiness` answers 200 while the node runs its source: the last pass
converged it (applied, repaired, or found nothing to do). Before the first
such pass, after a failed one (the node held at the last good source) and
while only drift is reported (`--detect-only`) it answers 503, so a rolling
update of the agent stops at a node the new version cannot converge.

`/liveness` answers 200 while the watcher's loop turns: its last pass ended
(or it started) within the window, three drift-check intervals or three of
the longest retry delays, whichever is longer, plus the time one pass may
take. Past that the loop is stuck, and 503 asks for a restart.

Both bodies are JSON. The decisions are pure functions of what the
watcher reported and the clock; `Probes` keeps that state for the server's
threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.gitops.triggers import Backoff

# Results of a pass after which the node runs its source.
CONVERGED = frozenset({"applied", "repaired", "no-op"})
# What one pass may take (a cold build of every program set, a large apply).
PASS_ALLOWANCE_S = 600.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int  # 200 or 503
    body: dict[str, Any]


def liveness_window(interval: float) -> float:
    """Seconds the loop may go without ending a pass before it counts as stuck."""
    return 3 * max(interval, Backoff().cap) + PASS_ALLOWANCE_S


def liveness(now: float, last_beat: float, window: float, passes: int) -> Answer:
    quiet = max(0.0, now - last_beat)
    body = {"alive": quiet <= window, "passes": passes, "seconds_since_last_pass": round(quiet, 3),
            "window_seconds": window}  # fmt: skip
    return Answer(200 if body["alive"] else 503, body)


def readiness(last_result: str | None, source: str | None, passes: int) -> Answer:
    ready = last_result in CONVERGED
    body = {"ready": ready, "passes": passes, "last_result": last_result, "source": source}
    return Answer(200 if ready else 503, body)


class Probes:
    """What the two endpoints answer, from the passes the watcher reports."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.window = liveness_window(interval)
        self._lock = threading.Lock()
        self._last_beat = clock()  # starting counts: the first pass has its window
        self._last_result: str | None = None
        self._source: str | None = None
        self._passes = 0

    def observe_pass(self, result: str, source: str | None) -> None:
        with self._lock:
            self._last_beat = self._clock()
            self._last_result = result
            self._source = source
            self._passes += 1

    def liveness(self) -> Answer:
        with self._lock:
            return liveness(self._clock(), self._last_beat, self.window, self._passes)

    def readiness(self) -> Answer:
        with self._lock:
            return readiness(self._last_result, self._source, self._passes)
