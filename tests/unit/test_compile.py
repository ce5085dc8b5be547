"""Compile is pure: resources + node + links -> desired objects."""

import pytest

from reconciler.compile.connect_lb import FORCED_HOST_NAT
from reconciler.compile.dataplane import Host, compile_desired
from reconciler.compile.interfaces import Role, select_interfaces
from reconciler.compile.programs import build_flags
from reconciler.compile.slots import assign_slots
from reconciler.config.felix import DEFAULTS, effective_config, parse_duration
from reconciler.config.model import Resource
from reconciler.datapath import loader as build
from reconciler.datapath.programs import HOST_PROGRAMS, TC_PROGRAMS
from reconciler.plan.state import Link


def res(kind, name, spec, namespace=None):
    body = {"apiVersion": "x", "kind": kind, "metadata": {"name": name}, "spec": spec}
    return Resource(kind, name, namespace, body, f"{kind}.yaml", 1)


FELIX = res("FelixConfiguration", "default", {"bpfEnabled": True})
WEP = res("WorkloadEndpoint", "w1", {"node": "n1", "interfaceName": "cali1"}, "ns")
WEP_OTHER = res("WorkloadEndpoint", "w2", {"node": "n2", "interfaceName": "cali2"}, "ns")
HEP = res("HostEndpoint", "h1", {"node": "n1", "interfaceName": "eth0"})
LINKS = [
    Link("lo", 1),
    Link("eth0", 2),
    Link("cali1", 3),
    Link("cali2", 4),
    Link("kube-ipvs0", 5),
    Link("ens3", 6),
    Link("docker0", 7),
]


def roles(resources, links=LINKS, node="n1"):
    config = effective_config(resources, node)
    selected, warnings = select_interfaces(resources, node, links, config)
    return {s.link.name: s.role for s in selected}, warnings


def unnamed(iface: str) -> str:
    return (
        f"interface {iface}: no WorkloadEndpoint on node 'n1' names it: its traffic is "
        "dropped until one does"
    )


def test_interface_selection_by_role():
    got, warnings = roles([FELIX, WEP, WEP_OTHER, HEP])
    assert got == {
        "cali1": Role.WORKLOAD,
        "cali2": Role.WORKLOAD,
        "eth0": Role.DATA | Role.HOST_ENDPOINT,
        "ens3": Role.DATA,
    }
    # a pod interface here whose WorkloadEndpoint is another node's is a workload with
    # no endpoint (its traffic dropped), and a word
    assert warnings == [unnamed("cali2")]


def test_other_nodes_endpoints_and_unmatched_interfaces_ignored():
    got, warnings = roles([FELIX, WEP_OTHER])
    assert "docker0" not in got and "lo" not in got
    assert got["cali1"] == got["cali2"] == Role.WORKLOAD  # pod interfaces: fail closed
    assert warnings == [
        "no WorkloadEndpoint or HostEndpoint names node 'n1' (they name n2): is this node's "
        "name right?",
        unnamed("cali1"),
        unnamed("cali2"),
    ]


def test_interface_exclude_regex_and_l3_pattern():
    felix = res(
        "FelixConfiguration",
        "default",
        {
            "bpfEnabled": True,
            "interfaceExclude": "kube-ipvs0,/^ens.*/,cali2",
            "bpfL3IfacePattern": "^docker",
        },
    )
    got, warnings = roles([felix])
    # an excluded pod interface stays out, with no word; an unnamed one is held closed
    assert got == {"eth0": Role.DATA, "docker0": Role.L3, "cali1": Role.WORKLOAD}
    assert warnings == [unnamed("cali1")]


def test_node_specific_felix_overrides_default():
    node_cfg = res("FelixConfiguration", "node.n1", {"bpfDataIfacePattern": "^ens"})
    assert effective_config([FELIX, node_cfg], "n1")["bpfDataIfacePattern"] == "^ens"
    assert (
        effective_config([FELIX, node_cfg], "n2")["bpfDataIfacePattern"]
        == DEFAULTS["bpfDataIfacePattern"]
    )


