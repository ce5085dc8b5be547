"""--status says the drift is unknown, not 0, when the watcher's last pass
failed before it compared the kernel with any source (a rewind refused and
no commit it may hold the node to): only a pass that planned found none."""

from __future__ import annotations

from pathlib import Path

from reconciler.cli.status_history import add_history, render_history
from reconciler.engine import history


def status_after(tmp_path: Path, **watch: object) -> str:
    history.write_watch_state(tmp_path, {"pid": 1, "state": "failing", "drift": [], **watch})
    return render_history(add_history({"last_apply": None}, tmp_path))


def test_a_pass_that_compared_nothing_reports_no_count(tmp_path: Path) -> None:
    text = status_after(tmp_path, drift_checked=False)
    assert "Drift at the watcher's last pass: not checked (the pass failed before it " in text
    assert "0 object(s)" not in text


def test_a_held_pass_reports_what_it_found(tmp_path: Path) -> None:
    text = status_after(tmp_path, drift_checked=True, drift=["tc/cali-front0/ingress"])
    assert "Drift at the watcher's last pass: 1 object(s): tc/cali-front0/ingress" in text


def test_a_record_of_an_older_watcher_counts_as_checked(tmp_path: Path) -> None:
    assert "Drift at the watcher's last pass: 0 object(s)" in status_after(tmp_path)
