"""The route this node takes back to an address, as the datapath's
reverse-path check (bpfEnforceRPF) asks the FIB for it."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from reconciler.kernel.pyroute import route

RTN_UNICAST = 1
RTN_LOCAL = 2

# How the kernel refuses a route lookup, by the route it met: a blackhole
# route answers EINVAL, an unreachable one EHOSTUNREACH, a prohibit one
# EACCES; no route at all is ENETUNREACH.
REFUSALS = {
    errno.EINVAL: "blackhole",
    errno.EHOSTUNREACH: "unreachable",
    errno.EACCES: "prohibit",
    errno.ENETUNREACH: "none",
}


@dataclass(frozen=True, slots=True)
class RouteBack:
    """`kind`: "unicast" (leaves by `dev`), "local" (an address of this
    node's own), or why there is no way back: "blackhole", "unreachable",
    "prohibit", "none" (no route), or another kernel error's text."""

    kind: str
    dev: str = ""


def route_back(addr: str, netns: str | None = None) -> RouteBack:
    """The route to `addr` in `netns` (None: this namespace)."""
    from pyroute2.netlink.exceptions import NetlinkError

    with route(netns) as ipr:
        try:
            msg = ipr.route("get", dst=addr)[0]
        except NetlinkError as exc:
            return RouteBack(REFUSALS.get(exc.code, os.strerror(exc.code)))
        if msg["type"] == RTN_LOCAL:
            return RouteBack("local")
        if msg["type"] != RTN_UNICAST:
            return RouteBack(f"route type {msg['type']}")
        link = ipr.link("get", index=msg.get_attr("RTA_OIF"))[0]
        return RouteBack("unicast", str(link.get_attr("IFLA_IFNAME")))
