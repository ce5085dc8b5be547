"""What a process keeps between passes belongs to the Caches object its owner
made: two owners never see each other's memory, and a watcher's deferred
writes reach the disk on flush, the state before the record naming it."""

from __future__ import annotations

import random

from reconciler.engine import store
from reconciler.engine.caches import Caches
from reconciler.plan.state import (
    UNRECOGNISED,
    AppliedDump,
    DesiredState,
    Obj,
    ObjKind,
    WrittenDump,
)
from tests.unit.test_incremental import compile_, endpoint_slice, file_ids, service


def small_state(seed: int):
    rng = random.Random(seed)
    resources = [service(0, rng), endpoint_slice(0, rng, 0)]
    return compile_(resources, file_ids(resources, {}))


def test_one_store_per_cache_directory_and_none_without_one(tmp_path):
    caches = Caches()
    assert caches.states(None) is None
    states = caches.states(tmp_path)
    assert states is not None and caches.states(tmp_path) is states
    assert states.directory == tmp_path / "desired" / store.code_fingerprint()
    assert caches.states(tmp_path / "other") is not states
    assert Caches().states(tmp_path) is not states  # another owner, another store


def test_owners_do_not_share_what_they_keep_in_memory(tmp_path):
    state = small_state(1)
    first = Caches().states(tmp_path)
    assert first is not None
    first.store("k", state)
    first.note_applied(state, {"rcl_nat_fe": "d" * 32})
    kept = first.load("k")
    assert kept is not None and kept[0] is state  # its own memory: the very object
    second = Caches().states(tmp_path)
    assert second is not None
    loaded = second.load("k")
    assert loaded is not None and loaded[0] is not state and loaded[0] == state  # from disk
    assert loaded[1].kernel_digests == {"rcl_nat_fe": "d" * 32}


def test_deferred_writes_reach_the_disk_on_flush_only(tmp_path):
    state = small_state(2)
    watcher = Caches(defer_writes=True)
    states = watcher.states(tmp_path)
    assert states is not None
    states.store("k", state)
    states.note_applied(state, {"rcl_nat_fe": "e" * 32})
    assert states.load("k") is not None  # held in memory
    assert not states.path("k").exists()
    assert not (states.directory / store.APPLIED).exists()
    assert Caches().states(tmp_path).latest() is None  # nothing another process could read
    watcher.flush()
    assert states.path("k").exists()
    assert (states.directory / store.APPLIED).read_text().split("\n")[0] == states.path("k").name
    later = Caches().states(tmp_path).latest()
    assert later is not None and later[0] == state
    assert later[1].kernel_digests == {"rcl_nat_fe": "e" * 32}


def test_a_state_not_held_is_not_recorded_as_applied(tmp_path):
    """note_applied names a stored state only when the store holds it: a state
    compiled elsewhere (no cache, another owner) leaves no record."""
    states = Caches().states(tmp_path)
    assert states is not None
    states.store("k", small_state(3))
    states.note_applied(small_state(3))  # equal, but not the state this store holds
    assert not (states.directory / store.APPLIED).exists()
    loaded = states.load("k")
    assert loaded is not None and loaded[1] == UNRECOGNISED


def test_the_held_state_made_for_this_kernel_is_recorded_as_applied(tmp_path):
    """What an apply applies is the stored state with its objects replaced for
    the kernel (slots kept, blocked hooks left out), its tables the stored
    ones: that is the held state, recorded."""
    import dataclasses

    state = small_state(5)
    states = Caches().states(tmp_path)
    assert states is not None
    states.store("k", state)
    made = dataclasses.replace(state, objects=dict(state.objects))
    states.note_applied(made, {"rcl_nat_fe": "f" * 32})
    assert (states.directory / store.APPLIED).read_text().split("\n")[0] == states.path("k").name


def test_the_applied_record_keeps_each_kind_of_mark(tmp_path):
    """Digests, the dumps an apply wrote over and written dumps all reach
    another process as they were recorded."""
    state = small_state(4)
    first = Caches().states(tmp_path)
    assert first is not None
    first.store("k", state)
    dumps = {
        "rcl_nat_be": AppliedDump(b"k1k2", b"v1v2", 2, 2, frozenset({b"k1"})),
        "rcl_pol_exact": WrittenDump("r" * 32, 2, 2, {b"k1": b"v9", b"k3": None}),
    }
    first.note_applied(state, {"rcl_nat_fe": "d" * 32}, dumps)
    loaded = Caches().states(tmp_path).load("k")
    assert loaded is not None
    assert loaded[1].kernel_digests == {"rcl_nat_fe": "d" * 32}
    assert dict(loaded[1].kernel_dumps) == dumps


def _entries_state(entries: dict[str, Obj], prog: str = "0123456789ab") -> DesiredState:
    obj = Obj(f"prog/tc@{prog}", ObjKind.PROG, {"programs": ["a"]})
    return DesiredState("n1", True, {obj.address: obj, **entries})


def test_a_state_that_keeps_most_entries_of_its_base_is_stored_as_their_changes(tmp_path):
    """The entries an incremental compile kept are the base's own objects:
    only the others and the addresses gone are written, and the state reads
    back equal in a new process; a state that keeps few is written whole."""
    entries = {
        f"map/rcl_pol_verdict/{i:08x}/default": Obj(
            f"map/rcl_pol_verdict/{i:08x}/default", ObjKind.ENTRY, {"action": "allow", "rule": i},
            {"policy": f"policy/ns/p{i}"},
        )
        for i in range(400)
    }  # fmt: skip
    base = _entries_state(entries)
    states = Caches().states(tmp_path)
    assert states is not None
    states.store("base", base)
    kept = dict(entries)
    changed, gone = list(kept)[:2]
    kept[changed] = Obj(changed, ObjKind.ENTRY, {"action": "deny", "rule": 0}, {"policy": "x"})
    del kept[gone]
    new = "map/rcl_pol_verdict/ffffffff/default"
    kept[new] = Obj(new, ObjKind.ENTRY, {"action": "deny", "rule": 9}, {})
    states.store("derived", _entries_state(kept, "ba9876543210"))  # and another program
    data = states.path("derived").read_bytes()
    assert store.base_of(data) == states.path("base").name
    assert len(data) < states.path("base").stat().st_size / 4
    loaded = Caches().states(tmp_path).load("derived")
    assert loaded is not None and loaded[0] == _entries_state(kept, "ba9876543210")
    assert loaded[0].objects[changed].info == {"policy": "x"} and gone not in loaded[0].objects
    fresh = {
        a: Obj(a, o.kind, dict(o.attrs), o.info) for a, o in entries.items()
    }  # equal, not kept
    states.store("rebuilt", _entries_state(fresh))
    assert store.base_of(states.path("rebuilt").read_bytes()) is None
    again = Caches().states(tmp_path).load("rebuilt")
    assert again is not None and again[0] == _entries_state(fresh)


def test_the_applied_state_outlives_the_plans_other_processes_store_after_it(tmp_path):
    """A node's store keeps a few recent states; plans of other
    configurations (an operator's --plan beside the watcher) must not push
    out the one the kernel holds: it names the plan's removals."""
    applied = small_state(5)
    node = Caches().states(tmp_path)
    assert node is not None
    node.store("applied", applied)
    node.note_applied(applied)
    for i in range(12):
        other = Caches().states(tmp_path)
        assert other is not None
        other.store(f"plan{i}", small_state(100 + i), keep=3)
    assert node.path("applied").exists()
    assert not node.path("plan0").exists()  # the others are pruned as before
    later = Caches().states(tmp_path).applied()
    assert later is not None and later == applied
