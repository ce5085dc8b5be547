"""The `reconcile` console script: Ctrl-C while the command's modules still
load is an interruption (exit 130), as it is once a mode runs, not a
traceback. Only the standard library is imported before that guard."""

from __future__ import annotations

import os
import sys

EXIT_INTERRUPTED = 130  # reconciler.cli.exit_codes, not imported before the guard


def entry() -> None:
    try:
        from reconciler.cli.main import entry as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    run()
