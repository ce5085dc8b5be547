"""When the conntrack table is full, for bpfMapSizeConntrackScaling's
DoubleIfFull (reconciler.compile.ct_scaling) and --status alike.

Full is a share of the table's entries held: FULL, Calico's lower
threshold (Felix doubles its map when a sweep finds it over 90% full, or
over 85% and filling). A table of 7-way buckets evicts as soon as one
bucket is crowded, so an eviction alone is no sign of a full table: a pod
that aims its flows at one bucket (the hash seed is public) makes them in
a table that is all but empty. When flows number the table's size,
uniform hashing leaves some buckets short while others overflow, and the
table holds about FULL of its entries: a table that evicts at that fill
is too small for its flows. Pure."""

from __future__ import annotations

FULL = 0.85


def is_full(held: int, size: int) -> bool:
    """Does a table of `size` entries holding `held` count as full?"""
    return bool(size) and held >= FULL * size


def share(held: int, size: int) -> str:
    return f"{held:,} of {size:,} entries held ({held / size:.0%})" if size else "no entries"


def status_words(held: int, size: int) -> str:
    """What --status adds to a table's evictions: whether DoubleIfFull
    counts it full."""
    if is_full(held, size):
        return f"full ({FULL:.0%} or more held): DoubleIfFull doubles it when it evicts"
    return f"not full (under {FULL:.0%} held): DoubleIfFull does not double it for these"
