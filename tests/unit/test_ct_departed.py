"""reconciler.apply.ct_departed: which workload addresses an apply took from
their endpoints, and which conntrack entries name them (found without a
scan of the table)."""

from __future__ import annotations

from ipaddress import IPv4Address

from reconciler.apply.ct_departed import departed, names
from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nl
from reconciler.plan.address import Address
from reconciler.plan.diff import Action, Change
from reconciler.plan.state import ObjKind
from tests.support import nat_records as nr

A, B, C = IPv4Address("10.65.0.20"), IPv4Address("10.65.0.10"), IPv4Address("10.65.0.30")
VIP = IPv4Address("10.96.0.10")


def wep_src(action: Action, iface: str, before=None, after=None) -> Change:
    address = Address.entry_text("rcl_wep_src", iface)
    return Change(action, address, ObjKind.ENTRY, before, after, {})


def src(ifindex: int, nets: str, slot: int = 1) -> dict:
    return {"slot": slot, "ifindex": ifindex, "nets": nets}


def test_an_address_whose_interface_went_or_lists_it_no_more_departs():
    gone = wep_src(Action.DELETE, "cali-old", before=src(5, f"{A}/32"))
    assert departed([gone]) == {A.packed}
    # moved to another endpoint: still departed from the one that had it
    moved = wep_src(Action.CREATE, "cali-new", after=src(9, f"{A}/32"))
    assert departed([gone, moved]) == {A.packed}
    # the same interface name, a new interface (a pod re-created)
    again = wep_src(Action.UPDATE, "cali-x", before=src(5, f"{A}/32"), after=src(9, f"{A}/32"))
    assert departed([again]) == {A.packed}
    # an interface's addresses changed: the one it lost
    changed = wep_src(
        Action.UPDATE, "cali-x", before=src(5, f"{A}/32,{B}/32"), after=src(5, f"{B}/32")
    )
    assert departed([changed]) == {A.packed}


def test_an_address_that_stays_with_its_interface_does_not_depart():
    # a slot handed on, an interface renamed: the same interface keeps it
    slot = wep_src(Action.UPDATE, "cali-x", before=src(5, f"{A}/32"), after=src(5, f"{A}/32", 2))
    renamed = [
        wep_src(Action.DELETE, "cali-a", before=src(5, f"{A}/32")),
        wep_src(Action.CREATE, "cali-b", after=src(5, f"{A}/32")),
    ]
    new = wep_src(Action.CREATE, "cali-y", after=src(7, f"{C}/32"))
    assert departed([slot]) == departed(renamed) == departed([new]) == set()
    # a wider network (allowSpoofedSourcePrefixes) is no workload's address
    spoof = wep_src(Action.DELETE, "cali-z", before=src(6, "10.66.0.0/24"))
    assert departed([spoof]) == set()
    # other maps' entries are not endpoints
    ep = Address.entry_text("rcl_pol_ep", "cali-q")
    other = Change(Action.DELETE, ep, ObjKind.ENTRY, src(5, f"{A}/32"), None, {})
    assert departed([other]) == set()


def key(src_ip, dst_ip, sport=40000, dport=9999, space=0) -> bytes:
    raw = nr.CtKey(src_ip, dst_ip, sport, dport, nl.Proto.UDP).encode()
    return raw[:13] + bytes([space]) + raw[14:]


NOBODY = IPv4Address("0.0.0.0")


def value(kind: nl.CtType, be_ip: IPv4Address = NOBODY) -> bytes:
    return nr.CtEntry(1, 2, 0, 0, VIP, be_ip, 80, 9999, kind, nl.CtFlag(0)).encode()


POLICY = 1  # RCL_CT_KEY_POLICY


def test_entries_of_a_departed_address_are_those_that_name_it():
    gone = {A.packed}
    # policy's entries: the flow's and its replies'
    assert names(key(B, A, space=POLICY), value(nl.CtType.POL_FWD), gone)
    assert names(key(A, B, space=POLICY), value(nl.CtType.POL_REV), gone)
    # service NAT: the pod as a client, and as a backend
    assert names(key(A, VIP), value(nl.CtType.FORWARD, C), gone)
    assert names(key(B, VIP), value(nl.CtType.FORWARD, A), gone)
    assert names(key(A, B), value(nl.CtType.REVERSE, A), gone)
    # others' flows
    assert not names(key(B, C, space=POLICY), value(nl.CtType.POL_FWD), gone)
    assert not names(key(B, VIP), value(nl.CtType.FORWARD, C), gone)
    # a policy entry's value names no backend, whatever its bytes
    assert not names(key(B, C, space=POLICY), value(nl.CtType.POL_FWD, A), gone)


def test_the_table_search_finds_every_entry_that_may_name_an_address():
    buckets = 400
    peers = [B, C, IPv4Address("10.65.0.40")]
    entries = []
    for i in range(300):
        peer = peers[i % 3]
        if i % 5 == 0:
            entries.append((key(peer, VIP, 30000 + i), value(nl.CtType.FORWARD, peers[i % 2])))
        else:
            entries.append((key(peer, peers[(i + 1) % 3], 30000 + i, space=POLICY),
                            value(nl.CtType.POL_FWD)))  # fmt: skip
    table = bytearray(buckets * ct_table.BUCKET)
    for b, raw in ct_table.place(entries, buckets).items():
        table[b * ct_table.BUCKET : (b + 1) * ct_table.BUCKET] = raw
    every = list(ct_table.live(bytes(table)))
    for wanted in ({B.packed}, {C.packed, IPv4Address("10.65.0.40").packed}, set()):
        found = ct_table.live(bytes(table), addresses=wanted)
        got = [e for e in found if names(e[2], e[3], wanted)]
        assert got == [e for e in every if names(e[2], e[3], wanted)]
    assert len(every) > 250
