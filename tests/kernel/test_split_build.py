"""One program set compiled in parts side by side (reconciler/datapath/
loader.py): its programs share the set's own maps and the shared ones as if
compiled whole, its tail-call table holds every part's programs, a part
whose child fails is compiled by the build itself (the whole set, when no
child can be started), and a build that fails
or is killed leaves no child and nothing half built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.datapath import loader
from reconciler.datapath.programs import BUILD_PARTS, JUMP_TABLES, SET_MAPS, TC_PROGRAMS
from tests.kernel.rcl_bcc import private_pin_dir, skip_unless_kernel
from tests.kernel.test_parallel_build import (
    bpftool,
    builders_of,
    flags_for,
    held_maps,
    kill_while_building,
)

pytestmark = pytest.mark.kernel

PART_MODULE = "reconciler.datapath.part_build"


@pytest.fixture
def two_cpus(monkeypatch):
    """Split whatever the machine has (parts also build on one CPU, in turn)."""
    monkeypatch.setattr(loader, "cpus", lambda: 2)


def number(hex_bytes: list[str]) -> int:
    """A little-endian integer as bpftool prints a map's key or value."""
    return int.from_bytes(bytes(int(b, 16) for b in hex_bytes), "little")


def pinned_id(pin: Path) -> int:
    return bpftool("map" if pin.name in SET_MAPS else "prog", "show", "pinned", str(pin))["id"]


def test_a_set_built_in_parts_is_the_set_built_whole(two_cpus):
    skip_unless_kernel()
    with private_pin_dir() as root:
        flags = flags_for(root)
        loader.build(str(root), "tc", "parts", flags, TC_PROGRAMS)
        loader.build(str(root), "tc", "whole", flags, TC_PROGRAMS, split=False)
        parts, whole = root / "progs" / "tc-parts", root / "progs" / "tc-whole"
        assert sorted(os.listdir(parts)) == sorted(os.listdir(whole))
        assert not [p.name for p in (root / "progs").iterdir() if p.name.startswith("tmp-")]
        assert builders_of(root, PART_MODULE) == []
        for function in TC_PROGRAMS:
            held = held_maps(parts / function)
            # the same maps by name as the whole compile's program holds
            assert sorted(held) == sorted(held_maps(whole / function)), function
            # and the set's own maps are the ones pinned in its directory
            for name in set(held) & set(SET_MAPS):
                assert held[name] == pinned_id(parts / name), (function, name)
        # programs of both parts share the per-CPU scratch their tail calls carry
        first, second = BUILD_PARTS["tc"][0][0], BUILD_PARTS["tc"][1][0]
        assert held_maps(parts / first)["rcl_pol_scratch"] == held_maps(parts / second)[
            "rcl_pol_scratch"
        ]
        # the tail-call table holds every part's programs, in its order
        table, targets = JUMP_TABLES["tc"]
        dump = bpftool("map", "dump", "pinned", str(parts / table))
        jumps = {number(e["key"]): number(e["value"]) for e in dump}
        assert jumps == {i: pinned_id(parts / name) for i, name in enumerate(targets)}


def test_a_part_whose_child_fails_is_compiled_by_the_build(two_cpus, monkeypatch, caplog):
    skip_unless_kernel()
    monkeypatch.setattr(loader, "PART_CHILD", "reconciler.datapath.no_such_module")
    with private_pin_dir() as root:
        loader.build(str(root), "tc", "x", flags_for(root), TC_PROGRAMS)
        assert loader.is_built(str(root), "tc", "x", TC_PROGRAMS)
        assert "No module named reconciler.datapath.no_such_module" in caplog.text
        assert "compiling it here" in caplog.text


def test_a_child_that_cannot_start_leaves_the_set_compiled_whole(two_cpus, monkeypatch, caplog):
    """No interpreter where sys.executable says: no child, no maps compile
    of its own, the set compiled in one piece as on one CPU."""
    import sys

    skip_unless_kernel()
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with private_pin_dir() as root:
        loader.build(str(root), "tc", "x", flags_for(root), TC_PROGRAMS)
        assert loader.is_built(str(root), "tc", "x", TC_PROGRAMS)
        assert "no child could be started" in caplog.text
        assert "compiling the set whole" in caplog.text
        assert "parts side by side" not in caplog.text


def test_a_part_that_does_not_build_fails_the_build_and_leaves_nothing(two_cpus, monkeypatch):
    """The child fails, the build compiles the part itself and raises its
    error: nothing of the set stays, no child either."""
    skip_unless_kernel()
    broken = (BUILD_PARTS["tc"][0], ("rcl_tc_judge", "rcl_no_such_function"))
    monkeypatch.setitem(BUILD_PARTS, "tc", broken)
    with private_pin_dir() as root:
        functions = (*TC_PROGRAMS, "rcl_no_such_function")
        with pytest.raises(Exception, match="rcl_no_such_function"):
            loader.build(str(root), "tc", "x", flags_for(root), functions)
        assert list((root / "progs").iterdir()) == []
        assert builders_of(root, PART_MODULE) == []


def test_no_part_child_outlives_a_build_killed_outright():
    skip_unless_kernel()
    with private_pin_dir() as root:
        script = (
            "import sys; from pathlib import Path; "
            "from reconciler.datapath import loader; "
            "from reconciler.datapath.programs import TC_PROGRAMS; "
            "from tests.kernel.test_parallel_build import flags_for; "
            "loader.cpus = lambda: 2; root = Path(sys.argv[1]); "
            "loader.build(str(root), 'tc', 'x', flags_for(root), TC_PROGRAMS)"
        )
        kill_while_building(script, root, PART_MODULE, 1)
        assert not loader.is_built(str(root), "tc", "x", TC_PROGRAMS)
