"""What the node's kernel holds now, for metrics: owned objects, map fill,
and the datapath's per-interface and service NAT counters."""

from __future__ import annotations

from typing import Any

from reconciler.engine.reconcile import Target


def node_stats(target: Target) -> dict[str, Any]:
    from reconciler.observe.status import collect_status

    return collect_status(target)
