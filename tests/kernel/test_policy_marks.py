"""Policy program maps recognised by the digest an apply recorded, and policy
changes compiled incrementally, against the real kernel (with the state
cache on, as a node runs): a hand edit of an entry is still found and
undone, and a node applied by the code before this design plans no change
to any map (only the program sets that bpf/ changes since rebuild) and then
takes a changed policy."""

from __future__ import annotations

import json

import pytest

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import policy_types as pl
from reconciler.kernel import bpf as bpfsys
from reconciler.plan.address import Address
from tests.kernel.conftest import PODS
from tests.kernel.test_policy import BACK_FROM_FRONT, policy
from tests.kernel.test_upgrade import run_old, tree_of

BEFORE = "d130d67"  # the last commit before recognised policy maps and the incremental compile


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


def test_a_hand_edit_of_a_recognised_policy_map_is_found_and_undone(cached):
    node = cached
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()  # the second plan and apply recognise the maps by their digest
    root = node.sandbox.bpffs_root
    address, attrs, key, value = _one_verdict(root)
    edited = {**attrs, "action": "deny" if attrs["action"] == "allow" else "allow"}
    text = Address.parse(address).key or ""
    fd = bpfsys.obj_get(f"{root}/maps/{pl.MAP_VERDICT}")
    try:
        bpfsys.map_update(fd, key, entries.encode(pl.MAP_VERDICT, text, edited)[1])
    finally:
        bpfsys.close(fd)
    rc, out, err = node.run("--plan", "--json")
    assert rc == 2, out + err
    changes = [(c["action"], c["address"]) for c in json.loads(out)["changes"]]
    assert changes == [("update", address)]
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
    # nothing else.
    for change in json.loads(out)["changes"]:
        if change["kind"] == "prog":
            assert change["action"] in ("create", "delete"), change
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
