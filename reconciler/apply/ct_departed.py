"""Conntrack hygiene when a workload address leaves its endpoint.

Policy trusts a conntrack entry for the life of its flow, and its entries
are keyed by address: an endpoint's identity on the node is not in them.
When a pod goes and another gets its address, flows the old pod's policy
approved would reach the new pod past its own policy as long as their
sender keeps them alive. So, as Calico's Felix deletes the conntrack
entries of a workload address when its route goes, once an apply has
moved or removed a workload's address the reconciler removes every
conntrack entry naming that address: policy's and masquerade's (the key's
source or destination) and service NAT's (also a backend). The flows'
next packets are judged afresh, by the policy of whoever holds the address
now.

A workload's addresses are the single addresses (/32) its rcl_wep_src
entry lets it send from; one leaves its endpoint when the entry of that
interface no longer lists it, or the interface went (a pod re-created
under the same interface name comes back with a new ifindex). Only the
changes an apply made are read, as for departed backends
(conntrack_gc): the kernel held the `before` of each, the apply wrote its
`after`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nat
from reconciler.datapath.maps.iface_types import MAP_WEP_SRC
from reconciler.kernel import bpf as bpfsys
from reconciler.plan.address import Address
from reconciler.plan.diff import Change
from reconciler.plan.state import ObjKind

_NAT_TYPES = (int(nat.CtType.FORWARD), int(nat.CtType.REVERSE))


def _hosts(attrs: Mapping[str, object] | None) -> set[tuple[int, bytes]]:
    """(ifindex, address) of each single address in an rcl_wep_src entry."""
    if not attrs:
        return set()
    ifindex = int(str(attrs.get("ifindex") or 0))
    found = set()
    for text in str(attrs.get("nets") or "").split(","):
        try:
            net = ipaddress.IPv4Network(text.strip())
        except ValueError:
            continue
        if net.prefixlen == 32:
            found.add((ifindex, net.network_address.packed))
    return found


def departed(changes: Sequence[Change]) -> set[bytes]:
    """Addresses (4 bytes, network order) that an interface listed before
    these changes and no longer lists after them: removed, or moved to
    another interface."""
    before: set[tuple[int, bytes]] = set()
    after: set[tuple[int, bytes]] = set()
    for change in changes:
        if change.kind is ObjKind.ENTRY and Address.parse(change.address).map == MAP_WEP_SRC:
            before |= _hosts(change.before)
            after |= _hosts(change.after)
    return {address for _ifindex, address in before - after}


def names(key: bytes, value: bytes, addresses: set[bytes]) -> bool:
    """Does the entry belong to a flow one of `addresses` took part in: as
    its key's source or destination, or as a NAT entry's backend?"""
    src, dst = key[0:4], key[4:8]
    if src in addresses or dst in addresses:
        return True
    fields = nat.CT_VAL.unpack(value)
    return fields[8] in _NAT_TYPES and fields[5] in addresses


def clean(ct_fd: int, kill_fd: int, addresses: Iterable[bytes]) -> int:
    """Remove the entries naming any of `addresses` through the datapath's
    rcl_ct_kill_slot program (an entry goes only if its way still holds
    what was read). Returns how many went."""
    wanted = set(addresses)
    removed = 0
    for index, ver, key, value in ct_table.live(ct_table.table(ct_fd), addresses=wanted):
        if names(key, value, wanted) and ct_table.kill(kill_fd, index, ver):
            removed += 1
    return removed


def after_workload_changes(changes: Sequence[Change], bpffs_root: str) -> list[tuple[str, str]]:
    """The apply's clean-up once workload addresses left their endpoints:
    (what, result) for the apply's summary; none when nothing left."""
    addresses = departed(changes)
    root = Path(bpffs_root)
    if not addresses or not (root / "maps" / ct_table.MAP).exists():
        return []
    kill = next(root.glob(f"progs/tc-*/{ct_table.KILL_PROGRAM}"), None)
    if kill is None:
        return []  # no tc programs: nothing can hold conntrack entries
    ct_fd = bpfsys.obj_get(str(root / "maps" / ct_table.MAP))
    try:
        kill_fd = bpfsys.obj_get(str(kill))
        try:
            removed = clean(ct_fd, kill_fd, addresses)
        finally:
            bpfsys.close(kill_fd)
    finally:
        bpfsys.close(ct_fd)
    shown = ", ".join(sorted(str(ipaddress.IPv4Address(a)) for a in addresses))
    return [("conntrack", f"removed {removed} entries of departed workload addresses ({shown})")]
