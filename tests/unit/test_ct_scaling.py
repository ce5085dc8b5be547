"""bpfMapSizeConntrackScaling: when the conntrack table doubles, how the
floor stays, and what the state directory's record says after an apply."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.compile.ct_scaling import MAX_ENTRIES, Seen, floor, scaled
from reconciler.compile.dataplane import Host, compile_desired
from reconciler.datapath.maps.nat_types import CT_WAYS, ct_buckets_for
from reconciler.engine import conntrack_scaling
from tests.unit.test_compile import LINKS, res


def test_no_record_no_floor():
    assert floor(None, 10, 5) is None


def test_evictions_in_the_same_table_double_it():
    seen = Seen(buckets=10, evicted=5)
    assert floor(seen, 10, 5) is None  # nothing evicted since
    assert floor(seen, 10, 6) == 10 * CT_WAYS * 2
    # another table than the record's (resized meanwhile): its count says nothing yet
    assert floor(seen, 20, 50) is None
    assert floor(seen, None, None) is None and floor(seen, 10, None) is None
    # a floor stays, and grows from the table's size
    raised = Seen(buckets=20, evicted=0, floor=140)
    assert floor(raised, 20, 0) == 140 and floor(raised, 20, 1) == 280
    assert floor(Seen(buckets=MAX_ENTRIES, evicted=0), MAX_ENTRIES, 1) == MAX_ENTRIES


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
    kernel = {"buckets": 1, "evicted": 0}
    monkeypatch.setattr(conntrack_scaling, "in_kernel",
                        lambda root: (kernel["buckets"], kernel["evicted"]))  # fmt: skip
    felix = res("FelixConfiguration", "default", {"bpfEnabled": True, "bpfMapSizeConntrack": 7})

    def apply(ct_floor):  # what an apply compiled and left in the kernel
        state = compile_desired([felix], "n1", Host(tuple(LINKS), ct_floor=ct_floor), "/x", "d")
        kernel["buckets"] = state.objects["map/rcl_ct"].attrs["max_entries"]
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
        "\n\nConntrack: 7 of 7 entries held (100%); 1,234 live flow(s) evicted for want of room\n"
        "Service NAT: ct_evicted 1234, dnat_new 2\n"
    ) in full
    assert "Conntrack" not in render_status({**base, "maps": {}})
