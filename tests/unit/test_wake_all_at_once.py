"""post-receive wakes every node at once: nodes that hang cost the pusher
one timeout in all, not one each, and a URL given twice wakes its node once
(the shell hook with curl, and the Python one where curl is missing)."""

from __future__ import annotations

import queue
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from reconciler.cli import hooks_cmd
from reconciler.gitops import triggers
from reconciler.gitops.hooks import WAKE_TIMEOUT_S, HookSet

HUNG = 4
LINES = "0" * 40 + " " + "1" * 40 + " refs/heads/main\n"


@contextmanager
def nodes() -> Iterator[tuple[list[str], queue.Queue[triggers.Event]]]:
    """A live watcher's URL (given twice) and HUNG that accept and never answer."""
    events: queue.Queue[triggers.Event] = queue.Queue()
    http = triggers.serve_wake("127.0.0.1:0", events)
    with ExitStack() as stack:
        stack.callback(http.shutdown)
        hung = []
        for _ in range(HUNG):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            s.listen(4)
            hung.append(f"http://127.0.0.1:{s.getsockname()[1]}")
        live = f"http://127.0.0.1:{http.server_address[1]}"
        yield [live, *hung, live + "/"], events


def _woken_once(events: queue.Queue[triggers.Event]) -> None:
    assert events.get(timeout=5).reason == "push refs/heads/main"
    time.sleep(0.2)
    assert events.empty()  # the URL given twice: one wake-up


def test_the_shell_hook_wakes_every_node_at_once(tmp_path):
    with nodes() as (urls, events):
        hook = tmp_path / "post-receive"
        hook.write_text(HookSet(Path("."), tuple(urls)).scripts("python3", ".")["post-receive"])
        began = time.monotonic()
        ran = subprocess.run(["/bin/sh", str(hook)], input=LINES, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        took = time.monotonic() - began
        assert ran.returncode == 0 and ran.stderr.endswith("reconcile: woke 1 node(s)\n"), ran
        assert ran.stderr.count(": no answer; ") == HUNG, ran.stderr
        assert took < 2 * WAKE_TIMEOUT_S, f"{took:.1f}s for {HUNG} hung nodes"
        _woken_once(events)


def test_the_python_hook_wakes_every_node_at_once(capsys):
    with nodes() as (urls, events):
        began = time.monotonic()
        assert hooks_cmd.post_receive(LINES.splitlines(), urls) == 0
        took = time.monotonic() - began
        err = capsys.readouterr().err
        assert err.endswith("reconcile: woke 1 node(s)\n") and err.count("could not wake") == HUNG
        assert took < 2 * WAKE_TIMEOUT_S, f"{took:.1f}s for {HUNG} hung nodes"
        _woken_once(events)
