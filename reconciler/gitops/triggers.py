"""What wakes the watcher. Each trigger runs in a daemon thread and only puts
an Event on the queue: "look again", with the files that changed when it
knows them. The watcher decides what a pass does.

- files: changes under --config (watchfiles);
- links: link and address events in the managed network namespace;
- poll: a followed repository's ref, fetched every --poll-interval;
- wake: the post-receive hook's HTTP POST (/wake) after a push.
The drift timer is the loop's own queue timeout.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Event:
    reason: str
    changed: frozenset[str] | None = None  # None: look at everything
    fetch: bool = False  # a remote repository should be fetched before the pass
    links: frozenset[str] = frozenset()  # links netlink announced (new or changed)


STOP = Event("stop")
LINKS_CHANGED = "interfaces changed"
Queue = queue.Queue[Event]


def start(target: Callable[..., None], *args: object, name: str) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    thread.start()
    return thread


def watch_files(path: str, events: Queue, stop: threading.Event) -> None:
    import watchfiles

    root = os.path.abspath(path)

    def relevant(_change: object, name: str) -> bool:
        # YAML files, and what may be a directory (removed or renamed ones
        # take their files along); the drift timer's full reads catch the rest
        if "/." in os.path.abspath(name)[len(root) :]:
            return False  # hidden, as the source itself skips (.git among them)
        return name.endswith((".yaml", ".yml")) or "." not in os.path.basename(name)

    for changes in watchfiles.watch(path, stop_event=stop, watch_filter=relevant, debounce=50):
        events.put(Event("config changed", frozenset(os.path.abspath(p) for _, p in changes)))


def watch_links(link_changes: Callable[[], object], events: Queue) -> None:
    """`link_changes()` yields once per batch of link events, with the names
    of the links announced (engine.spec)."""
    for names in link_changes():  # type: ignore[attr-defined]
        events.put(Event(LINKS_CHANGED, links=frozenset(names)))


def poll(
    probe: Callable[[], str],
    events: Queue,
    stop: threading.Event,
    every: float,
    max_backoff: float = 300.0,
) -> None:
    """Call `probe()` (fetch, then the ref's commit) every `every` seconds and
    wake the loop when the answer changes. A failing probe (the remote is
    unreachable) is logged and retried, backing off to `max_backoff`."""
    last: str | None = None
    delay = every
    while not stop.wait(delay):
        try:
            now = probe()
        except Exception as exc:  # noqa: BLE001 - a poll must never end
            delay = min(max_backoff, delay * 2)
            log.warning("poll failed (next try in %gs): %s", delay, exc)
            continue
        delay = every
        if last is not None and now != last:
            events.put(Event("new commit (poll)"))
        last = now


class _WakeHandler(BaseHTTPRequestHandler):
    events: Queue

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 65536)).decode(errors="replace") if length else ""
        if self.path.rstrip("/") != "/wake":
            self.send_error(404, "POST /wake")
            return
        refs = " ".join(line.split()[-1] for line in body.splitlines() if line.split())
        self.events.put(Event(f"push {refs}".strip(), fetch=True))
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("wake: " + fmt, *args)


def serve_wake(addr: str, events: Queue) -> ThreadingHTTPServer:
    """Listen on HOST:PORT for the post-receive hook's POST /wake (a body of
    `old new ref` lines, as the hook reads them)."""
    host, port = split_addr(addr)
    handler = type("WakeHandler", (_WakeHandler,), {"events": events})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    start(server.serve_forever, name="wake")
    return server


def split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError(f"{addr!r}: expected HOST:PORT (a port from 0 to 65535)")
    return host.strip("[]") or "0.0.0.0", int(port)


class Backoff:
    """Retry delays after failed passes: doubling from `first` to `cap`,
    reset by a pass that succeeds."""

    def __init__(self, first: float = 1.0, cap: float = 60.0) -> None:
        self.first, self.cap = first, cap
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return min(self.cap, self.first * 2 ** (self.failures - 1))

    def succeeded(self) -> None:
        self.failures = 0


def monotonic() -> float:
    return time.monotonic()
