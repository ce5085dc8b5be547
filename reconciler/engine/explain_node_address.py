"""Which host endpoint judges an address of this node that no HostEndpoint's
expectedIPs list, for `--explain --kernel`.

The datapath attaches a HostEndpoint to an interface (compile/interfaces.py:
by its interfaceName, by an expectedIP the interface holds, or `*`), and the
endpoint's policy judges the traffic of every address on that interface;
expectedIPs only name the endpoint to selectors. Without --kernel explain
knows the node's addresses from expectedIPs alone. With it, an address the
datapath holds as the node's (rcl_host_ip) is judged by the host endpoint of
the interface that holds it, read from the node's links as compile selects
them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.compile.interfaces import Role, Selected, select_interfaces
from reconciler.config.model import Resource


@dataclass(frozen=True, slots=True)
class HeldBy:
    """The interface that holds an address, and the HostEndpoint attached there."""

    interface: str
    host_endpoint: str  # the HostEndpoint's name

    def note(self, addr: str) -> str:
        """The line under an answer that judged `addr` by this endpoint."""
        return (
            f"Note: {addr} is an address of this node on {self.interface} (the datapath's "
            f"rcl_host_ip holds it; no HostEndpoint's expectedIPs list it): judged by "
            f"{self.interface}'s host endpoint {self.host_endpoint}.\n"
        )


def held_by(selected: Iterable[Selected], addr: str) -> HeldBy | None:
    """The host endpoint interface among `selected` that holds `addr`, or
    None (no interface holds it, or the one that does has no host endpoint)."""
    for s in selected:
        if s.role & Role.HOST_ENDPOINT and addr in s.link.addresses:
            return HeldBy(s.link.name, s.endpoint_name)
    return None


class NodeAddresses:
    """This node's addresses as one `--explain --kernel` answer reads them:
    rcl_host_ip says whether an address is the node's, the links (read once,
    on first need) which interface holds it. `used`: the addresses judged
    this way so far, for the answer's notes."""

    def __init__(
        self, resources: Sequence[Resource], node: str, bpffs_root: str, netns: str | None
    ) -> None:
        self.resources, self.node, self.bpffs_root, self.netns = resources, node, bpffs_root, netns
        self._selected: list[Selected] | None = None
        self.used: dict[str, HeldBy] = {}

    def held_by(self, addr: int) -> HeldBy | None:
        """The interface and host endpoint that judge `addr`, when the
        datapath holds it as this node's; else None."""
        if not host_ip_loaded(self.bpffs_root, addr):
            return None
        if self._selected is None:
            self._selected = _read_selected(self.resources, self.node, self.netns)
        text = str(ipaddress.IPv4Address(addr))
        found = held_by(self._selected, text)
        if found is not None:
            self.used[text] = found
        return found


def _read_selected(resources: Sequence[Resource], node: str, netns: str | None) -> list[Selected]:
    """The interfaces of `netns` as compile selects them (one link and one
    address dump)."""
    from reconciler.config.felix import effective_config
    from reconciler.kernel.rtnetlink import Rtnl
    from reconciler.observe.kernel import read_links

    with Rtnl(netns) as rtnl:
        links = read_links(rtnl)
    return select_interfaces(resources, node, links, effective_config(resources, node))[0]


def host_ip_loaded(bpffs_root: str, addr: int) -> bool:
    """Does the pinned rcl_host_ip (every address of the node's interfaces,
    what the datapath takes for the node's own) hold `addr`? Nothing pinned:
    no (the program checks after say what is missing)."""
    from reconciler.datapath.maps import host_types as ht
    from reconciler.kernel import bpf as bpfsys

    path = Path(bpffs_root, "maps", ht.MAP_HOST_IP)
    if not path.exists():
        return False
    fd = bpfsys.obj_get(str(path))
    try:
        return bpfsys.map_lookup(fd, addr.to_bytes(4, "big")) is not None
    finally:
        bpfsys.close(fd)


def not_a_node_address(src: str, dst: str, node: str, kernel: bool) -> str:
    """The refusal of a flow neither end of which explain knows on `node`:
    what explain knew the node's addresses from, and what to do."""
    head = f"neither {src} nor {dst} is a WorkloadEndpoint or HostEndpoint on node {node}"
    if kernel:
        return (
            f"{head}, nor an address the datapath holds as this node's (rcl_host_ip) on an "
            "interface with a host endpoint: explain judges flows that start or end at this "
            "node; name a pod, a host endpoint or an address of this node at one end"
        )
    return (
        f"{head}: neither address is in any HostEndpoint's expectedIPs, and without --kernel "
        "explain knows this node's addresses from those alone; if one of them is an address "
        "of this node, run --explain --kernel on the node (it reads the node's addresses and "
        "judges the flow by the host endpoint of the interface that holds it)"
    )
