"""The node's side of conntrack scaling (reconciler.compile.ct_scaling):
what the last converged apply saw of the conntrack table, kept as
ct_scaling.json in the state directory, and what the kernel shows now (the
table's size, the datapath's count of live flows evicted, and how many of
its ways hold an entry)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from reconciler.compile import ct_scaling
from reconciler.compile.ct_scaling import Now, Seen
from reconciler.datapath import conntrack, ct_handover
from reconciler.datapath.maps import nat_types as nat
from reconciler.datapath.maps.nat_types import ct_buckets_for
from reconciler.datapath.programs import CT_HANDOVER_SETS
from reconciler.engine import history
from reconciler.kernel import bpf as bpfsys
from reconciler.observe.status import nat_stats
from reconciler.plan.address import Address
from reconciler.plan.state import DesiredState

log = logging.getLogger(__name__)
RECORD = "ct_scaling.json"


def read(target: Any) -> Seen | None:
    try:
        return Seen.from_json(json.loads((target.state_dir / RECORD).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: no floor, and a fresh record at the next apply


def in_kernel(root: str, seen: Seen | None = None) -> Now:
    """The conntrack table's buckets and the live flows evicted so far, None
    where there is no such map; the ways that hold an entry only when it
    matters (the record's table evicted since: is it full?)."""
    try:
        fd = bpfsys.obj_get(f"{root}/maps/{nat.MAP_CT}")
    except OSError:
        return Now(None, None)
    try:
        info = bpfsys.map_info(fd)
        try:
            evicted = nat_stats(root).get(nat.NatStat.CT_EVICTED.name.lower())
        except OSError:
            evicted = None
        now = Now(info.max_entries, evicted)
        if ct_scaling.evicted_since(seen, now) and conntrack.current_layout(info):
            now = Now(info.max_entries, evicted, conntrack.held(conntrack.table(fd)))
    finally:
        bpfsys.close(fd)
    return now


def unfinished_resize(root: str) -> str | None:
    """What a plan must say of a resize an apply was killed in before the
    old programs were unpinned (some may still be attached): the next apply
    carries the old table's entries over, but a resize planned on top of it
    carries only what those programs recorded until then
    (ct_handover.settle). None otherwise."""
    if not ct_handover.retired_pin(root).exists():
        return None
    progs = Path(root, "progs")
    if not any(len(list(progs.glob(f"{name}-*"))) > 1 for name in CT_HANDOVER_SETS):
        return None
    return (
        "conntrack: a resize was interrupted while programs of its old table were still "
        "pinned (some may be attached); if this plan resizes the table again, the flows "
        "those programs record until this apply switches their interfaces are not carried "
        "into the new table (their connections break if masqueraded or affine); apply the "
        "unchanged size first to finish it"
    )


def floor_for(target: Any) -> int | None:
    """The floor the next compile takes (Host.ct_floor). Every plan asks for
    it first: it also warns of an unfinished resize (unfinished_resize)."""
    unfinished = unfinished_resize(target.bpffs_root)
    if unfinished:
        log.warning("%s", unfinished)
    seen = read(target)
    now = in_kernel(target.bpffs_root, seen)
    why = ct_scaling.why(seen, now)
    if why:
        log.warning("%s", why)
    return ct_scaling.floor(seen, now)


def note(target: Any, desired: DesiredState) -> None:
    """After a converged apply: the table it left, the eviction count now,
    and the floor, raised when this apply doubled the table."""
    table = desired.objects.get(Address.map_text(nat.MAP_CT))
    if table is None:
        return
    buckets = int(table.attrs["max_entries"])
    evicted = in_kernel(target.bpffs_root).evicted
    seen = read(target)
    least = seen.floor if seen is not None else None
    if seen is not None and buckets != seen.buckets:
        asked = ct_scaling.doubled(seen, seen.buckets)
        if ct_scaling.evicted_since(seen, Now(seen.buckets, evicted)) and (
            ct_buckets_for(asked) == buckets
        ):
            least = asked  # this apply is the doubling (its plan found the table full)
    record = Seen(buckets, evicted or 0, least)
    # history.StateWriteError when the state directory is full: no .tmp left
    history.write_json(target.state_dir / RECORD, record.as_json(), durable=False, indent=None)
