"""IP protocol names as Calico spells them, and their numbers: one table for
validation, policy and plans."""

from __future__ import annotations

PROTOCOLS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}
PROTO_NAMES = {v: k.lower() for k, v in PROTOCOLS.items()}
