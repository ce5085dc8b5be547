"""Program sets built side by side (reconciler/datapath/parallel_build.py):
every set's programs hold the same pinned maps as if built one by one, a
set that fails is left to the in-order build with nothing half built, and a
single long build is left to the in-order build altogether."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reconciler.compile.programs import build_flags
from reconciler.config import felix
from reconciler.datapath import loader
from reconciler.datapath.parallel_build import SetBuild, build_side_by_side
from reconciler.datapath.programs import CONNECT_PROGRAMS, HOST_PROGRAMS, PROG_TYPES, TC_PROGRAMS
from tests.kernel.rcl_bcc import private_pin_dir, skip_unless_kernel

pytestmark = pytest.mark.kernel

SETS = {"tc": TC_PROGRAMS, "host": HOST_PROGRAMS, "connect": tuple(CONNECT_PROGRAMS.values())}


def builds(*names: str, functions: dict[str, tuple[str, ...]] | None = None) -> list[SetBuild]:
    chosen = {**SETS, **(functions or {})}
    return [SetBuild(name, "side", chosen[name], PROG_TYPES[name]) for name in names]


def flags_for(root: Path) -> tuple[str, ...]:
    return build_flags(str(root), felix.effective_config([], "node"), loader.kernel_hz())


def bpftool(*args: str) -> dict:
    done = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def held_maps(program: Path) -> dict[str, int]:
    """Name -> id of every map a pinned program holds, as bpftool reads them
    (the kernel keeps 15 characters of a name)."""
    ids = bpftool("prog", "show", "pinned", str(program)).get("map_ids", [])
    return {bpftool("map", "show", "id", str(i))["name"]: i for i in ids}


def pinned_maps(root: Path) -> dict[str, int]:
    """The shared maps: name -> id (not the map of maps private_pin_dir
    stages for tests that compile sources themselves: a build stages its own)."""
    shown = [bpftool("map", "show", "pinned", str(pin)) for pin in (root / "maps").iterdir()
             if pin.name != "rcl_ct_prev"]  # fmt: skip
    return {m["name"]: m["id"] for m in shown}


def test_sets_built_side_by_side_hold_the_same_pinned_maps(tmp_path):
    skip_unless_kernel()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing is built side by side")
    with private_pin_dir() as root:
        assert build_side_by_side(str(root), flags_for(root), builds("tc", "host", "connect")) == []
        for name, functions in SETS.items():
            assert loader.is_built(str(root), name, "side", functions), name
        assert not [p.name for p in (root / "progs").iterdir() if p.name.startswith("tmp-")]
        pinned = pinned_maps(root)
        shared = 0
        for name, functions in SETS.items():
            for function in functions:
                program = root / "progs" / f"{name}-side" / function
                for map_name, map_id in held_maps(program).items():
                    if map_name in pinned:
                        assert map_id == pinned[map_name], (name, function, map_name)
                        shared += 1
        # the conntrack table and the ICMP reject limit, for two, are held by
        # both tc datapath sets, and the NAT frontends by the connect-time
        # programs too
        for name, shared_map in (("tc", "rcl_ct"), ("host", "rcl_ct"), ("tc", "rcl_reject_tat"),
                                 ("host", "rcl_reject_tat"), ("connect", "rcl_nat_fe")):
            entry = root / "progs" / f"{name}-side" / SETS[name][0]
            assert held_maps(entry)[shared_map] == pinned[shared_map], (name, shared_map)
        assert shared > 20
        # each set's resize reference is its own, pinned beside its programs
        prev = {bpftool("map", "show", "pinned", str(root / "progs" / f"{n}-side" / "rcl_ct_prev"))
                ["id"] for n in SETS}  # fmt: skip
        assert len(prev) == 3


def test_a_set_that_fails_is_left_to_the_in_order_build():
    skip_unless_kernel()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing is built side by side")
    with private_pin_dir() as root:
        broken = {"host": ("rcl_tc_host_ingress", "rcl_no_such_function")}
        failed = build_side_by_side(
            str(root), flags_for(root), builds("tc", "host", functions=broken)
        )
        assert failed == ["host"]
        assert loader.is_built(str(root), "tc", "side", TC_PROGRAMS)
        # nothing half built
        assert sorted(p.name for p in (root / "progs").iterdir()) == ["tc-side"]
        # the in-order build says why
        with pytest.raises(Exception, match="rcl_no_such_function"):
            loader.build(str(root), "host", "side", flags_for(root), broken["host"],
                         PROG_TYPES["host"])  # fmt: skip
        assert sorted(p.name for p in (root / "progs").iterdir()) == ["tc-side"]


def test_one_long_build_is_built_in_parts_and_the_short_ones_meanwhile(caplog):
    """tc and connect: tc in parts, connect while tc's build waits for its
    child's part; the sets are then what the in-order builds would make."""
    import logging

    skip_unless_kernel()
    caplog.set_level(logging.INFO, logger="reconciler")
    with private_pin_dir() as root:
        built = build_side_by_side(str(root), flags_for(root), builds("tc", "connect"))
        if len(os.sched_getaffinity(0)) < 2:  # one CPU: left to the in-order builds
            assert built == [] and not (root / "progs").exists()
            return
        assert built == []
        for name in ("tc", "connect"):
            assert loader.is_built(str(root), name, "side", SETS[name]), name
        assert "built the tc set in 2 parts side by side" in caplog.text
        assert "built tc with connect meanwhile" in caplog.text
        pinned = pinned_maps(root)
        for function in SETS["connect"]:
            for map_name, map_id in held_maps(root / "progs" / "connect-side" / function).items():
                if map_name in pinned:
                    assert map_id == pinned[map_name], (function, map_name)


