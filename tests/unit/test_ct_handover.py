"""The conntrack handover's decisions that need no kernel: when it is left
alone, and how a failure to end it is reported."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from reconciler.datapath import ct_handover
from reconciler.datapath.maps import nat_types as nat
from reconciler.engine import reconcile
from reconciler.plan.plan import Plan


def test_a_set_without_the_count_pin_has_no_handover_pending(tmp_path: Path) -> None:
    assert ct_handover.pending(tmp_path / "tc-0123456789ab") is False


@pytest.mark.parametrize(
    ("tc", "host"),
    [(0, 0), (2, 0), (1, 2), (0, 1), (1, 0), (1, 1)],
    ids=[
        "no tc set",
        "old tc set still pinned",
        "old host set still pinned",
        "host set alone",
        "one tc set, nothing pending",
        "one build, nothing pending",
    ],
)
def test_release_waits_for_one_build_of_the_tc_datapath_with_a_handover_pending(
    tmp_path: Path, tc: int, host: int
) -> None:
    """Ends nothing (and opens no pin) unless exactly one tc set and at most
    one host set are pinned, and one of them still reaches an old table."""
    for name, count in (("tc", tc), ("host", host)):
        for i in range(count):
            (tmp_path / "progs" / f"{name}-{i:012x}").mkdir(parents=True)
    (tmp_path / "progs" / "tmp-tc-0123456789ab-42").mkdir(parents=True)  # a build under way
    assert ct_handover.release(str(tmp_path)) is None


def test_a_failure_ending_the_handover_fails_the_apply_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(root: str) -> int:
        raise OSError(5, "bpf_map_update_elem: Input/output error")

    monkeypatch.setattr(ct_handover, "release", broken)
    plan = Plan(node="n1", source={}, bpffs_root=str(tmp_path), observed_fingerprint="", changes=())
    target = SimpleNamespace(bpffs_root=str(tmp_path), netns=None)
    with pytest.raises(reconcile.ReconcileError) as err:
        reconcile.execute(plan, target)  # type: ignore[arg-type]
    assert str(err.value) == (
        "apply failed ending the conntrack handover: "
        "[Errno 5] bpf_map_update_elem: Input/output error"
    )


def _val(created: int, seen: int, flags: int) -> bytes:
    """A struct rcl_ct_val (a forward entry) with these times and flags."""
    return nat.CT_VAL.pack(created, seen, 1, 0, bytes(4), bytes(4), bytes(2), bytes(2), 1, flags)


EST, FIN = 2, 4  # RCL_CT_EST, RCL_CT_FIN


@pytest.mark.parametrize(
    ("old", "new", "carried"),
    [
        (_val(10, 20, 0), None, True),  # the new table lacks the key
        (_val(10, 30, 0), _val(10, 20, 0), True),  # seen since the copy
        (_val(10, 20, EST), _val(10, 25, 0), True),  # the same flow, marked since
        (_val(10, 20, EST), _val(10, 25, EST | FIN), False),  # nothing the new lacks
        (_val(5, 8, FIN), _val(10, 25, 0), False),  # an earlier flow's FIN: not this one's
    ],
    ids=["missing", "more recent", "same flow, new state", "nothing new", "earlier flow"],
)
def test_what_the_handover_carries(old: bytes, new: bytes | None, carried: bool) -> None:
    assert ct_handover.needs_carry(old, new) is carried
