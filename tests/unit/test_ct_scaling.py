"""bpfMapSizeConntrackScaling: when the conntrack table doubles, how the
floor stays, and what the state directory's record says after an apply."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.compile.ct_scaling import MAX_ENTRIES, Now, Seen, floor, scaled, why
from reconciler.compile.dataplane import Host, compile_desired
from reconciler.datapath.maps.ct_fill import is_full
from reconciler.datapath.maps.nat_types import CT_WAYS, ct_buckets_for
from reconciler.engine import conntrack_scaling
from tests.unit.test_compile import LINKS, res


def test_no_record_no_floor():
    assert floor(None, Now(10, 5, 70)) is None
    assert why(None, Now(10, 5, 70)) is None


def test_a_full_table_that_evicts_is_doubled():
    full = 60  # of 70: 86%
    seen = Seen(buckets=10, evicted=5)
    assert floor(seen, Now(10, 5, full)) is None  # nothing evicted since
    assert floor(seen, Now(10, 6, full)) == 10 * CT_WAYS * 2
    # another table than the record's (resized meanwhile): its count says nothing yet
    assert floor(seen, Now(20, 50, 140)) is None
    assert floor(seen, Now(None, None)) is None and floor(seen, Now(10, None, full)) is None
    # a floor stays, and grows from the table's size
    raised = Seen(buckets=20, evicted=0, floor=140)
    assert floor(raised, Now(20, 0, 140)) == 140 and floor(raised, Now(20, 1, 140)) == 280
    big = Seen(buckets=MAX_ENTRIES, evicted=0)
    assert floor(big, Now(MAX_ENTRIES, 1, MAX_ENTRIES * CT_WAYS)) == MAX_ENTRIES


def test_evictions_in_a_table_that_is_not_full_do_not_double_it():
    """A pod aiming its flows at one bucket evicts there, in a table all but
    empty: not a full table. 85% held is full (Calico's lower threshold)."""
    seen = Seen(buckets=10, evicted=5, floor=70)
    assert floor(seen, Now(10, 1_000, 14)) == 70  # the floor stays, not doubled
    assert floor(seen, Now(10, 6, 59)) == 70  # 59 of 70: 84%
    assert floor(seen, Now(10, 6, 60)) == 140
    assert floor(seen, Now(10, 6, None)) == 70  # not read: no doubling
    assert is_full(60, 70) and not is_full(59, 70) and is_full(7, 7) and not is_full(0, 0)


def test_the_plan_says_why_the_table_doubles_or_not():
    seen = Seen(buckets=10, evicted=5)
    assert why(seen, Now(10, 5, 70)) is None  # nothing evicted since the record
    assert why(seen, Now(20, 9, 70)) is None  # another table
    assert why(seen, Now(10, 8, 70)) == (
        "the conntrack table is full, 70 of 70 entries held (100%), and evicted 3 live "
        "flow(s) since the last apply: asking for 140 entries "
        "(bpfMapSizeConntrackScaling: DoubleIfFull)"
    )
    assert why(seen, Now(10, 1_005, 14)) == (
        "the conntrack table evicted 1,000 live flow(s) since the last apply but is not full, "
        "14 of 70 entries held (20%), under 85%: not doubled (bpfMapSizeConntrackScaling: "
        "DoubleIfFull doubles a full table; evictions in one this empty come from a few "
        "crowded buckets)"
    )


@pytest.mark.parametrize("mode", [None, "DoubleIfFull", "doubleiffull", ""])
def test_double_if_full_raises_the_size_to_the_floor(mode):
    config = {"bpfMapSizeConntrack": 7}
    if mode is not None:
        config["bpfMapSizeConntrackScaling"] = mode
    assert scaled(config, 14)["bpfMapSizeConntrack"] == 14
    assert scaled(config, None) is config
    assert scaled({**config, "bpfMapSizeConntrack": 100}, 14)["bpfMapSizeConntrack"] == 100


def test_disabled_scaling_keeps_the_configured_size():
    config = {"bpfMapSizeConntrack": 7, "bpfMapSizeConntrackScaling": "Disabled"}
    assert scaled(config, 14) is config


def test_the_compiled_table_and_programs_follow_the_floor():
    felix = res("FelixConfiguration", "default", {"bpfEnabled": True, "bpfMapSizeConntrack": 7})
    plain = compile_desired([felix], "n1", Host(tuple(LINKS)), "/sys/fs/bpf/x", "d")
    doubled = compile_desired([felix], "n1", Host(tuple(LINKS), ct_floor=14), "/sys/fs/bpf/x", "d")
    assert plain.objects["map/rcl_ct"].attrs == {"max_entries": 1}
    assert doubled.objects["map/rcl_ct"].attrs == {"max_entries": 2}
    assert "-DRCL_CT_BUCKETS=2" in doubled.build["flags"]
    assert doubled.build["hash"] != plain.build["hash"]  # the programs are rebuilt for it
    spec = {"bpfEnabled": True, "bpfMapSizeConntrack": 7, "bpfMapSizeConntrackScaling": "Disabled"}
    off = res("FelixConfiguration", "default", spec)
    kept = compile_desired([off], "n1", Host(tuple(LINKS), ct_floor=14), "/sys/fs/bpf/x", "d")
    assert kept.objects["map/rcl_ct"].attrs == {"max_entries": 1}


@dataclass
class Target:
    state_dir: Path
    bpffs_root: str = "/nonexistent"


def test_the_record_after_an_apply(tmp_path, monkeypatch):
    target = Target(tmp_path / "state")
    kernel = {"buckets": 1, "evicted": 0, "held": 7}
    monkeypatch.setattr(conntrack_scaling, "in_kernel",
                        lambda root, seen=None: Now(**kernel))  # fmt: skip
    felix = res("FelixConfiguration", "default", {"bpfEnabled": True, "bpfMapSizeConntrack": 7})

    def apply(ct_floor):  # what an apply compiled and left in the kernel
        state = compile_desired([felix], "n1", Host(tuple(LINKS), ct_floor=ct_floor), "/x", "d")
        kernel["buckets"] = state.objects["map/rcl_ct"].attrs["max_entries"]
        kernel["held"] = kernel["buckets"] * CT_WAYS  # full (as the flows leave it)
        conntrack_scaling.note(target, state)

    assert conntrack_scaling.floor_for(target) is None  # no record yet
    apply(None)
    assert json.loads((target.state_dir / "ct_scaling.json").read_text()) == {
        "buckets": 1, "evicted": 0, "floor": None
    }
    kernel["evicted"] = 3  # live flows evicted: the next plan doubles
    assert conntrack_scaling.floor_for(target) == 14
    apply(14)
    assert conntrack_scaling.read(target) == Seen(buckets=2, evicted=3, floor=14)
    assert conntrack_scaling.floor_for(target) == 14  # nothing new: it stays
    kernel["evicted"] = 4
    assert conntrack_scaling.floor_for(target) == 28
    apply(28)
    assert conntrack_scaling.read(target) == Seen(buckets=4, evicted=4, floor=28)
    assert ct_buckets_for(28) == 4
    # evictions in a table that is not full (a crowded bucket): the floor
    # stays, and the apply records the count (the next plan starts from it)
    kernel.update(evicted=40, held=5)
    assert conntrack_scaling.floor_for(target) == 28
    apply(28)
    assert conntrack_scaling.read(target) == Seen(buckets=4, evicted=40, floor=28)
    # an unreadable record is none: no floor, and a fresh one at the next apply
    (target.state_dir / "ct_scaling.json").write_text("{")
    assert conntrack_scaling.floor_for(target) is None


def test_status_shows_the_conntrack_fill_in_entries_and_evictions_when_any():
    from reconciler.observe.status import render_status

    base = {"node": "n1", "last_apply": None, "owned": {}, "interfaces": [], "counters": {},
            "foreign": [], "service_nat": {}}  # fmt: skip
    quiet = render_status({**base, "maps": {"rcl_ct": {"entries": 6, "max_entries": 131075}}})
    assert "\nConntrack: 6 of 131,075 entries held (0%)\n" in quiet
    full = render_status({
        **base, "maps": {"rcl_ct": {"entries": 7, "max_entries": 7}},
        "service_nat": {"ct_evicted": 1234, "dnat_new": 2},
    })  # fmt: skip
    assert (
        "\n\nConntrack: 7 of 7 entries held (100%); 1,234 live flow(s) evicted for want of room; "
        "full (85% or more held): DoubleIfFull doubles it when it evicts\n"
        "Service NAT: ct_evicted 1234, dnat_new 2\n"
    ) in full
    crowded = render_status({
        **base, "maps": {"rcl_ct": {"entries": 9, "max_entries": 70}},
        "service_nat": {"ct_evicted": 3},
    })  # fmt: skip
    assert (
        "\nConntrack: 9 of 70 entries held (13%); 3 live flow(s) evicted for want of room; "
        "not full (under 85% held): DoubleIfFull does not double it for these\n"
    ) in crowded
    assert "Conntrack" not in render_status({**base, "maps": {}})
