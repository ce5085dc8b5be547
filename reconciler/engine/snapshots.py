"""Snapshots of a node (observe.snapshot): taking one from the kernel, and
the Target that plans against one instead of the kernel."""

from __future__ import annotations

import dataclasses
from typing import Any

from reconciler.engine.caches import Caches
from reconciler.engine.history import now_iso
from reconciler.engine.reconcile import Target, host_facts, removal_notes
from reconciler.observe import snapshot as snapshots


def take(target: Target, caches: Caches) -> dict[str, Any]:
    """This node's observed state and host facts, as JSON-ready values, with
    the notes its applied record has for the entries it holds."""
    from reconciler.observe.kernel import observe

    observed, links = observe(target.bpffs_root, target.netns)
    host = host_facts(target, links)
    notes = removal_notes(target, caches, observed).for_observed(observed)
    snap = snapshots.Snapshot(
        target.node,
        target.bpffs_root,
        now_iso(),
        observed,
        tuple(links),
        host.facts(),
        notes,
    )
    return snapshots.dump(snap)


def against(target: Target, path: str) -> Target:
    """`target` planning against the snapshot at `path`: the snapshot's node
    name and bpffs root (the pin paths compiled into programs), its facts."""
    snap = snapshots.read(path)
    return dataclasses.replace(
        target, node=snap.node, bpffs_root=snap.bpffs_root, netns=None, snapshot=snap
    )


SnapshotError = snapshots.SnapshotError
