"""Every map codec round-trips: what observe decodes, the drivers encode back."""

import pytest

from reconciler.datapath.maps import codecs as entries
from reconciler.kernel import bpf as bpfsys

CASES = [
    (
        "rcl_nat_fe",
        "10.96.0.10:53/udp",
        {"svc_id": 7, "count": 3, "local_count": 1, "flags": 5, "affinity_timeout_s": 60},
    ),
    ("rcl_nat_be", "0000abcd/2", {"ip": "10.65.0.20", "port": 8080}),
    ("rcl_nat_src", "0000abcd/203.0.113.0/24", {}),
    ("rcl_nat_src", "0badc0de/0.0.0.0/0", {}),
    (
        "rcl_nat_globals",
        "0",
        {
            "tcp_syn_sent_s": 20,
            "tcp_established_s": 3600,
            "tcp_fin_s": 30,
            "tcp_rst_s": 40,
            "udp_s": 60,
            "generic_s": 600,
            "ctlb": 0,
            "host_nat": 1,
            "host_netns": 4097,
        },
    ),
    ("rcl_ifstate", "eth0", {"slot": 4, "ifindex": 3, "flags": 10}),
    ("rcl_wep_src", "eth0", {"slot": 4, "ifindex": 3, "nets": "10.65.0.10/32,192.0.2.0/24"}),
    ("rcl_wep_src", "eth0@0", {"slot": 0, "ifindex": 3, "nets": ""}),
    (
        "rcl_globals",
        "0",
        {
            "log_level": 1,
            "endpoint_to_host": "Accept",
            "rpf": "Strict",
            "vxlan_port": 4789,
            "vxlan_from_workloads": "Allow",
            "ipip_from_workloads": "Drop",
        },
    ),
    (
        "rcl_pol_hep",
        "eth0",
        {
            "slot": 3,
            "ifindex": 3,
            "ingress": "0000abcd",
            "egress": "00000002",
            "forward-ingress": "00000000",
            "forward-egress": "00000000",
            "prednat": "12345678",
            "untracked-egress": "00c0ffee",
            "untracked-egress-nets": "16,0",
        },
    ),
    ("rcl_failsafe", "in/tcp/22", {}),
    ("rcl_failsafe", "out/udp/53/10.0.0.0/8", {}),
    ("rcl_host_ip", "192.168.50.1", {}),
    ("rcl_pol_exact", "0badc0de/net/10.1.0.0/16", {"class": 2, "flags": 0}),
    ("rcl_xdp_ep", "eth0", {"ifindex": 3, "slot": 3, "untracked": "0badc0de", "nets": "24,0"}),
]


@pytest.mark.parametrize("name,text,attrs", CASES, ids=[f"{c[0]}/{c[1]}" for c in CASES])
def test_round_trip(name, text, attrs):
    key, value = entries.encode(name, text, attrs)
    ctx = entries.Context({3: "eth0"})
    assert entries.decode_all(name, [(key, value)], ctx) == [(text, attrs)]


def test_network_byte_order_on_the_wire():
    key, value = entries.encode("rcl_nat_fe", "10.96.0.10:53/udp", CASES[0][2])
    assert key == bytes([10, 96, 0, 10, 0, 53, 17, 0])


def test_entries_of_deleted_interfaces_are_named_by_index():
    key, value = entries.encode("rcl_ifstate", "x", {"slot": 1, "ifindex": 9, "flags": 1})
    assert entries.decode_all("rcl_ifstate", [(key, value)], entries.Context({})) == [
        ("#9", {"slot": 1, "ifindex": 9, "flags": 1})
    ]


