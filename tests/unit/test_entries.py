"""Every map codec round-trips: what observe decodes, the drivers encode back."""

import pytest

from reconciler import bpfsys, entries

CASES = [
    (
        "map/rcl_nat_fe/10.96.0.10:53/udp",
        {"svc_id": 7, "count": 3, "local_count": 1, "flags": 5, "affinity_timeout_s": 60},
    ),
    ("map/rcl_nat_be/0000abcd/2", {"ip": "10.65.0.20", "port": 8080}),
    (
        "map/rcl_nat_globals/0",
        {
            "tcp_syn_sent_s": 20,
            "tcp_established_s": 3600,
            "tcp_fin_s": 30,
            "tcp_rst_s": 40,
            "udp_s": 60,
            "generic_s": 600,
            "ctlb": 2,
        },
    ),
    ("map/rcl_ifstate/eth0", {"ifindex": 3, "flags": 10}),
    ("map/rcl_globals/0", {"log_level": 1}),
]


@pytest.mark.parametrize("address,attrs", CASES, ids=[c[0] for c in CASES])
def test_round_trip(address, attrs):
    key, value = entries.encode(address, attrs)
    name, _ = entries.split(address)
    ctx = entries.Context({3: "eth0"})
    assert entries.decode_all(name, [(key, value)], ctx) == [(address, attrs)]


def test_network_byte_order_on_the_wire():
    key, value = entries.encode("map/rcl_nat_fe/10.96.0.10:53/udp", CASES[0][1])
    assert key == bytes([10, 96, 0, 10, 0, 53, 17, 0])


def test_entries_of_deleted_interfaces_are_named_by_index():
    key, value = entries.encode("map/rcl_ifstate/x", {"ifindex": 9, "flags": 1})
    assert entries.decode_all("rcl_ifstate", [(key, value)], entries.Context({})) == [
        ("map/rcl_ifstate/#9", {"ifindex": 9, "flags": 1})
    ]


def test_interface_state_is_read_from_every_layout_and_keeps_counters_on_update():
    from reconciler import iface_layout as il

    key, value = entries.encode("map/rcl_ifstate/x", {"ifindex": 9, "flags": 5})
    assert value == il.IFSTATE.pack(5, 0, 0, 0, 0, 0, 0, 0)  # counters start at zero
    per_cpu = [
        il.IFSTATE.pack(5, 0, 1, 100, 2, 200, 0, 1),
        il.IFSTATE.pack(5, 0, 3, 300, 0, 0, 1, 0),
    ]
    old_layout = il.IFSTATE_FLAGS.pack(5) + bytes(4)  # a plain hash's 8-byte value
    raws: tuple[list[bytes] | bytes, ...] = (per_cpu, old_layout)
    for raw in raws:
        assert entries.decode_all("rcl_ifstate", [(key, raw)], entries.Context({9: "cali1"})) == [
            ("map/rcl_ifstate/cali1", {"ifindex": 9, "flags": 5})
        ]
    updated = il.with_flags(per_cpu, 7)
    assert [il.IFSTATE_FLAGS.unpack_from(c)[0] for c in updated] == [7, 7]
    assert il.Counters.sum_per_cpu(updated) == il.Counters(4, 400, 2, 200, 1, 1)
    now = bpfsys.MapInfo(il.PERCPU_HASH, 1, 4, il.IFSTATE.size, 1000, "rcl_ifstate")
    before = bpfsys.MapInfo(1, 1, 4, 8, 1000, "rcl_ifstate")  # a plain hash of flags
    assert il.current_layout(now) and not il.current_layout(before)
    # an update writes new flags and keeps the counters the datapath keeps
    address = "map/rcl_ifstate/x"
    assert entries.keeps_kernel_fields(address)
    assert not entries.keeps_kernel_fields("map/rcl_globals/0")
    assert entries.updated(address, per_cpu, {"ifindex": 9, "flags": 7}) == updated


def test_interface_flags_that_differ_between_cpus_are_drift():
    from reconciler import iface_layout as il

    key, _ = entries.encode("map/rcl_ifstate/x", {"ifindex": 9, "flags": 1})
    mixed = [il.IFSTATE.pack(1, 0, 0, 0, 0, 0, 0, 0), il.IFSTATE.pack(3, 0, 0, 0, 0, 0, 0, 0)]
    [(_, attrs)] = entries.decode_all("rcl_ifstate", [(key, mixed)], entries.Context({}))
    assert attrs == {"ifindex": 9, "flags": 1, "flags_per_cpu": "differ: 1,3"}
