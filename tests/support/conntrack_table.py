"""Conntrack table helpers for tests and harnesses (bpf/lib/conntrack.h)."""

from __future__ import annotations

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys


def clear(fd: int) -> None:
    """Every bucket of the conntrack table `fd` emptied (only those in use
    are written)."""
    values = bpfsys.map_raw(fd).values
    empty = bytes(ct_table.BUCKET)
    for i in range(len(values) // ct_table.BUCKET):
        if values[i * ct_table.BUCKET : (i + 1) * ct_table.BUCKET] != empty:
            bpfsys.map_update(fd, nl.U32.pack(i), empty)
