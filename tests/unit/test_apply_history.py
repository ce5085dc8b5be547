"""A one-shot apply's history row: a reconcile that fails is recorded; a
saved plan refused before anything changed is no reconcile, and is not."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from reconciler.cli.status_history import recorded
from reconciler.engine import history
from reconciler.engine.reconcile import PlanRefused, ReconcileError
from reconciler.plan.plan import PlanFileError


@pytest.mark.parametrize(
    "exc",
    [
        PlanRefused("plan is stale: the kernel state changed since it was made; run --plan again"),
        PlanFileError("p.json: No such file or directory"),
    ],
)
def test_a_refused_saved_plan_leaves_no_row(tmp_path, exc):
    target = SimpleNamespace(state_dir=tmp_path)

    def refuse():
        raise exc

    with pytest.raises(type(exc)):
        recorded(target, refuse)
    assert history.load(tmp_path) == []


def test_a_failed_apply_is_recorded(tmp_path):
    target = SimpleNamespace(state_dir=tmp_path)

    def fail():
        raise ReconcileError("tc/eth0/ingress: attach failed")

    with pytest.raises(ReconcileError):
        recorded(target, fail)
    rows = history.load(tmp_path)
    assert [(r["result"], r["error"]) for r in rows] == [
        ("failed", "tc/eth0/ingress: attach failed")
    ]
