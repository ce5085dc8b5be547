"""Is a workload's policy program attached where the datapath runs it?

`--explain --kernel` runs the loaded program on a crafted packet; that says
what the program decides, not that any packet meets it. A workload's
interface without our tc filter (an `ingress` qdisc not ours holds the
place of our clsact: blocked, see engine/foreign_place.py) enforces
nothing of ours, whatever the program says.

One explain run asks about several steps, often on several interfaces:
`AttachedCheck` reads the namespace's links and qdiscs once, at its first
question, and each interface's filters once; `not_attached` decides from
what was read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.kernel.rtnetlink import QdiscMsg, Rtnl
from reconciler.observe.kernel import foreign_qdiscs, parse_filters, read_filters
from reconciler.plan.address import Address
from reconciler.plan.state import Link

# The tc hook that runs a workload's policy: the pod's egress policy where
# its packets enter the host (tc ingress), its ingress policy where they
# leave the host for the pod (tc egress).
WORKLOAD_HOOKS = {"egress": "ingress", "ingress": "egress"}


@dataclass(frozen=True, slots=True)
class TcSnapshot:
    """What one read of a namespace showed of its tc: its links by name, its
    qdiscs, and where filters of ours sit on the interfaces read so far."""

    links: Mapping[str, Link]
    qdiscs: tuple[QdiscMsg, ...]
    ours: frozenset[str] = frozenset()  # tc addresses (Address.tc_text) of our filters
    filters_read: frozenset[str] = frozenset()  # the interfaces whose filters are in `ours`


def not_attached(snapshot: TcSnapshot, iface: str, direction: str) -> str:
    """'' when a tc filter of ours runs the workload's `direction` policy on
    `iface`; else why none does, in a few words. `snapshot` holds `iface`'s
    filters (AttachedCheck.snapshot_for)."""
    hook = WORKLOAD_HOOKS[direction]
    link = snapshot.links.get(iface)
    if link is None:
        return "no such interface in this namespace"
    if Address.tc_text(iface, hook) in snapshot.ours:
        return ""
    if foreign_qdiscs(snapshot.qdiscs, [link]):
        return "blocked: an ingress qdisc not ours holds the place of our clsact"
    return f"no tc {hook} filter of ours there"


class AttachedCheck:
    """`not_attached` for the interfaces of one namespace, over one explain
    run: each kernel fact is read once, on first need (a run that asks
    about no workload reads nothing)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self._snapshot: TcSnapshot | None = None

    def why_not(self, iface: str, direction: str) -> str:
        return not_attached(self.snapshot_for(iface), iface, direction)

    def snapshot_for(self, iface: str) -> TcSnapshot:
        """The snapshot, with `iface`'s filters read into it if they are not yet."""
        snap = self._snapshot
        if snap is not None and (iface in snap.filters_read or iface not in snap.links):
            return snap
        with Rtnl(self.netns) as rtnl:
            if snap is None:
                # names and indexes are all a link is asked for here: no address dump
                links = {m.ifname: Link(m.ifname, m.ifindex, ()) for m in rtnl.links()}
                snap = TcSnapshot(links, tuple(rtnl.qdiscs()))
            link = snap.links.get(iface)
            filters = read_filters(rtnl, [link], snap.qdiscs) if link is not None else []
        ours, _ = parse_filters(filters)
        snap = TcSnapshot(
            snap.links, snap.qdiscs, snap.ours | {o.address for o in ours},
            snap.filters_read | {iface},
        )  # fmt: skip
        self._snapshot = snap
        return snap


def unenforced_note(iface: str, why: str) -> str:
    """The kernel line of a step whose interface carries nothing of ours."""
    return (
        f"our program is not attached to {iface} ({why}): this interface enforces nothing of ours"
    )