def test_missing_workload_interface_is_a_warning():
    wep = res("WorkloadEndpoint", "w9", {"node": "n1", "interfaceName": "cali9"}, "ns")
    got, warnings = roles([FELIX, wep])
    assert "cali9" not in got
    assert warnings == [
        "WorkloadEndpoint/ns/w9: interface cali9 does not exist on this node (yet)",
        unnamed("cali1"),
        unnamed("cali2"),
    ]


def test_wep_interface_without_prefix_is_ignored_with_warning():
    wep = res("WorkloadEndpoint", "w", {"node": "n1", "interfaceName": "tap0"}, "ns")
    got, warnings = roles([FELIX, wep], LINKS + [Link("tap0", 9)])
    assert "tap0" not in got  # not a pod interface by its name: not held closed either
    assert "does not start with interfacePrefix" in warnings[0]
    assert not any("tap0" in w for w in warnings[1:])


def test_bpf_disabled_wants_nothing():
    desired = compile_desired([WEP], "n1", LINKS, "/sys/fs/bpf/x", "src")
    assert desired.enabled is False and desired.objects == {}


def test_desired_objects_and_program_hash_follow_sources_and_flags():
    d1 = compile_desired([FELIX, WEP], "n1", LINKS, "/sys/fs/bpf/x", "src")
    assert set(d1.objects) >= {
        "tc/cali1/ingress",
        "tc/cali1/egress",
        "map/rcl_ifstate/cali1",
        "map/rcl_ifstate/eth0",
        "map/rcl_globals/0",
        "map/rcl_ifstate",
    }
    # slots in ifindex order, from 1 (slot 0 is the test runs')
    assert d1.objects["map/rcl_ifstate/eth0"].attrs == {"slot": 1, "ifindex": 2, "flags": 2}
    # a workload is under policy (16): its programs are named in rcl_pol_ep
    assert d1.objects["map/rcl_ifstate/cali1"].attrs == {"slot": 2, "ifindex": 3, "flags": 17}
    ep = d1.objects["map/rcl_pol_ep/cali1"].attrs
    assert (ep["slot"], ep["ifindex"]) == (2, 3)
    # no policy and no profile: both directions end in the drop after the profiles
    default = d1.objects[f"map/rcl_pol_verdict/{ep['ingress']}/default"]
    assert default.attrs["action"] == "deny" and "end of profiles" in default.info["policy"]
    assert d1.objects["map/rcl_ifstate"].attrs == {"max_entries": 1001}
    assert not any(a.startswith("map/rcl_counters") for a in d1.objects)  # within rcl_ifstate
    prog = [a for a in d1.objects if a.startswith("prog/tc@")]
    assert len(prog) == 1
    for direction in ("ingress", "egress"):  # a filter's classid is its interface's slot
        want = {"prog": prog[0].removeprefix("prog/"), "slot": 2}
        assert d1.objects[f"tc/cali1/{direction}"].attrs == want
    d2 = compile_desired([FELIX, WEP], "n1", LINKS, "/sys/fs/bpf/x", "src2")
    d3 = compile_desired([FELIX, WEP], "n1", LINKS, "/sys/fs/bpf/y", "src")
    assert d1.build["hash"] != d2.build["hash"] != d3.build["hash"]
    assert compile_desired([FELIX, WEP], "n1", LINKS, "/sys/fs/bpf/x", "src") == d1


def test_host_endpoints_run_the_host_set_which_is_built_only_when_there_are_some():
    without = compile_desired([FELIX, WEP], "n1", LINKS, "/sys/fs/bpf/x", "src")
    assert [a for a in without.objects if a.startswith("prog/")] == [
        f"prog/tc@{without.build['hash']}"
    ]
    with_hep = compile_desired([FELIX, WEP, HEP], "n1", LINKS, "/sys/fs/bpf/x", "src")
    phash = with_hep.build["hash"]
    progs = {a: o.attrs["programs"] for a, o in with_hep.objects.items() if a.startswith("prog/")}
    assert progs == {
        f"prog/tc@{phash}": sorted(TC_PROGRAMS),
        f"prog/host@{phash}": sorted(HOST_PROGRAMS),
    }
    assert not set(TC_PROGRAMS) & set(HOST_PROGRAMS)
    for direction in ("ingress", "egress"):
        slot = with_hep.objects["map/rcl_ifstate/eth0"].attrs["slot"]
        want = {"prog": f"host@{phash}", "slot": slot, "hook": "host"}
        assert with_hep.objects[f"tc/eth0/{direction}"].attrs == want
        assert with_hep.objects[f"tc/cali1/{direction}"].attrs["prog"] == f"tc@{phash}"
        assert with_hep.objects[f"tc/ens3/{direction}"].attrs["prog"] == f"tc@{phash}"


