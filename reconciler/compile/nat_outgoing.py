"""IPPool natOutgoing: what pods of a pool send beyond every pool leaves
with the node's address (MASQUERADE), or with FelixConfiguration's
natOutgoingAddress (SNAT), on natPortRange's ports when set. As Felix does,
a chain of netfilter's nat table in the node's namespace, jumped to from
POSTROUTING: traffic to any pool returns first, then each natOutgoing
pool's sources are translated. Pure: the rules as iptables-save prints
them, so that what the kernel holds compares equal."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.config.model import Resource
from reconciler.datapath.chains import NAT_OUTGOING_CHAIN, NAT_OUTGOING_JUMP
from reconciler.plan.address import NAT_OUTGOING, Address
from reconciler.plan.state import Obj, ObjKind

CHAIN, JUMP = NAT_OUTGOING_CHAIN, NAT_OUTGOING_JUMP


def _pools(resources: Sequence[Resource]) -> tuple[list[str], list[str]]:
    """(every IPv4 pool's CIDR, those with natOutgoing), normalized, sorted."""
    every, masq = set(), set()
    for r in resources:
        if r.kind != "IPPool":
            continue
        try:
            net = ipaddress.ip_network(str(r.spec.get("cidr", "")), strict=False)
        except ValueError:
            continue  # (validation reports it)
        if net.version != 4:
            continue  # IPv4 only, as the datapath
        every.add(net)
        if r.spec.get("natOutgoing"):
            masq.add(net)
    return [str(n) for n in sorted(every)], [str(n) for n in sorted(masq)]


def port_range(value: Any) -> str | None:
    """natPortRange ("20000:29999", or one port) as iptables writes it."""
    if value in (None, "", 0):
        return None
    low, _, high = str(value).partition(":")
    return f"{int(low)}-{int(high or low)}"


def rules(
    every: Sequence[str], masq: Sequence[str], address: str | None, ports: str | None
) -> tuple[str, ...]:
    """The jump and the chain's rules, in iptables-save's words and order."""
    out = [JUMP, *(f"-A {CHAIN} -d {net} -j RETURN" for net in every)]
    for net in masq:
        head = f"-A {CHAIN} -s {net}"
        if address:
            target = f"-j SNAT --to-source {address}"
            with_ports = f"-j SNAT --to-source {address}:{ports}"
        else:
            target = "-j MASQUERADE --random-fully"
            with_ports = f"-j MASQUERADE --to-ports {ports} --random-fully"
        if ports:  # ports only mean something to TCP and UDP; the rest keep theirs
            out += [f"{head} -p tcp {with_ports}", f"{head} -p udp {with_ports}"]
        out.append(f"{head} {target}")
    return tuple(out)


def compile_nat_outgoing(resources: Sequence[Resource], config: Mapping[str, Any]) -> Fragment:
    every, masq = _pools(resources)
    if not masq:
        return Fragment()
    address = str(config.get("natOutgoingAddress") or "") or None
    attrs = {"rules": list(rules(every, masq, address, port_range(config.get("natPortRange"))))}
    info = {"pools": masq}
    obj = Obj(str(Address.of_iptables(NAT_OUTGOING)), ObjKind.IPTABLES, attrs, info)
    return Fragment(objects=(obj,))
