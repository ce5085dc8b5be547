"""`--watch`: reconcile again whenever anything may have changed.

Level-triggered, like a controller: events only say "look again"; each pass
plans and applies the whole state. Triggers:
- file changes under --config (watchfiles);
- link and address events in the managed network namespace (netlink), so a
  new pod's veth is attached as soon as it appears;
- a drift timer (--interval), which also polls --repo for new commits and
  catches hand edits of our maps and filters.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from collections.abc import Callable

# The netlink events that can change what compile decides.
LINK_EVENTS = frozenset({"RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWADDR", "RTM_DELADDR"})
SETTLE_SECONDS = 0.2  # one pod creation is a burst of events: reconcile once


def _watch_files(path: str, events: queue.Queue[str], stop: threading.Event) -> None:
    import watchfiles

    for _changes in watchfiles.watch(
        path,
        stop_event=stop,
        watch_filter=lambda _change, name: name.endswith((".yaml", ".yml")),
    ):
        events.put("config changed")


def _watch_links(netns: str | None, events: queue.Queue[str]) -> None:
    from reconciler.netlink import route

    with route(netns) as ipr:
        ipr.bind()
        while True:
            if any(msg.get("event") in LINK_EVENTS for msg in ipr.get()):
                events.put("interfaces changed")


def _start(target: Callable[..., None], *args: object) -> None:
    # Daemon threads: both block in the kernel or in watchfiles until the
    # process is stopped, which is how --watch ends.
    threading.Thread(target=target, args=args, daemon=True).start()


def watch(
    args: argparse.Namespace, reconcile: Callable[[], int], clock: Callable[[], float]
) -> int:
    interval = max(1.0, float(args.interval))
    events: queue.Queue[str] = queue.Queue()
    stop = threading.Event()
    if not args.repo:
        _start(_watch_files, args.config, events, stop)
    _start(_watch_links, args.netns, events)
    source = f"repo {args.repo} @ {args.ref}" if args.repo else args.config
    print(f"watching {source} and the interfaces; drift check every {interval:g}s", file=sys.stderr)
    reconcile()
    try:
        while True:
            try:
                reason = events.get(timeout=interval)
            except queue.Empty:
                reason = "drift check"
            started = clock()
            while clock() - started < SETTLE_SECONDS:  # coalesce the rest of a burst
                try:
                    events.get(timeout=SETTLE_SECONDS)
                except queue.Empty:
                    break
            print(f"reconciling: {reason}", file=sys.stderr)
            reconcile()
    finally:
        stop.set()
