"""Loggers that import `logging` only once a record could be kept.

A one-shot run at the default level keeps warnings and errors only, and
what the engine logs is progress at INFO: importing logging (and traceback
with it) for records that are dropped anyway is a measurable part of a
no-op plan (bench/layout_bench.py). A Logger here hands its records to
logging's logger of the same name, except while the CLI has deferred its
set-up (a run that keeps warnings only, not on a terminal): then records
below that level are dropped, as the configured logger would drop them,
and the first one at or above it runs the set-up before it is logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

# Until the CLI defers its set-up, every record goes to logging: library
# callers and tests see what they would with plain logging.
_threshold = 0
_setup: Callable[[], object] | None = None


def defer(threshold: int, setup: Callable[[], object]) -> None:
    """Records below `threshold` are dropped until the first record at or
    above it, which runs `setup` (configuring logging) before it is logged."""
    global _threshold, _setup
    _threshold, _setup = threshold, setup


def forward_all() -> None:
    """Every record goes to logging (which the caller has configured)."""
    global _threshold, _setup
    _threshold, _setup = 0, None


class Logger:
    """The part of logging.Logger the engine uses."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        global _threshold, _setup
        if level < _threshold:
            return
        if _setup is not None:
            setup, _setup, _threshold = _setup, None, 0
            setup()
        import logging

        kwargs.setdefault("stacklevel", 3)  # the caller of info() etc., not this module
        logging.getLogger(self.name).log(level, msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(DEBUG, msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(INFO, msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(WARNING, msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(ERROR, msg, *args, **kwargs)


def get(name: str) -> Logger:
    return Logger(name)
