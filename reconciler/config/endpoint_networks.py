"""The IPv4 networks a workload interface may send from, and how many the
datapath can check.

A workload's rcl_wep_src entry (reconciler.compile.workload_source) holds at
most WEP_NETS networks: its ipNetworks, plus its allowSpoofedSourcePrefixes
where FelixConfiguration workloadSourceSpoofing is Any, adjacent ones merged.
ipNetworks alone over the limit is refused by every node that hosts the
workload, so validation refuses it; the spoofing allowances count under the
hosting node's configuration, which a plan knows
(reconciler.compile.config_limits). Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.config.diagnostics import Finding
from reconciler.config.model import Resource

# The networks one rcl_wep_src value holds (datapath.maps.iface_types.WEP_NETS,
# bpf/lib/iface_types.h; tests/unit/test_endpoint_networks.py keeps them equal).
WEP_NETS = 8
IP_NETWORKS = ("spec", "ipNetworks")
SPOOFED = ("spec", "allowSpoofedSourcePrefixes")


def ipv4_networks(texts: Iterable[Any]) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks among `texts`; others (IPv6, invalid: the schema's
    finding) are left out."""
    out = []
    for text in texts:
        try:
            net = ipaddress.ip_network(str(text), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            out.append(net)
    return out


def merged(nets: Iterable[ipaddress.IPv4Network]) -> list[ipaddress.IPv4Network]:
    """`nets` as the datapath holds them: covered and adjacent ones merged."""
    return list(ipaddress.collapse_addresses(nets))


def send_networks(spec: Mapping[str, Any], spoofing: bool) -> list[ipaddress.IPv4Network]:
    """What a workload may send from: its ipNetworks, and its
    allowSpoofedSourcePrefixes when `spoofing` (workloadSourceSpoofing: Any)."""
    nets = ipv4_networks(_listed(spec.get("ipNetworks")))
    if spoofing:
        nets += ipv4_networks(_listed(spec.get("allowSpoofedSourcePrefixes")))
    return merged(nets)


def too_many(count: int, spoofing: bool) -> str:
    what = "ipNetworks and allowSpoofedSourcePrefixes" if spoofing else "ipNetworks"
    return (
        f"{count} IPv4 networks to send from ({what}, adjacent ones merged); the datapath "
        f"checks at most {WEP_NETS} per workload: list at most {WEP_NETS} (one wider prefix "
        "covers several)"
    )


def findings(resource: Resource) -> list[Finding]:
    """A WorkloadEndpoint whose ipNetworks alone are more than any node can
    check."""
    if resource.kind != "WorkloadEndpoint":
        return []
    count = len(send_networks(resource.spec, spoofing=False))
    return [Finding(IP_NETWORKS, too_many(count, False))] if count > WEP_NETS else []


def _listed(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
