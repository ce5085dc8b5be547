"""bpfMapSizeConntrackScaling: DoubleIfFull (Calico's default) doubles the
conntrack table once it is too full for its flows. Ours is full in the way
that matters when the datapath evicts a live flow's entry to make room
(rcl_nat_stats ct_evicted): the next plan then asks for twice the table
(a resize, entries migrated). The doubled size is a floor that stays:
lowering bpfMapSizeConntrack does not shrink below it; `Disabled` does.
Pure: the record of what the node saw last, and what it sees now, in; the
floor out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def doubling(config: Mapping[str, Any]) -> bool:
    return str(config.get(SCALING) or "DoubleIfFull").lower() == "doubleiffull"


def floor(seen: Seen | None, buckets: int | None, evicted: int | None) -> int | None:
    """The least conntrack size (entries) scaling asks for: the last floor,
    doubled from the table's present size when that same table has evicted
    live flows since the record; None without a record."""
    if seen is None:
        return None
    if buckets == seen.buckets and evicted is not None and evicted > seen.evicted:
        return min(MAX_ENTRIES, max(seen.floor or 0, buckets * CT_WAYS * 2))
    return seen.floor


def scaled(config: Mapping[str, Any], least: int | None) -> Mapping[str, Any]:
    """`config` with its conntrack size raised to the floor, when it doubles."""
    if least is None or not doubling(config) or int(config[FIELD]) >= least:
        return config
    return {**config, FIELD: least}