@pytest.mark.parametrize("hz,flag", [(250, "-DRCL_HZ=250"), (1000, "-DRCL_HZ=1000"), (300, None)])
def test_a_known_tick_rate_is_compiled_in_and_changes_the_program(hz, flag):
    """With the kernel's HZ the datapath reads its clock from jiffies; a tick
    that is not whole nanoseconds (HZ=300) keeps the helper clock."""
    config = effective_config([FELIX], "n1")
    ticks = [f for f in build_flags("/b", config, hz) if f.startswith("-DRCL_HZ")]
    assert ticks == ([flag] if flag else [])
    assert not [f for f in build_flags("/b", config) if f.startswith("-DRCL_HZ")]
    unknown = compile_desired([FELIX, WEP], "n1", Host(tuple(LINKS)), "/b", "src")
    known = compile_desired([FELIX, WEP], "n1", Host(tuple(LINKS), hz=hz), "/b", "src")
    assert (known.build["hash"] != unknown.build["hash"]) == (flag is not None)


def test_kernel_hz_comes_from_the_first_readable_config(tmp_path):
    import gzip

    packed = tmp_path / "config.gz"
    with gzip.open(packed, "wt") as f:
        f.write("# CONFIG_HZ_100 is not set\nCONFIG_HZ_250=y\nCONFIG_HZ=250\n")
    plain = tmp_path / "config-6.18"
    plain.write_text("CONFIG_HZ=1000\n")
    missing = str(tmp_path / "absent.gz")
    garbled = tmp_path / "garbled.gz"
    garbled.write_bytes(b"not gzip at all")
    assert build.kernel_hz((missing, str(packed), str(plain))) == 250
    assert build.kernel_hz((str(garbled), str(plain))) == 1000
    assert build.kernel_hz((missing,)) is None
    odd = tmp_path / "odd"
    odd.write_text("CONFIG_HZ=fast\n")
    assert build.kernel_hz((str(odd), str(plain))) is None  # the config read says nothing usable


