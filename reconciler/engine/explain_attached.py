"""Is a workload's policy program attached where the datapath runs it?

`--explain --kernel` runs the loaded program on a crafted packet; that says
what the program decides, not that any packet meets it. A workload's
interface without our tc filter (an `ingress` qdisc not ours holds the
place of our clsact: blocked, see engine/foreign_place.py) enforces
nothing of ours, whatever the program says.
"""

from __future__ import annotations

import re

from reconciler.kernel.rtnetlink import Rtnl
from reconciler.observe.kernel import foreign_qdiscs, parse_filters, read_filters, read_links
from reconciler.plan.address import Address

# The tc hook that runs a workload's policy: the pod's egress policy where
# its packets enter the host (tc ingress), its ingress policy where they
# leave the host for the pod (tc egress).
WORKLOAD_HOOKS = {"egress": "ingress", "ingress": "egress"}


def not_attached(iface: str, direction: str, netns: str | None) -> str:
    """'' when a tc filter of ours runs the workload's `direction` policy on
    `iface` in `netns`; else why none does, in a few words."""
    hook = WORKLOAD_HOOKS[direction]
    with Rtnl(netns) as rtnl:
        links = [link for link in read_links(rtnl) if link.name == iface]
        if not links:
            return "no such interface in this namespace"
        qdiscs = rtnl.qdiscs()
        filters = read_filters(rtnl, links, qdiscs)
    ours, _ = parse_filters(filters)
    if any(o.address == Address.tc_text(iface, hook) for o in ours):
        return ""
    if foreign_qdiscs(qdiscs, links):
        return "blocked: an ingress qdisc not ours holds the place of our clsact"
    return f"no tc {hook} filter of ours there"


def unenforced_note(iface: str, why: str) -> str:
    """The kernel line of a step whose interface carries nothing of ours."""
    return (
        f"our program is not attached to {iface} ({why}): this interface enforces nothing of ours"
    )


_NOTE = re.compile(r"kernel: our program is not attached to (\S+) \(")


def unattached_ifaces(text: str) -> list[str]:
    """The interfaces an explain answer's unenforced_note lines name, once each."""
    return sorted(set(_NOTE.findall(text)))
