"""A watcher holding the node at its last good source after a failed pass:
when holding fails the same way (a refusal about the node, not the source),
the record says it once."""

from __future__ import annotations

from reconciler.engine.reconcile import ReconcileError
from reconciler.gitops.loop import Newest, Watcher


def _watcher(fails_with: str) -> Watcher:
    w = object.__new__(Watcher)
    w.good = Newest({"kind": "dir", "paths": ["."]}, lambda: None)  # type: ignore[arg-type, return-value]
    w._behind_the_node = lambda good: ""  # type: ignore[method-assign]

    def refuse(newest, changed):
        raise ReconcileError(fails_with)

    w._reconcile = refuse  # type: ignore[method-assign]
    return w


def test_the_same_refusal_while_holding_is_said_once():
    why = "tc/eth0/ingress prio 31232: a tc filter that is not ours holds our priority"
    record, plan = _watcher(why)._hold(why)
    assert (record.result, record.error, plan) == ("failed", why, None)


def test_another_failure_while_holding_is_said_beside_the_first():
    record, _ = _watcher("the last good source is gone")._hold("validation failed")
    assert record.error == "validation failed; holding: the last good source is gone"
