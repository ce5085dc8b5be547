"""What a link event may apply ahead of the pass (engine.link_fast), and the
watcher doing it before the pass, with the pass's record saying so."""

from __future__ import annotations

import dataclasses
import queue
from pathlib import Path

import pytest

from reconciler.engine import link_fast
from reconciler.engine.history import PassRecord
from reconciler.engine.reconcile import Target
from reconciler.gitops.loop import Newest, Watcher, WatchOptions
from reconciler.gitops.triggers import LINKS_CHANGED, Event
from reconciler.plan.diff import Action
from reconciler.plan.state import DesiredState, Obj, ObjKind
from reconciler.plan.tables import Overlay


def obj(address: str, kind: ObjKind, **attrs: object) -> Obj:
    return Obj(address, kind, attrs)


def iface(name: str, ifindex: int, slot: int) -> dict[str, Obj]:
    return {
        f"map/rcl_ifstate/{name}": obj(
            f"map/rcl_ifstate/{name}", ObjKind.ENTRY, slot=slot, ifindex=ifindex, flags=17
        ),
        f"map/rcl_pol_ep/{name}": obj(
            f"map/rcl_pol_ep/{name}", ObjKind.ENTRY, slot=slot, ifindex=ifindex
        ),
        **{
            f"tc/{name}/{d}": obj(f"tc/{name}/{d}", ObjKind.TC, prog="tc@1", slot=slot)
            for d in ("ingress", "egress")
        },
    }


BASE = {"rcl_nat_be": {b"k": b"v"}}


def state(objects: dict[str, Obj], tables: dict | None = None) -> DesiredState:
    return DesiredState("n", True, objects, build={"flags": []}, tables=tables or BASE)


def test_only_additions_are_applied_ahead_and_in_plan_order():
    before = state(iface("cali-a", 5, 1))
    after = state({**iface("cali-a", 5, 1), **iface("cali-b", 9, 2)})
    added = link_fast.added_objects(before, after)
    assert added is not None and set(added) == set(iface("cali-b", 9, 2))
    changes = link_fast.targeted_changes(after, added)
    assert all(c.action is Action.CREATE for c in changes)
    kinds = [c.kind for c in changes]
    assert kinds.index(ObjKind.TC) > max(i for i, k in enumerate(kinds) if k is ObjKind.ENTRY)
    assert link_fast.slots_of(after) == {5: 1, 9: 2}
    assert link_fast.unmanaged(before, ["cali-a", "cali-b"]) == {"cali-b"}


def test_anything_but_additions_is_left_to_the_pass():
    before = state({**iface("cali-a", 5, 1), **iface("cali-b", 9, 2)})
    moved = state({**iface("cali-a", 5, 3), **iface("cali-b", 9, 2), **iface("cali-c", 11, 1)})
    gone = state({**iface("cali-a", 5, 1), **iface("cali-c", 11, 3)})
    xdp = state({**before.objects, "xdp/eth0": obj("xdp/eth0", ObjKind.XDP, prog="xdp@1")})
    other_table = state({**before.objects, **iface("cali-c", 11, 3)}, {"rcl_nat_be": {}})
    rebuilt = dataclasses.replace(
        state({**before.objects, **iface("cali-c", 11, 3)}), build={"flags": ["X"]}
    )
    for after in (moved, gone, xdp, other_table, rebuilt):
        assert link_fast.added_objects(before, after) is None


def test_tables_laid_over_the_same_base_are_the_same_without_reading_them():
    """(an interfaces-only compile lays the services' tables over the last state's)"""
    base = {b"k": b"v"}
    one, two = Overlay(base), Overlay(base)
    assert link_fast.same_table(base, one) and link_fast.same_table(one, two)
    two[b"k2"] = b"v2"
    assert not link_fast.same_table(one, two)
    assert link_fast.same_table(Overlay({b"k": b"v"}), one)  # small: compared
    big = {b"%d" % n: b"v" for n in range(link_fast.SMALL_TABLE + 1)}
    assert not link_fast.same_table(big, dict(big))  # big and apart: left to the pass


class FakeEngine:
    """Records what the watcher asks, in order."""

    def __init__(self, converged: DesiredState) -> None:
        self.calls: list[str] = []
        self.converged = converged

    def attach_links(self, target, opener, converged, names):
        self.calls.append(f"attach {sorted(names)}")
        added = iface("cali-b", 9, 2)
        return state({**converged.objects, **added}), [(a, "created") for a in added]