@pytest.mark.parametrize("text,seconds", [("10s", 10), ("1h0m30s", 3630), ("500ms", 0.5)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration():
    with pytest.raises(ValueError, match="invalid duration '10 seconds'"):
        parse_duration("10 seconds")


def test_conntrack_timeouts_and_ctlb_mode_reach_the_globals_map():
    felix = res(
        "FelixConfiguration",
        "default",
        {
            "bpfEnabled": True,
            "bpfConnectTimeLoadBalancing": "Enabled",
            "bpfConntrackTimeouts": {"tcpEstablished": "2h", "udpTimeout": "90s"},
        },
    )
    g = (
        compile_desired([felix], "n1", LINKS, "/sys/fs/bpf/x", "src")
        .objects["map/rcl_nat_globals/0"]
        .attrs
    )
    assert (g["tcp_established_s"], g["udp_s"], g["tcp_syn_sent_s"], g["ctlb"]) == (7200, 90, 20, 1)

    host = Host(LINKS, cgroup_id=42, cgroup_path="/sys/fs/cgroup/x")

    def hooks(resource):
        desired = compile_desired([resource], "n1", host, "/sys/fs/bpf/x", "src")
        attached = sorted(a for a in desired.objects if a.startswith("cgroup/"))
        return desired.objects["map/rcl_nat_globals/0"].attrs["ctlb"], attached

    assert hooks(felix) == (1, ["cgroup/connect4", "cgroup/recvmsg4", "cgroup/sendmsg4"])
    off = res(
        "FelixConfiguration",
        "default",
        {"bpfEnabled": True, "bpfConnectTimeLoadBalancingEnabled": False},
    )
    assert hooks(off) == (2, [])  # Disabled: the mode, and no connect-time programs at all


@pytest.mark.parametrize(
    ("value", "mode"),
    [(None, "Loose"), ("", "Loose"), ("Strict", "Strict"), ("strict", "Strict"),
     ("DISABLED", "Disabled"), ("Loose", "Loose")],
)  # fmt: skip
def test_enforce_rpf_reaches_the_globals_map_in_any_case(value, mode):
    spec: dict = {"bpfEnabled": True}
    if value is not None:
        spec["bpfEnforceRPF"] = value  # absent or empty: Calico's default, Loose
    felix = res("FelixConfiguration", "default", spec)
    g = compile_desired([felix], "n1", LINKS, "/sys/fs/bpf/x", "src").objects["map/rcl_globals/0"]
    assert g.attrs["rpf"] == mode


CONNECT_HOOKS = ["cgroup/connect4", "cgroup/recvmsg4", "cgroup/sendmsg4"]


@pytest.mark.parametrize(
    "spec,cookie,host_nat,hooks",
    [
        ({}, 0x1_0000_2002, 1, CONNECT_HOOKS),  # Calico's defaults: TCP mode, host NAT
        ({"bpfHostNetworkedNATWithoutCTLB": "Disabled"}, 0x2002, 0, CONNECT_HOOKS),
        ({"bpfConnectTimeLoadBalancing": "Enabled"}, 0x2002, 0, CONNECT_HOOKS),  # all anyway
        ({"bpfConnectTimeLoadBalancing": "Disabled"}, 0x2002, 1, CONNECT_HOOKS),  # host alone
        (  # Calico forces host NAT on here (a warning says so)
            {"bpfConnectTimeLoadBalancing": "Disabled",
             "bpfHostNetworkedNATWithoutCTLB": "Disabled"},
            0x2002, 1, CONNECT_HOOKS,
        ),
        ({}, None, 0, CONNECT_HOOKS),  # the node's namespace not known
        ({"bpfConnectTimeLoadBalancing": "Disabled"}, None, 0, []),
    ],
)  # fmt: skip
def test_the_nodes_own_sockets_are_balanced_at_connect_unless_told_not_to(
    spec, cookie, host_nat, hooks
):
    felix = res("FelixConfiguration", "default", {"bpfEnabled": True, **spec})
    host = Host(LINKS, cgroup_id=42, cgroup_path="/sys/fs/cgroup/x", netns_cookie=cookie)
    desired = compile_desired([felix], "n1", host, "/sys/fs/bpf/x", "src")
    g = desired.objects["map/rcl_nat_globals/0"].attrs
    # the low 32 bits: what the connect programs compare
    assert (g["host_nat"], g["host_netns"]) == ((1, 0x2002) if host_nat else (0, 0))
    assert sorted(a for a in desired.objects if a.startswith("cgroup/")) == hooks
    forced = spec.get("bpfConnectTimeLoadBalancing") == "Disabled" and spec.get(
        "bpfHostNetworkedNATWithoutCTLB"
    ) == "Disabled"
    assert (FORCED_HOST_NAT in desired.warnings) == forced


def test_interfaces_keep_the_slots_they_hold_and_new_ones_take_unheld_slots():
    # 3 and 7 keep theirs; 9 left (its slot 2 is cleared by the same apply),
    # so the new 4 and 5 take slots nobody holds
    assert assign_slots([3, 4, 5, 7], {3: 5, 7: 1, 9: 2}, 10) == {3: 5, 7: 1, 4: 3, 5: 4}
    # full: a new interface takes the slot of one that left
    assert assign_slots([3, 4], {3: 1, 9: 2}, 3) == {3: 1, 4: 2}
    # a slot beyond the map (it shrank) or held twice is given again
    assert assign_slots([3, 4], {3: 7, 4: 7}, 5) == {3: 1, 4: 2}
    assert assign_slots([3, 4], {3: 2, 4: 2}, 5) == {3: 2, 4: 1}
    assert assign_slots([], {3: 1}, 5) == {}


def test_keep_slots_keeps_the_slots_the_kernel_holds():
    from reconciler.compile.slots import keep_slots

    d = keep_slots(compile_desired([FELIX, WEP], "n1", LINKS, "/b", "src"), {3: 9, 2: 4})
    assert d.objects["map/rcl_ifstate/cali1"].attrs["slot"] == 9
    assert d.objects["tc/cali1/ingress"].attrs["slot"] == 9
    assert d.objects["tc/cali1/egress"].attrs["slot"] == 9
    assert d.objects["map/rcl_ifstate/eth0"].attrs["slot"] == 4


def test_interfaces_beyond_the_state_map_are_a_plan_error():
    felix = res("FelixConfiguration", "default", {"bpfEnabled": True, "bpfMapSizeIfState": 1})
    d = compile_desired([felix, WEP], "n1", LINKS, "/b", "src")
    assert d.errors == (  # cali2, no WorkloadEndpoint's, holds a slot too (held closed)
        "map rcl_ifstate would overflow: 4 interfaces selected, bpfMapSizeIfState is 1",
    )
    one = compile_desired([felix], "n1", [Link("eth0", 2)], "/b", "src")
    assert one.errors == () and one.objects["map/rcl_ifstate"].attrs == {"max_entries": 2}


def test_a_state_map_beyond_what_a_classid_can_name_is_capped_with_a_warning():
    big = res("FelixConfiguration", "default", {"bpfEnabled": True, "bpfMapSizeIfState": 100000})
    d = compile_desired([big, WEP], "n1", LINKS, "/b", "src")
    assert d.objects["map/rcl_ifstate"].attrs == {"max_entries": 65536}
    assert "-DRCL_IFSTATE_SIZE=65536" in d.build["flags"]
    assert (
        "bpfMapSizeIfState 100000: at most 65535 interfaces (a tc filter's classid names "
        "the interface's slot, in 16 bits)" in d.warnings
    )


def test_a_stored_state_takes_the_slots_the_kernel_holds_now():
    from reconciler.compile.slots import keep_slots

    stored = compile_desired([FELIX, WEP], "n1", LINKS, "/b", "src")  # before the first apply
    # eth0, cali1, cali2 (no WorkloadEndpoint's: held closed), ens3 (ifindex 2, 3, 4, 6)
    # in slots 1, 2, 3, 4, as that apply assigned them
    assert keep_slots(stored, {2: 1, 3: 2, 4: 3, 6: 4}) is stored
    moved = keep_slots(stored, {2: 1, 3: 7, 4: 3, 6: 4})
    assert moved.objects["tc/cali1/egress"].attrs["slot"] == 7
    assert moved.objects["map/rcl_ifstate/cali1"].attrs["slot"] == 7
    unchanged = {a: o for a, o in stored.objects.items() if "cali1" not in a}
    assert {a: o for a, o in moved.objects.items() if "cali1" not in a} == unchanged


def test_hook_attach_types_are_the_kernels():
    """One table names each cgroup hook's enum bpf_attach_type (for loading
    and for linking); bcc's names for them must give the same numbers."""
    bcc = pytest.importorskip("bcc")
    from reconciler.datapath.programs import CONNECT_PROGRAMS, HOOK_ATTACH_TYPES, LOAD_ATTACH_TYPES

    names = {"connect4": "CGROUP_INET4_CONNECT", "sendmsg4": "CGROUP_UDP4_SENDMSG",
             "recvmsg4": "CGROUP_UDP4_RECVMSG"}  # fmt: skip
    assert {h: getattr(bcc.BPFAttachType, n) for h, n in names.items()} == HOOK_ATTACH_TYPES
    by_function = {fn: getattr(bcc.BPFAttachType, names[h]) for h, fn in CONNECT_PROGRAMS.items()}
    assert by_function == LOAD_ATTACH_TYPES