def test_a_short_build_that_fails_beside_a_long_one_is_left_to_the_in_order_build(caplog):
    skip_unless_kernel()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing is built side by side")
    with private_pin_dir() as root:
        broken = {"connect": ("rcl_connect4", "rcl_no_such_function")}
        failed = build_side_by_side(str(root), flags_for(root),
                                    builds("tc", "connect", functions=broken))  # fmt: skip
        assert failed == ["connect"]
        assert "building connect beside tc failed" in caplog.text
        assert sorted(p.name for p in (root / "progs").iterdir()) == ["tc-side"]


def test_shared_maps_that_cannot_be_made_leave_every_set_to_the_in_order_build(caplog):
    """A compile that fails for every source (here: a map size that is not a
    number) fails the shared maps first: nothing is started, nothing raised."""
    skip_unless_kernel()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing is built side by side")
    with private_pin_dir() as root:
        flags = (*flags_for(root), "-DRCL_NAT_FE_SIZE=not_a_number")
        assert build_side_by_side(str(root), flags, builds("tc", "host")) == ["tc", "host"]
        assert not (root / "progs").exists() or not list((root / "progs").iterdir())
    assert "the shared maps could not be made" in caplog.text
    assert "building the sets in order" in caplog.text


def builders_of(root: Path, module: str = "reconciler.datapath.parallel_build") -> list[int]:
    """Pids of the child processes running `module` to build under `root`
    (their command line names both)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"-m\0{module}\0".encode() in cmdline and str(root).encode() in cmdline:
            found.append(int(entry.name))
    return found


def kill_while_building(script: str, root: Path, module: str, children: int) -> None:
    """Run `script` (Python, given `root`) until `children` child processes
    of `module` build under it, SIGKILL it, and assert that they go with it
    (PR_SET_PDEATHSIG): SIGKILL runs no cleanup in the parent."""
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", script, str(root)],
                              cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while len(builders_of(root, module)) < children and time.monotonic() < deadline:
            assert parent.poll() is None, "the parent ended before starting its children"
            time.sleep(0.01)
        assert len(builders_of(root, module)) == children
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while builders_of(root, module) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = builders_of(root, module)
    for pid in left:  # (only when the test fails: none should be)
        os.kill(pid, 9)
    assert left == []


def test_no_child_outlives_an_apply_killed_outright():
    """The children go with a parent killed outright, and no set is left
    built or half built."""
    skip_unless_kernel()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing is built side by side")
    with private_pin_dir() as root:
        script = (
            "import sys; from tests.kernel.test_parallel_build import builds, flags_for; "
            "from pathlib import Path; "
            "from reconciler.datapath.parallel_build import build_side_by_side; "
            "root = Path(sys.argv[1]); "
            "build_side_by_side(str(root), flags_for(root), builds('tc', 'host'))"
        )
        kill_while_building(script, root, "reconciler.datapath.parallel_build", 2)
        for name in ("tc", "host"):
            assert not loader.is_built(str(root), name, "side", SETS[name])


def test_an_apply_whose_side_by_side_build_breaks_builds_in_order(monkeypatch, caplog):
    """Side by side is a shortcut: when its children cannot even start (here:
    no interpreter where sys.executable says), the executor logs it and the
    builds in order follow."""
    import sys

    from reconciler.apply.executor import Executor
    from reconciler.plan.address import Address, prog_ref
    from reconciler.plan.diff import Action, Change
    from reconciler.plan.state import ObjKind

    skip_unless_kernel()
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: nothing is built side by side")
    with private_pin_dir() as root:
        changes = [
            Change(Action.CREATE, str(Address.of_prog(prog_ref(name, "side"))), ObjKind.PROG,
                   None, {"programs": list(SETS[name])}, {})  # fmt: skip
            for name in ("host", "tc")
        ]
        executor = Executor(str(root), {"flags": flags_for(root)}, None)
        try:
            monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
            executor.build_ahead(changes)
            monkeypatch.undo()
            assert "building program sets side by side failed" in caplog.text
            assert not (root / "progs").exists() or not list((root / "progs").iterdir())
            for change in changes:
                assert executor.run(change) == "created"
        finally:
            executor.close()
        for name in ("tc", "host"):
            assert loader.is_built(str(root), name, "side", SETS[name])
