"""Policy program maps recognised by the mark an apply recorded, and policy
changes compiled incrementally, against the real kernel (with the state
cache on, as a node runs): a hand edit of an entry is still found and
undone, after a no-op apply (a digest) and after a policy change (the dump
the plan read with the values written); an apply of a policy change is
verified by reading back what it wrote, and one that did not take fails;
a node applied by the code before this design plans no change to any map
(only the program sets that bpf/ changes since rebuild) and then takes a
changed policy."""

from __future__ import annotations

import json

import pytest

from reconciler.config.source import default_cache_dir
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import policy_types as pl
from reconciler.engine.caches import Caches
from reconciler.kernel import bpf as bpfsys
from reconciler.plan.address import Address
from reconciler.plan.state import ObjKind, WrittenDump
from tests.kernel.conftest import PODS
from tests.kernel.test_policy import BACK_FROM_FRONT, policy
from tests.kernel.test_upgrade import (
    gains_globals,
    gains_host_nat,
    grows_nat_stats,
    run_old,
    tree_of,
)

BEFORE = "d130d67"  # the last commit before recognised policy maps and the incremental compile
VERDICTS = f"{Address.of_map(pl.MAP_VERDICT)}/"
# Pinned maps the datapath has gained since BEFORE: an upgrade creates them.
MAPS_SINCE_BEFORE = {"rcl_reject_tat", "rcl_nat_src", "rcl_wep_src", "rcl_frag"}


