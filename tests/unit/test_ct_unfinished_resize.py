"""What a plan says of a conntrack resize an apply was killed in
(reconciler.engine.conntrack_scaling.unfinished_resize): only while the old
table is still retired and old programs are still pinned beside the new,
where a resize planned on top would carry only what they recorded so far."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.datapath import ct_handover
from reconciler.engine.conntrack_scaling import unfinished_resize


def _node(root: Path, retired: bool, **builds: int) -> str:
    for name, count in builds.items():
        for i in range(count):
            (root / "progs" / f"{name}-{i:012x}").mkdir(parents=True)
    if retired:
        pin = ct_handover.retired_pin(str(root))
        pin.parent.mkdir(parents=True)
        pin.touch()
    return str(root)


@pytest.mark.parametrize(
    ("retired", "tc", "host"),
    [(False, 2, 0), (True, 1, 0), (True, 1, 1), (True, 0, 0)],
    ids=["nothing retired", "one tc build", "one build of each", "no build"],
)
def test_nothing_is_said_without_a_retired_table_and_old_programs(
    tmp_path: Path, retired: bool, tc: int, host: int
) -> None:
    assert unfinished_resize(_node(tmp_path, retired, tc=tc, host=host)) is None


@pytest.mark.parametrize(("tc", "host"), [(2, 0), (1, 2)], ids=["old tc set", "old host set"])
def test_a_retired_table_with_old_programs_pinned_is_said(
    tmp_path: Path, tc: int, host: int
) -> None:
    said = unfinished_resize(_node(tmp_path, True, tc=tc, host=host))
    assert said is not None
    assert said.startswith("conntrack: a resize was interrupted while programs of its old table")
    assert "if this plan resizes the table again" in said
    assert "apply the unchanged size first to finish it" in said
