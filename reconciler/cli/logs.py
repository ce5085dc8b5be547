"""Logs on stderr: timestamped (UTC) and leveled, for journald and humans alike.

Results (plans, diagnostics, status) are output, not logs: they go to
stdout, or stderr for errors, as before. Logs say what the run is doing."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

LOGGER = "reconciler"
LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO,
          "debug": logging.DEBUG}  # fmt: skip


class _Formatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def level_of(args: argparse.Namespace) -> int:
    if args.log_level:
        return LEVELS[args.log_level]
    return {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)


def use_color(args: argparse.Namespace, stream: object = None) -> bool:
    """Colour only on a terminal, never with --no-color or $NO_COLOR (no-color.org)."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(
        not args.no_color and not os.environ.get("NO_COLOR") and isatty is not None and isatty()
    )


def setup(args: argparse.Namespace) -> logging.Logger:
    log = logging.getLogger(LOGGER)
    for handler in list(log.handlers):  # main() may run more than once (tests)
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(level_of(args))
    log.propagate = False
    return log
