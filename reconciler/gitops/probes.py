"""Liveness and readiness of the watcher, for whatever runs it (a
DaemonSet's probes, a supervisor's health script), served beside the
metrics on `--metrics-addr`.

`/readiness` answers 200 while the node runs its source: the last pass
converged it (applied, repaired, or found nothing to do). Before the first
such pass, after a failed one (the node held at the last good source), after
a blocked one (objects not ours kept some interfaces from our programs: the
rest runs the source, those interfaces do not) and while only drift is
reported (`--detect-only`) it answers 503 with the pass's `reason`, so a
rolling update of the agent stops at a node the new version cannot converge.

`/liveness` answers 200 while the watcher's loop turns: its last pass ended
(or it started) within the window, three drift-check intervals or three of
the longest retry delays, whichever is longer, plus the time one pass may
take. Past that the loop is stuck, and 503 asks for a restart.

`/healthz` and `/livez` answer as kube-proxy's health server does, for
load balancers that ask every node whether it proxies services
(bpfKubeProxyHealthzPort): 200 while the loop turns and the node runs a
converged state, also one a failed pass held it at (a bad push must not
take every node out of every load balancer at once), one a blocked pass
applied (its services are proxied; only the blocked pod interfaces lack
ours, which readiness and the metrics report) and, under `--detect-only`,
the one the node was last applied (a new commit or drift only reported
leaves the datapath as it was); 503 before the first
such pass, after a pass that left the node in no known state, or once the
loop is stuck. `lastUpdated` is when a pass last left the node converged.

Every body is JSON. The decisions are pure functions of what the
watcher reported and the clocks; `Probes` keeps that state for the server's
threads.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.engine.history import BLOCKED
from reconciler.gitops.triggers import Backoff

# Results of a pass after which the node runs its source.
CONVERGED = frozenset({"applied", "repaired", "no-op"})
# Results after which the node proxies its services as its source says.
PROXIES = CONVERGED | {BLOCKED}
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


def readiness(
    last_result: str | None, source: str | None, passes: int, error: str = ""
) -> Answer:
    """`error`: the last pass's, the reason a pass that did not converge the
    node gives (absent while ready)."""
    ready = last_result in CONVERGED
    body: dict[str, Any] = {
        "ready": ready, "passes": passes, "last_result": last_result, "source": source,
    }  # fmt: skip
    if not ready:
        body["reason"] = error or _NOT_READY.get(last_result or "", "no pass has ended yet")
    return Answer(200 if ready else 503, body)


# Why a node is not ready after a pass that gave no error of its own.
_NOT_READY = {
    "drift": "only reporting (--detect-only): drift found and left",
    "planned": "only reporting (--detect-only): a new source planned, not applied",
}


def proxy_health(
    now: float, converged_at: float | None, converged: bool, alive: bool, node: bool = True
) -> Answer:
    """kube-proxy's /healthz (`node`: with nodeEligible) or /livez answer.
    Times are wall-clock seconds."""
    healthy = converged and alive and converged_at is not None
    body: dict[str, Any] = {
        "lastUpdated": _iso(converged_at) if converged_at is not None else None,
        "currentTime": _iso(now),
    }
    if node:
        body["nodeEligible"] = True  # (no Node object here: never draining)
    return Answer(200 if healthy else 503, body)


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat(timespec="milliseconds")


class Probes:
    """What the two endpoints answer, from the passes the watcher reports."""

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock, self._wall = clock, wall
        self.window = liveness_window(interval)
        self._lock = threading.Lock()
        self._last_beat = clock()  # starting counts: the first pass has its window
        self._last_result: str | None = None
        self._error = ""
        self._source: str | None = None
        self._passes = 0
        self._converged = False  # the last pass left the node at a converged state
        self._converged_at: float | None = None  # (wall clock)

    def observe_pass(
        self, result: str, source: str | None, held: bool = False, error: str = ""
    ) -> None:
        """A pass ended with `result` (and `error`); `held`: the node stays
        at a source it was converged to (a failed pass held it at its last
        good one; a --detect-only pass only reported)."""
        with self._lock:
            self._last_beat = self._clock()
            self._last_result = result
            self._error = error
            self._source = source
            self._passes += 1
            self._converged = result in PROXIES or held
            if self._converged:
                self._converged_at = self._wall()

    def liveness(self) -> Answer:
        with self._lock:
            return liveness(self._clock(), self._last_beat, self.window, self._passes)

    def readiness(self) -> Answer:
        with self._lock:
            return readiness(self._last_result, self._source, self._passes, self._error)

    def proxy_health(self, node: bool = True) -> Answer:
        with self._lock:
            alive = liveness(self._clock(), self._last_beat, self.window, self._passes).status
            return proxy_health(
                self._wall(), self._converged_at, self._converged, alive == 200, node
            )
