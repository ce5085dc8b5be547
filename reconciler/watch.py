"""`--watch`: reconcile again whenever anything may have changed.

Level-triggered, like a controller: events only say "look again"; each pass
plans and applies the whole state. Triggers: file changes under --config
(watchfiles), a new commit on --repo/--ref (polled), and a drift timer that
also catches interface events and hand edits.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def watch(
    args: argparse.Namespace, reconcile: Callable[[], int], clock: Callable[[], float]
) -> int:
    import watchfiles

    interval = max(1.0, float(args.interval))
    print(
        f"watching {'repo ' + args.repo if args.repo else args.config}; "
        f"drift check every {interval:g}s",
        file=sys.stderr,
    )
    reconcile()
    if args.repo:
        import time

        while True:
            time.sleep(interval)
            reconcile()
    for _changes in watchfiles.watch(
        args.config,
        rust_timeout=int(interval * 1000),
        yield_on_timeout=True,
        watch_filter=lambda _c, path: path.endswith((".yaml", ".yml")),
    ):
        reconcile()
    return 0
