"""A link the configuration already names gets its programs on the netlink
event itself, before the whole-node pass that follows it.

From the state the last pass converged the node to (`before`), the state
with the links there are now is compiled (the interfaces-only path: no
service is compiled again) with every interface kept in its slot. When what
differs is only objects added for the new links (their rcl_ifstate and
policy entries, their tc filters), exactly those are applied, in the plan's
make-before-break order: entries before filters. Anything else (a link that
left, a slot that moved, a NAT table or an XDP attachment that changes) is
left to the pass, which is level-triggered and confirms or completes this
work either way. Nothing here reads the kernel's maps or filters.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler.apply.executor import Executor
from reconciler.compile.slots import DIRECTIONS, keep_slots
from reconciler.config.source import Source
from reconciler.datapath.maps.iface_types import MAP_IFSTATE
from reconciler.engine.caches import Caches
from reconciler.engine.lock import LockHeld, apply_lock
from reconciler.engine.reconcile import Target, compiled_state
from reconciler.kernel.pyroute import open_route
from reconciler.kernel.rtnetlink import Rtnl
from reconciler.observe.kernel import read_links
from reconciler.plan.address import Address
from reconciler.plan.diff import Change, diff
from reconciler.plan.state import DesiredState, Obj, ObjKind, ObservedState
from reconciler.plan.tables import Overlay

log = logging.getLogger(__name__)

SMALL_TABLE = 4096  # entries: comparing two tables this size costs less than a pass


def unmanaged(state: DesiredState, names: Iterable[str]) -> set[str]:
    """The names that have no tc filter of ours in `state`: the only links
    an event can bring new work for."""
    return {n for n in names if Address.tc_text(n, DIRECTIONS[0]) not in state.objects}


def slots_of(state: DesiredState) -> dict[int, int]:
    """ifindex -> rcl_ifstate slot, as `state` assigns them."""
    return {
        int(obj.attrs["ifindex"]): int(obj.attrs["slot"])
        for address, obj in state.objects.items()
        if obj.kind is ObjKind.ENTRY and Address.parse(address).map == MAP_IFSTATE
    }


def added_objects(before: DesiredState, after: DesiredState) -> dict[str, Obj] | None:
    """The objects only `after` has, when nothing else differs: the same
    tables, build and enablement, every object of `before` unchanged, no XDP
    attachment (whether one is foreign is for the pass to observe). None
    otherwise."""
    if (
        before.enabled != after.enabled
        or dict(before.build) != dict(after.build)
        or before.tables.keys() != after.tables.keys()
        or not all(same_table(table, after.tables[name]) for name, table in before.tables.items())
    ):
        return None
    added: dict[str, Obj] = {}
    for address, obj in after.objects.items():
        old = before.objects.get(address)
        if old is None:
            if obj.kind is ObjKind.XDP:
                return None
            added[address] = obj
        elif old.kind is not obj.kind or dict(old.attrs) != dict(obj.attrs):
            return None
    if len(before.objects) + len(added) != len(after.objects):
        return None  # something of `before` is gone
    return added


def same_table(a: Mapping[bytes, bytes], b: Mapping[bytes, bytes]) -> bool:
    """Are two tables the same, known without comparing big ones entry by
    entry: one object, or overlays of one base with equal changes (an
    interfaces-only compile lays the services' tables over the previous
    state's). Small tables (a compile without caches) are compared."""
    if a is b:
        return True
    base_a, delta_a = (a.base, a.delta) if isinstance(a, Overlay) else (a, {})
    base_b, delta_b = (b.base, b.delta) if isinstance(b, Overlay) else (b, {})
    if base_a is base_b:
        return delta_a == delta_b
    return len(a) <= SMALL_TABLE and len(b) <= SMALL_TABLE and dict(a.items()) == dict(b.items())


def targeted_changes(after: DesiredState, added: Mapping[str, Obj]) -> tuple[Change, ...]:
    """The creations of `added`, ordered as a plan orders them."""
    partial = dataclasses.replace(after, objects=dict(added), tables={})
    return diff(partial, ObservedState({}))


def attach_links(
    target: Target,
    open_source: Callable[[], Source],
    before: DesiredState,
    names: Iterable[str],
    route: Any = None,
    *,
    caches: Caches,
) -> tuple[DesiredState, list[tuple[str, str]]]:
    """Apply what the links `names` (from a netlink event) add to `before`.
    Returns the state the node now has (`before` when nothing was done) and
    the (address, result) pairs applied. `route`: a pyroute2 handle in the
    target's namespace, kept by the caller (opening one costs more than the
    attach). Raises what compiling or applying raises; a held apply lock
    does nothing (the pass after retries). `caches`: the watcher's, whose
    state store answers the compile."""
    wanted = unmanaged(before, names)
    if not wanted:
        return before, []
    with Rtnl(target.netns) as rtnl:
        links = read_links(rtnl)
    if not any(link.name in wanted for link in links):
        return before, []
    # the source the last pass applied (empty only if that was allowed); only additions follow
    compiled, _ = compiled_state(open_source(), target, links, allow_empty=True, caches=caches)
    after = keep_slots(compiled, slots_of(before))
    added = added_objects(before, after)
    if not added:
        return before, []
    changes = targeted_changes(after, added)
    applied: list[tuple[str, str]] = []
    try:
        with apply_lock(target.bpffs_root, target.netns):
            executor = Executor(target.bpffs_root, after.build, target.netns, route)
            try:
                for change in changes:
                    applied.append((change.address, executor.run(change)))
            finally:
                executor.close()
    except LockHeld as exc:
        log.info("link event: %s; the pass will attach", exc)
        return before, applied
    return after, applied


class Attacher:
    """attach_links with one pyroute2 handle in the target's namespace, kept
    between link events; dropped (and opened again next time) after a
    failure, in case the namespace itself went away."""

    def __init__(self) -> None:
        self.route: Any = None
        self.netns: str | None = None

    def __call__(
        self,
        target: Target,
        open_source: Callable[[], Source],
        before: DesiredState,
        names: Iterable[str],
        caches: Caches,
    ) -> tuple[DesiredState, list[tuple[str, str]]]:
        if self.route is None or self.netns != target.netns:
            self.close()
            self.route = open_route(target.netns)
            self.netns = target.netns
        try:
            return attach_links(target, open_source, before, names, self.route, caches=caches)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.route is not None:
            self.route.close()
            self.route = None