def test_interface_state_is_by_slot_and_an_update_keeps_the_counters():
    from reconciler.datapath.maps import iface_types as il

    attrs = {"slot": 3, "ifindex": 9, "flags": 5}
    key, value = entries.encode("rcl_ifstate", "x", attrs)
    assert key == il.U32.pack(3)
    assert value == il.IFSTATE.pack(5, 9, 0, 0, 0, 0, 0, 0)  # counters start at zero
    per_cpu = [
        il.IFSTATE.pack(5, 9, 1, 100, 2, 200, 0, 1),
        il.IFSTATE.pack(5, 9, 3, 300, 0, 0, 1, 0),
    ]
    assert entries.decode_all("rcl_ifstate", [(key, per_cpu)], entries.Context({9: "cali1"})) == [
        ("cali1", attrs)
    ]
    updated = il.with_head(per_cpu, 7, 9)
    assert [il.IFSTATE_HEAD.unpack_from(c) for c in updated] == [(7, 9), (7, 9)]
    assert il.Counters.sum_per_cpu(updated) == il.Counters(4, 400, 2, 200, 1, 1)
    now = bpfsys.MapInfo(il.PERCPU_ARRAY, 1, 4, il.IFSTATE.size, 1001, "rcl_ifstate")
    by_ifindex = bpfsys.MapInfo(il.PERCPU_HASH, 1, 4, il.IFSTATE.size, 1000, "rcl_ifstate")
    flags_only = bpfsys.MapInfo(1, 1, 4, 8, 1000, "rcl_ifstate")  # a plain hash of flags
    assert il.current_layout(now)
    assert not il.current_layout(by_ifindex) and not il.current_layout(flags_only)
    # an update writes new flags and keeps the counters the datapath keeps
    assert entries.keeps_kernel_fields("rcl_ifstate")
    assert not entries.keeps_kernel_fields("rcl_globals")
    assert entries.updated("rcl_ifstate", per_cpu, {**attrs, "flags": 7}) == updated


def test_unused_slots_are_no_entries_and_a_slot_is_cleared_only_while_it_is_the_entrys():
    from reconciler.datapath.maps import iface_types as il

    empty = [bytes(il.IFSTATE.size)] * 2
    assert entries.decode_all("rcl_ifstate", [(il.U32.pack(1), empty)], entries.Context({})) == []
    assert entries.cleared_by_write("rcl_ifstate")
    assert not entries.cleared_by_write("rcl_globals")
    before = {"slot": 1, "ifindex": 9, "flags": 1}
    counted = [il.IFSTATE.pack(1, 9, 5, 500, 0, 0, 0, 0)] * 2
    assert entries.cleared("rcl_ifstate", counted, before) == empty
    handed_on = [il.IFSTATE.pack(1, 12, 0, 0, 0, 0, 0, 0)] * 2  # another interface's now
    assert entries.cleared("rcl_ifstate", handed_on, before) is None


def test_an_interface_written_into_two_slots_is_two_entries():
    from reconciler.datapath.maps import iface_types as il

    items = [(il.U32.pack(slot), il.IFSTATE.pack(1, 9, 0, 0, 0, 0, 0, 0)) for slot in (2, 5)]
    assert entries.decode_all("rcl_ifstate", items, entries.Context({9: "cali1"})) == [
        ("cali1", {"slot": 2, "ifindex": 9, "flags": 1}),
        ("cali1@5", {"slot": 5, "ifindex": 9, "flags": 1}),
    ]


def test_an_entry_in_slot_0_is_never_an_interfaces_own():
    from reconciler.datapath.maps import iface_types as il
    from reconciler.observe.kernel import held_slots
    from reconciler.plan.state import Obj, ObjKind, ObservedState

    items = [(il.U32.pack(slot), il.IFSTATE.pack(1, 9, 0, 0, 0, 0, 0, 0)) for slot in (0, 4)]
    decoded = entries.decode_all("rcl_ifstate", items, entries.Context({9: "cali1"}))
    assert decoded == [
        ("cali1@0", {"slot": 0, "ifindex": 9, "flags": 1}),
        ("cali1", {"slot": 4, "ifindex": 9, "flags": 1}),
    ]
    addresses = [(f"map/rcl_ifstate/{key}", attrs) for key, attrs in decoded]
    observed = ObservedState({a: Obj(a, ObjKind.ENTRY, attrs) for a, attrs in addresses}, ())
    assert held_slots(observed) == {9: 4}


def test_interface_heads_that_differ_between_cpus_are_drift():
    from reconciler.datapath.maps import iface_types as il

    key, _ = entries.encode("rcl_ifstate", "x", {"slot": 1, "ifindex": 9, "flags": 1})
    mixed = [il.IFSTATE.pack(1, 9, 0, 0, 0, 0, 0, 0), il.IFSTATE.pack(3, 4, 0, 0, 0, 0, 0, 0)]
    [(_, attrs)] = entries.decode_all("rcl_ifstate", [(key, mixed)], entries.Context({}))
    assert attrs == {
        "slot": 1,
        "ifindex": 4,
        "flags": 1,
        "flags_per_cpu": "differ: 1,3",
        "ifindex_per_cpu": "differ: 4,9",
    }
