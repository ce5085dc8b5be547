"""Logs on stderr: timestamped (UTC) and leveled, for journald and humans alike.

Results (plans, diagnostics, status) are output, not logs: they go to
stdout, or stderr for errors, as before. Logs say what the run is doing.
A run that would keep warnings only, on a stream that is not a terminal,
sets logging up when its first warning comes (reconciler.logsink): most
runs never import logging at all."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, TextIO

from reconciler import logsink
from reconciler.logsink import DEBUG, ERROR, INFO, WARNING

if TYPE_CHECKING:
    import logging

LEVELS = {"error": ERROR, "warning": WARNING, "info": INFO, "debug": DEBUG}


def level_of(args: argparse.Namespace) -> int:
    """--log-level, else -v/-vv; by default warnings, and for --watch (a
    long-running agent whose passes are its output) info."""
    if args.log_level:
        return LEVELS[args.log_level]
    quiet = INFO if getattr(args, "watch", False) else WARNING
    return {0: quiet, 1: INFO}.get(args.verbose, DEBUG)


def use_color(args: argparse.Namespace, stream: object = None) -> bool:
    """Colour only on a terminal, never with --no-color or $NO_COLOR (no-color.org)."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(
        not args.no_color and not os.environ.get("NO_COLOR") and isatty is not None and isatty()
    )


def setup(args: argparse.Namespace, stream: TextIO | None = None) -> logging.Logger | None:
    """Leveled, timestamped logs on stderr; and on a terminal, unless the
    logs already say it (-v), a progress line for long stages. Returns the
    configured logger, or None when the set-up waits for the first record
    worth keeping."""
    stream = sys.stderr if stream is None else stream
    level = level_of(args)
    isatty = getattr(stream, "isatty", None)
    progress = level > INFO and isatty is not None and isatty()
    if "logging" in sys.modules or level <= INFO or progress:
        from reconciler.cli.log_output import install

        logsink.forward_all()
        return install(level, stream)
    kept = stream

    def later() -> None:
        from reconciler.cli.log_output import install

        install(level, kept)

    logsink.defer(level, later)
    return None


def finish() -> None:
    """Clear a progress line before the result is printed."""
    if "logging" in sys.modules:
        from reconciler.cli.log_output import finish as clear

        clear()
