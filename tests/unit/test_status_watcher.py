"""--status tells a running watcher from one that stopped or was killed, and
a failed reconcile that changed nothing from a node in sync."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reconciler.cli.commands import render_sync
from reconciler.cli.status_history import add_history, first_words, render_history
from reconciler.engine import history

ENDPOINT = {"serves": "metrics (/metrics)", "address": "*:9091", "listening": True}


def watch_state(state_dir: Path, pid: int, state: str = "ok") -> None:
    history.write_watch_state(state_dir, {
        "pid": pid, "updated": "2026-12-05T21:00:00Z", "state": state, "drift": ["tc/eth0/ingress"],
        "endpoints": [ENDPOINT], "health_checks": [],
    })  # fmt: skip


def test_a_watcher_whose_process_is_gone_is_not_running(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    watch_state(tmp_path, int(done.stdout))  # that pid has exited
    status = add_history({"last_apply": None}, tmp_path)
    assert status["watch"]["running"] is False and status["watch"]["state"] == "not running"
    assert status["watch"]["endpoints"][0]["listening"] is False
    text = render_history(status)
    assert "Watcher: not running (its process is gone: killed?); last pass 2026-12-05" in text
    assert "metrics" not in text
    assert "Drift at the watcher's last pass: 1 object(s): tc/eth0/ingress" in text


def test_a_pid_that_is_not_a_watcher_is_not_one(tmp_path: Path) -> None:
    import os

    watch_state(tmp_path, os.getpid())  # alive, but pytest, not reconcile --watch
    assert add_history({"last_apply": None}, tmp_path)["watch"]["running"] is False


def test_a_running_watcher_is_shown_with_what_it_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--watch"])
    try:
        watch_state(tmp_path, proc.pid)
        status = add_history({"last_apply": None}, tmp_path)
        assert status["watch"]["running"] is True
        text = render_history(status)
        assert "Watcher: ok, last pass 2026-12-05T21:00:00Z" in text
        assert "metrics (/metrics) on *:9091" in text and "NOT LISTENING" not in text
    finally:
        proc.kill()
        proc.wait()


def test_a_watcher_that_said_it_stopped(tmp_path: Path) -> None:
    watch_state(tmp_path, 1, state="stopped")
    state = json.loads((tmp_path / history.WATCH).read_text())
    history.write_watch_state(tmp_path, {**state, "stopped": "2026-12-05T21:05:00Z"})
    text = render_history(add_history({"last_apply": None}, tmp_path))
    assert "Watcher: not running (stopped 2026-12-05T21:05:00Z); last pass" in text


def test_a_failed_reconcile_that_changed_nothing_is_said_beside_the_sync() -> None:
    sync = {"state": "in sync", "changes": 0, "warnings": [], "last_failed": {
        "started": "2026-12-05T21:00:00Z", "trigger": "apply",
        "error": "3 error(s) in the configuration\nmore"}}  # fmt: skip
    assert render_sync(sync).splitlines()[1:] == [
        "In sync: the kernel matches the source of the last apply.",
        "Last reconcile failed (apply, 2026-12-05T21:00:00Z), nothing changed by it: 3 error(s) "
        "in the configuration",
    ]


def test_an_error_that_announces_a_list_is_shown_with_its_first_entry() -> None:
    listed = "2 error(s) in the configuration:\n  bad.yaml:6: a: b\n  bad.yaml:7: c: d\n"
    sync = {"state": "in sync", "changes": 0, "warnings": [], "last_failed": {
        "started": "2026-12-05T21:00:00Z", "trigger": "new commit (poll)", "error": listed}}
    assert render_sync(sync).splitlines()[-1] == (
        "Last reconcile failed (new commit (poll), 2026-12-05T21:00:00Z), nothing changed by "
        "it: 2 error(s) in the configuration: bad.yaml:6: a: b (+1 more)"
    )  # fmt: skip
    assert first_words("fetch failed\nfatal: x") == "fetch failed"
    assert first_words("one:\nonly entry") == "one: only entry"
    assert first_words("") == ""


def test_drift_is_said_as_a_difference_not_a_restoration() -> None:
    """The node may have moved (a pod's interface gone), not only the
    kernel: the changes are what the same source gives here now."""
    sync = {"state": "drifted", "changes": 46, "warnings": []}
    assert render_sync(sync).splitlines()[1:] == [
        "Drifted: the kernel differs from what the last applied source gives on this node "
        "now, by 46 change(s) (reconcile --plan shows them)."
    ]


def test_reconciles_that_began_in_one_second_are_newest_first(tmp_path: Path) -> None:
    # stamps have a second's resolution: an apply and the one after it often share one
    for result in ("applied", "no-op", "blocked", "failed"):
        history.append(tmp_path, history.PassRecord("2026-12-06T06:00:00Z", 0.1, "apply", result))
    history.append(tmp_path, history.PassRecord("2026-12-06T05:59:59Z", 0.1, "apply", "applied"))
    rows = add_history({"last_apply": None}, tmp_path)["history"]
    assert [r["result"] for r in rows] == ["failed", "blocked", "no-op", "applied", "applied"]
    assert rows[-1]["started"] == "2026-12-06T05:59:59Z"