def test_the_watcher_attaches_on_the_event_then_passes_and_records_it():
    target = Target("n", "/sys/fs/bpf/x", Path("/nonexistent"))
    before = state(iface("cali-a", 5, 1))
    engine = FakeEngine(before)
    w = Watcher(target, WatchOptions(interval=300), engine)  # type: ignore[arg-type]
    w.converged, w.good = before, Newest({}, lambda: None)  # type: ignore[arg-type,return-value]
    w.events = queue.Queue()
    w.events.put(Event(LINKS_CHANGED, links=frozenset({"cali-b"})))
    w.events.put(Event(LINKS_CHANGED, links=frozenset()))  # the rest of the burst
    event = w._next_event()
    assert engine.calls == ["attach ['cali-b']"] and event.reason == LINKS_CHANGED
    assert sorted(w.attached) == sorted(iface("cali-b", 9, 2))
    assert "tc/cali-b/ingress" in w.converged.objects

    def quiet_pass(event):  # the confirming pass finds nothing left to do
        engine.calls.append("pass")
        return PassRecord("", 0.0, "", "no-op", changes=0), None

    w._pass = quiet_pass  # type: ignore[method-assign]
    w._save = lambda record: None  # type: ignore[method-assign]
    record = w.run_pass(event)
    assert engine.calls == ["attach ['cali-b']", "pass"]
    assert record.result == "applied" and record.changes == 4
    assert set(record.attached) == set(iface("cali-b", 9, 2)) and not w.attached
    assert record.as_json()["attached"] == list(record.attached)


def test_no_shortcut_without_a_converged_state_or_under_detect_only():
    target = Target("n", "/sys/fs/bpf/x", Path("/nonexistent"))
    engine = FakeEngine(state({}))
    cases = ((WatchOptions(), None), (WatchOptions(detect_only=True), state({})))
    for options, converged in cases:
        w = Watcher(target, options, engine)  # type: ignore[arg-type]
        w.converged = converged
        w.good = Newest({}, lambda: None)  # type: ignore[arg-type,return-value]
        w._attach(frozenset({"cali-b"}))
    assert engine.calls == []


class FakeRoute:
    closed = 0

    def close(self) -> None:
        FakeRoute.closed += 1


def test_the_attacher_keeps_one_handle_and_drops_it_after_a_failure(monkeypatch):
    opened: list[str | None] = []
    monkeypatch.setattr(link_fast, "open_route", lambda ns: opened.append(ns) or FakeRoute())
    outcomes = iter([None, OSError("namespace gone"), None])

    def attach(target, opener, before, names, route, *, caches):
        assert isinstance(route, FakeRoute) and caches == "the watcher's caches"
        failure = next(outcomes)
        if failure is not None:
            raise failure
        return before, []

    monkeypatch.setattr(link_fast, "attach_links", attach)
    target = Target("n", "/sys/fs/bpf/x", Path("/nonexistent"), netns="ns1")
    attacher = link_fast.Attacher()
    before = state({})
    caches = "the watcher's caches"
    assert attacher(target, lambda: None, before, {"cali-a"}, caches) == (before, [])
    with pytest.raises(OSError, match="namespace gone"):
        attacher(target, lambda: None, before, {"cali-a"}, caches)
    assert attacher.route is None and FakeRoute.closed == 1
    attacher(target, lambda: None, before, {"cali-a"}, caches)
    assert opened == ["ns1", "ns1"]  # kept between events, opened again after the failure


def test_a_failing_shortcut_is_logged_and_the_watcher_goes_on(caplog):
    class Failing(FakeEngine):
        def attach_links(self, target, opener, converged, names):
            raise RuntimeError("netlink said no")  # not an OSError: pyroute2's own errors

    target = Target("n", "/sys/fs/bpf/x", Path("/nonexistent"))
    before = state(iface("cali-a", 5, 1))
    w = Watcher(target, WatchOptions(), Failing(before))  # type: ignore[arg-type]
    w.converged, w.good = before, Newest({}, lambda: None)  # type: ignore[arg-type,return-value]
    w._attach(frozenset({"cali-b"}))
    assert w.converged is before and not w.attached
    assert "not attached ahead of the pass: netlink said no" in caplog.text
