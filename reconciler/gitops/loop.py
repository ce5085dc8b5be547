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
import os
import queue
import signal
import sys
import threading
from collections.abc import Callable

import watchfiles

from reconciler.engine.spec import link_changes

# The netlink events that can change what compile decides.
SETTLE_SECONDS = 0.2  # one pod creation is a burst of events: reconcile once
FILE_SETTLE_SECONDS = 0.05  # watchfiles already groups a checkout's writes


# An event: why to look again, and which files changed (None: look at everything).
Event = tuple[str, frozenset[str] | None]
STOP: Event = ("stop", None)


def _watch_files(path: str, events: queue.Queue[Event], stop: threading.Event) -> None:
    root = os.path.abspath(path)

    def relevant(_change: object, name: str) -> bool:
        # YAML files, and what may be a directory (removed or renamed ones
        # take their files along); the drift timer's full reads catch the rest
        if "/." in os.path.abspath(name)[len(root) :]:
            return False  # hidden, as the source itself skips (.git among them)
        return name.endswith((".yaml", ".yml")) or "." not in os.path.basename(name)

    for changes in watchfiles.watch(path, stop_event=stop, watch_filter=relevant):
        events.put(("config changed", frozenset(os.path.abspath(p) for _, p in changes)))


def _watch_links(netns: str | None, events: queue.Queue[Event]) -> None:
    for _ in link_changes(netns):
        events.put(("interfaces changed", None))


def _start(target: Callable[..., None], *args: object) -> None:
    # Daemon threads: both block in the kernel or in watchfiles until the
    # process is stopped, which is how --watch ends.
    threading.Thread(target=target, args=args, daemon=True).start()


IDLE_SECONDS = 0.5  # this long without events after a pass: time for housekeeping


def watch(
    args: argparse.Namespace,
    reconcile: Callable[[frozenset[str] | None], int],
    clock: Callable[[], float],
    on_idle: Callable[[], None] = lambda: None,
) -> int:
    """Run until stopped. `reconcile(changed)` gets the files that changed since
    the last pass, or None when everything must be looked at again (start-up,
    interface events, the drift timer)."""
    interval = max(1.0, float(args.interval))
    events: queue.Queue[Event] = queue.Queue()
    stop = threading.Event()

    # SIGTERM (systemd, kubelet) ends the watch between passes, never in the
    # middle of an apply, and lets exit handlers write the held-back caches.
    def on_term(*_: object) -> None:
        stop.set()
        events.put(STOP)

    signal.signal(signal.SIGTERM, on_term)
    if not args.repo:
        _start(_watch_files, args.config, events, stop)
    _start(_watch_links, args.netns, events)
    source = f"repo {args.repo} @ {args.ref}" if args.repo else args.config
    print(f"watching {source} and the interfaces; drift check every {interval:g}s", file=sys.stderr)
    reconcile(None)
    try:
        while not stop.is_set():
            try:
                event = events.get(timeout=min(IDLE_SECONDS, interval))
            except queue.Empty:
                on_idle()  # e.g. write caches the pass held back
                try:
                    event = events.get(timeout=max(0.0, interval - IDLE_SECONDS))
                except queue.Empty:
                    event = ("drift check", None)
            if stop.is_set():
                break
            reason, changed = event
            settle = SETTLE_SECONDS if changed is None else FILE_SETTLE_SECONDS
            started = clock()
            while clock() - started < settle:  # coalesce the rest of a burst
                try:
                    _, more = events.get(timeout=settle)
                except queue.Empty:
                    break
                changed = None if changed is None or more is None else changed | more
            if stop.is_set():
                break
            print(f"reconciling: {reason}", file=sys.stderr)
            began = clock()
            reconcile(changed)
            print(f"pass done in {clock() - began:.3f}s", file=sys.stderr)
        print("stopped", file=sys.stderr)
        on_idle()
        return 0
    finally:
        stop.set()
