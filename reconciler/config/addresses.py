"""Which addresses a Service or an endpoint may use, as Kubernetes decides.

The API server refuses service and endpoint addresses that are unspecified,
loopback or link-local (ValidateNonSpecialIP), and endpoints that are
multicast; we refuse multicast and the limited broadcast address for every
field as well. Programmed into the NAT tables, any of them would take over
traffic that is not the service's: `externalIPs: [127.0.0.1]` answers the
node's own loopback connections, `0.0.0.0` matches what the kernel treats
as "this host".
"""

from __future__ import annotations

import ipaddress

_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def special_kind(text: str) -> str | None:
    """Why `text` cannot be a service or endpoint address, or None (also for
    text that is no address: that is another check's finding)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address == _BROADCAST:
        return "broadcast"
    return None


def refusal(text: str) -> str | None:
    """The message for an address a service or endpoint may not use."""
    kind = special_kind(text)
    if kind is None:
        return None
    article = "an" if kind[0] in "aeiou" else "a"
    return f"'{text}' is {article} {kind} address, which may not be used here"