@pytest.fixture
def cached(node, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    node.cached = True
    node.felix()
    for pod in PODS:
        node.wep(pod)
    return node


def _one_verdict(root: str) -> tuple[str, dict, bytes, bytes]:
    """A verdict entry of a policy program in the kernel: its address, attrs, key and value."""
    fd = bpfsys.obj_get(f"{root}/maps/{pl.MAP_VERDICT}")
    try:
        items = bpfsys.map_items(fd)
    finally:
        bpfsys.close(fd)
    for key, value in items:
        assert isinstance(value, bytes)
        for text, attrs in entries.decode_all(pl.MAP_VERDICT, [(key, value)], entries.Context({})):
            return str(Address.of_entry(pl.MAP_VERDICT, text)), dict(attrs), key, value
    raise AssertionError("no verdict entries")


def _flip(root: str, key: bytes, text: str, attrs: dict) -> None:
    """A hand edit: the verdict entry at `key` (`text`, now `attrs`) turned around."""
    edited = {**attrs, "action": "deny" if attrs["action"] == "allow" else "allow"}
    fd = bpfsys.obj_get(f"{root}/maps/{pl.MAP_VERDICT}")
    try:
        bpfsys.map_update(fd, key, entries.encode(pl.MAP_VERDICT, text, edited)[1])
    finally:
        bpfsys.close(fd)


def _planned(node) -> list[tuple[str, str]]:
    """The changes the next plan makes: (action, address)."""
    rc, out, err = node.run("--plan", "--json")
    assert rc == 2, out + err
    return [(c["action"], c["address"]) for c in json.loads(out)["changes"]]


def test_a_hand_edit_of_a_recognised_policy_map_is_found_and_undone(cached):
    node = cached
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()  # the second plan and apply recognise the maps by their digest
    root = node.sandbox.bpffs_root
    address, attrs, key, value = _one_verdict(root)
    _flip(root, key, Address.parse(address).key or "", attrs)
    assert _planned(node) == [("update", address)]
    node.apply_converged()
    assert _one_verdict(root)[3] == value


def test_a_node_applied_by_the_code_before_keeps_its_maps_then_takes_a_policy(cached, tmp_path):
    tree = tree_of(BEFORE, tmp_path)
    node = cached
    policy(node, "a", BACK_FROM_FRONT)
    for argv in (["--apply"], ["--apply"]):  # the second fills the old code's caches
        old = run_old(tree, [*argv, *node.args()], "reconciler.cli.main")
        assert old.returncode == 0 and "Verified" in old.stdout, old.stdout + old.stderr
    rc, out, err = node.run("--plan", "--json")
    assert rc in (0, 2), out + err
    # Every map and entry is recognised as it is. Since BEFORE, bpf/ changed:
    # the program sets are rebuilt and the filters and links pointed at them,
    # the maps the new sources add are made and filled, the NAT settings name the
    # node's namespace for its UDP, the reverse-path check is on, and the NAT
    # counters' map grows; nothing else.
    for change in json.loads(out)["changes"]:
        if change["kind"] == "prog":
            assert change["action"] in ("create", "delete"), change
            continue
        if Address.parse(change["address"]).map in MAPS_SINCE_BEFORE:
            assert change["action"] == "create", change  # the maps, and their entries
            continue
        if gains_host_nat(change) or gains_globals(change) or grows_nat_stats(change):
            continue
        assert change["kind"] in ("tc", "cgroup") and change["action"] == "update", change
        before, after = dict(change["before"]), dict(change["after"])
        assert before.pop("prog") != after.pop("prog") and before == after, change
    node.apply_converged()
    policy(node, "a", BACK_FROM_FRONT.replace("[8080]", "[8081]"))
    changed = node.apply_converged()
    assert "Apply complete!" in changed
    rc, out, err = node.run("--plan", "--no-cache")  # a full compile agrees
    assert rc == 0 and "No changes." in out, out + err


def _written_marks() -> dict[str, WrittenDump]:
    """The written dumps the last apply recorded (what the next plan checks)."""
    states = Caches().states(default_cache_dir())
    loaded = states.latest() if states is not None else None
    assert loaded is not None
    return {n: d for n, d in loaded[1].kernel_dumps.items() if isinstance(d, WrittenDump)}


def _moved_port(node) -> None:
    policy(node, "a", BACK_FROM_FRONT.replace("[8080]", "[8081]"))


def test_a_policy_change_is_verified_by_reading_back_what_it_wrote(cached, monkeypatch):
    """A plan that changes map entries only is verified by reading them back,
    not by observing the node again: an entry overwritten behind the apply's
    back fails the apply, named, and the next apply repairs it."""
    from reconciler.engine import reconcile as pipeline

    node = cached
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()
    _moved_port(node)
    real_execute = pipeline.execute
    clobbered: list[str] = []

    def execute_then_clobber(plan, target, backends=None, udp_connected=True):
        assert plan.changes and all(c.kind is ObjKind.ENTRY for c in plan.changes)
        results = real_execute(plan, target, backends, udp_connected)
        change = next(c for c in plan.changes if c.after and c.address.startswith(VERDICTS))
        address = Address.parse(change.address)
        fd = bpfsys.obj_get(f"{target.bpffs_root}/maps/{pl.MAP_VERDICT}")
        try:
            assert bpfsys.map_delete(
                fd, entries.encode(pl.MAP_VERDICT, address.key or "", change.after)[0]
            )
        finally:
            bpfsys.close(fd)
        clobbered.append(change.address)
        return results

    monkeypatch.setattr(pipeline, "execute", execute_then_clobber)
    rc, out, err = node.run("--apply")
    assert rc == 1, out + err
    assert "not converged after apply" in err
    assert clobbered and clobbered[0] in err
    monkeypatch.undo()
    node.apply_converged()  # the next apply writes it again


def test_a_hand_edit_after_a_policy_change_is_found_and_undone(cached):
    """After an apply that changed policy entries only, the maps it wrote are
    recognised by the dump the plan read and the values verify read back: a
    hand edit of an entry it did not write, and of one it did, is found by
    the next plan and undone by the next apply."""
    node = cached
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()
    _moved_port(node)
    rc, out, err = node.run("--apply")
    assert rc == 0 and "Verified" in out, out + err
    assert pl.MAP_VERDICT in _written_marks()
    root = node.sandbox.bpffs_root
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
    for written in (False, True):
        marks = _written_marks()
        mark = marks[pl.MAP_VERDICT]
        fd = bpfsys.obj_get(f"{root}/maps/{pl.MAP_VERDICT}")
        try:
            items = [(k, v) for k, v in bpfsys.map_items(fd) if (k in mark.written) == written]
        finally:
            bpfsys.close(fd)
        key, value = items[0]
        assert isinstance(value, bytes)
        ((text, attrs),) = entries.decode_all(pl.MAP_VERDICT, [(key, value)], entries.Context({}))
        _flip(root, key, text, attrs)
        assert _planned(node) == [("update", str(Address.of_entry(pl.MAP_VERDICT, text)))]
        rc, out, err = node.run("--apply")  # a repair: entries only, verified by reading back
        assert rc == 0 and "Verified" in out, out + err
        rc, out, err = node.run("--plan")
        assert rc == 0 and "No changes." in out, out + err


def test_a_saved_plan_of_a_policy_change_applies_as_made(cached, tmp_path):
    """A plan made with the policy maps recognised (their entries the applied
    state's own objects) is the plan that decoding them gives: --plan-file,
    which decodes them, applies it. Removals are named in both alike, from
    the state last applied (reconciler.plan.notes)."""
    node = cached
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()
    _moved_port(node)
    plan_file = tmp_path / "p.json"
    rc, out, err = node.run("--plan", "--out", str(plan_file))
    assert rc == 2, out + err
    removed = [c for c in json.loads(plan_file.read_text())["changes"] if c["action"] == "delete"]
    assert removed and all(c["kind"] == "entry" for c in removed)
    verdicts = [c for c in removed if c["address"].startswith("map/rcl_pol_verdict/")]
    assert verdicts and all(c["info"]["policy"] for c in verdicts), verdicts
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 0 and "Verified" in out, out + err
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
