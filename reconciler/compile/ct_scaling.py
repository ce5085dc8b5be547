"""bpfMapSizeConntrackScaling: DoubleIfFull (Calico's default) doubles the
conntrack table once it is full. Ours doubles when the datapath evicted a
live flow's entry to make room (rcl_nat_stats ct_evicted) since the last
apply *and* the table is full (ct_fill: 85% of its entries held). Both,
because a table of 7-way buckets evicts as soon as one bucket is crowded:
evictions in a table that is all but empty (a pod aiming its flows at one
bucket) must not grow the node's locked memory. The next plan then asks
for twice the table (a resize, entries migrated). The doubled
size is a floor that stays: lowering bpfMapSizeConntrack does not shrink
below it; `Disabled` does.
Pure: the record of what the node saw last, and what it sees now, in; the
floor (and the words for why) out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.datapath.maps.ct_fill import FULL, is_full, share
from reconciler.datapath.maps.nat_types import CT_WAYS

MAX_ENTRIES = 16_777_216  # the schema's bpfMapSizeConntrack maximum
FIELD = "bpfMapSizeConntrack"
SCALING = "bpfMapSizeConntrackScaling"


@dataclass(frozen=True, slots=True)
class Seen:
    """The conntrack table as a converged apply left it: its size in
    buckets, the eviction count then, and the floor in force (entries)."""

    buckets: int
    evicted: int
    floor: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "evicted": self.evicted, "floor": self.floor}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Seen:
        floor = data.get("floor")
        return cls(int(data["buckets"]), int(data["evicted"]), int(floor) if floor else None)


@dataclass(frozen=True, slots=True)
class Now:
    """The conntrack table in the kernel: its buckets, the live flows the
    datapath evicted so far, and the ways that hold an entry (None where
    unknown: no such table, or not read)."""

    buckets: int | None
    evicted: int | None
    held: int | None = None


def doubling(config: Mapping[str, Any]) -> bool:
    return str(config.get(SCALING) or "DoubleIfFull").lower() == "doubleiffull"


def evicted_since(seen: Seen | None, now: Now) -> int:
    """Live flows the record's own table evicted since the record: 0 for
    another table (resized meanwhile: its count says nothing yet)."""
    if seen is None or now.buckets != seen.buckets or now.evicted is None:
        return 0
    return max(0, now.evicted - seen.evicted)


def doubled(seen: Seen, buckets: int) -> int:
    """The floor after doubling a table of `buckets`: it never falls."""
    return min(MAX_ENTRIES, max(seen.floor or 0, buckets * CT_WAYS * 2))


def floor(seen: Seen | None, now: Now) -> int | None:
    """The least conntrack size (entries) scaling asks for: the last floor,
    doubled from the table's present size when that same table is full and
    has evicted live flows since the record; None without a record."""
    if seen is None:
        return None
    full = now.held is not None and is_full(now.held, seen.buckets * CT_WAYS)
    if evicted_since(seen, now) and full:
        return doubled(seen, seen.buckets)
    return seen.floor


def why(seen: Seen | None, now: Now) -> str | None:
    """What a plan says of scaling: why the table doubles, or why evictions
    since the last apply do not double it; None when there were none."""
    evicted = evicted_since(seen, now)
    if seen is None or not evicted or now.held is None:
        return None
    held = share(now.held, seen.buckets * CT_WAYS)
    if is_full(now.held, seen.buckets * CT_WAYS):
        return (
            f"the conntrack table is full, {held}, and evicted {evicted:,} live flow(s) "
            f"since the last apply: asking for {doubled(seen, seen.buckets)} entries "
            f"({SCALING}: DoubleIfFull)"
        )
    return (
        f"the conntrack table evicted {evicted:,} live flow(s) since the last apply but is not "
        f"full, {held}, under {FULL:.0%}: not doubled ({SCALING}: DoubleIfFull doubles a full "
        "table; evictions in one this empty come from a few crowded buckets)"
    )


def scaled(config: Mapping[str, Any], least: int | None) -> Mapping[str, Any]:
    """`config` with its conntrack size raised to the floor, when it doubles."""
    if least is None or not doubling(config) or int(config[FIELD]) >= least:
        return config
    return {**config, FIELD: least}
