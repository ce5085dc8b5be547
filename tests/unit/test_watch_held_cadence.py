"""A watcher whose source fails backs its retries off (up to a minute), but
the drift timer still runs: a node held at its last good source has its
drift repaired every --interval, as any node has."""

from __future__ import annotations

import queue
import time

from reconciler.gitops.loop import Watcher, WatchOptions


def _watcher(interval: float, retry_in: float) -> Watcher:
    w = object.__new__(Watcher)
    w.options = WatchOptions(interval=interval)
    w.events = queue.Queue()
    w.on_idle = lambda: None
    w.retry_at = time.monotonic() + retry_in
    return w


def test_a_backed_off_retry_waits_no_longer_than_the_drift_timer() -> None:
    began = time.monotonic()
    event = _watcher(interval=0.2, retry_in=5.0)._next_event()
    assert event.reason == "drift check" and time.monotonic() - began < 2.0


def test_a_retry_due_before_the_drift_timer_is_a_retry() -> None:
    began = time.monotonic()
    event = _watcher(interval=30.0, retry_in=0.1)._next_event()
    assert event.reason == "retry" and time.monotonic() - began < 2.0
