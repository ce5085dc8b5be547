"""The handlers behind reconciler.cli.logs: timestamped lines, and the
progress line on a terminal. Loaded only when a run keeps log records."""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

LOGGER = "reconciler"


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class Progress(logging.Handler):
    """Stage messages (records marked `progress`) as one line on a terminal,
    rewritten in place with the elapsed time, which a ticker keeps moving
    during a long stage; cleared when the run ends."""

    TICK = 0.5

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.start = time.monotonic()
        self.message = ""
        self.ticking = threading.Event()
        self.addFilter(lambda record: bool(getattr(record, "progress", False)))

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock():
            self.message = record.getMessage()
            self._draw()
        if not self.ticking.is_set():
            self.ticking.set()
            threading.Thread(target=self._tick, daemon=True).start()

    def _lock(self) -> threading.RLock:
        assert self.lock is not None  # logging.Handler.__init__ made it
        return self.lock

    def _draw(self) -> None:
        elapsed = time.monotonic() - self.start
        self.stream.write(f"\r\x1b[K[{elapsed:6.1f}s] {self.message}"[:200])
        self.stream.flush()

    def _tick(self) -> None:
        while self.ticking.is_set():
            time.sleep(self.TICK)
            with self._lock():
                if self.message:
                    self._draw()

    def clear(self) -> None:
        self.ticking.clear()
        with self._lock():
            if self.message:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.message = ""


def install(level: int, stream: TextIO) -> logging.Logger:
    """Leveled, timestamped logs on `stream`; and on a terminal, unless the
    logs already say it (-v), a progress line for long stages."""
    log = logging.getLogger(LOGGER)
    for handler in list(log.handlers):  # main() may run more than once (tests)
        log.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(level)
    log.addHandler(handler)
    isatty = getattr(stream, "isatty", None)
    if level > logging.INFO and isatty is not None and isatty():
        log.addHandler(Progress(stream))
        level = logging.INFO
    log.setLevel(level)
    log.propagate = False
    return log


def finish() -> None:
    """Clear a progress line before the result is printed."""
    for handler in logging.getLogger(LOGGER).handlers:
        if isinstance(handler, Progress):
            handler.clear()


def set_level(level: int) -> None:
    """Keep logs of `level` and above from now on (the watcher follows
    logSeverityScreen); a progress line, if any, still sees its stages."""
    log = logging.getLogger(LOGGER)
    progress = False
    for handler in log.handlers:
        if isinstance(handler, Progress):
            progress = True
        else:
            handler.setLevel(level)
    log.setLevel(min(level, logging.INFO) if progress else level)
