"""Addresses: one parse and one render, for every shape the reconciler produces."""

import pytest

from reconciler.compile.dataplane import Host, compile_desired
from reconciler.compile.services import service_fragments
from reconciler.config.model import Resource
from reconciler.datapath.maps import codecs as entries
from reconciler.observe.kernel import TcFilter, parse_filters, parse_prog_dirs
from reconciler.plan.address import Address, AddressError, Kind, prog_ref, split_prog_ref
from reconciler.plan.diff import diff
from reconciler.plan.state import Link, ObservedState


def res(kind, name, spec, namespace=None, **extra):
    body = {"apiVersion": "x", "kind": kind, "metadata": {"name": name}, "spec": spec, **extra}
    return Resource(kind, name, namespace, body, f"{kind}.yaml", 1)


def labelled(resource, labels):
    body = {**resource.body, "metadata": {**resource.body["metadata"], "labels": labels}}
    return Resource(resource.kind, resource.name, resource.namespace, body, resource.file, 1)


FELIX = res(
    "FelixConfiguration", "default", {"bpfEnabled": True, "bpfConnectTimeLoadBalancing": "TCP"}
)
WEP = res("WorkloadEndpoint", "w1", {"node": "n1", "interfaceName": "cali1"}, "ns")
HEP = res("HostEndpoint", "h1", {"node": "n1", "interfaceName": "eth0"})
UNTRACKED = res(
    "GlobalNetworkPolicy",
    "untracked",
    {
        "selector": "all()",
        "doNotTrack": True,
        "applyOnForward": True,
        "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [9090]}}],
    },
)
POOL = res("IPPool", "pods", {"cidr": "10.65.0.0/16", "natOutgoing": True})
SVC = res(
    "Service",
    "dns",
    {
        "clusterIP": "10.96.0.10",
        "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}],
    },
    "kube-system",
)
SLICE = labelled(
    res("EndpointSlice", "dns-1", None, "kube-system", addressType="IPv4",
        ports=[{"name": "dns", "port": 5353, "protocol": "UDP"}],
        endpoints=[{"addresses": ["10.65.0.2"]}]),
    {"kubernetes.io/service-name": "dns"},
)  # fmt: skip


def compiled_addresses():
    """Every address a compiled state and its diff against an empty kernel hold."""
    desired = compile_desired(
        [FELIX, WEP, HEP, UNTRACKED, SVC, SLICE, POOL],
        "n1",
        Host((Link("eth0", 2, ("192.168.0.5",)), Link("cali1", 3)), cgroup_id=7),
        "/sys/fs/bpf/x",
        "digest",
    )
    assert desired.tables["rcl_nat_fe"] and desired.tables["rcl_nat_be"]
    return [*desired.objects, *(c.address for c in diff(desired, ObservedState({})))]


def observed_addresses():
    objs, foreign = parse_filters(
        [TcFilter("eth0", "egress", "rcl:tc@5f829b2cb369", 0x7A00, 3),
         TcFilter("v0", "ingress", None, 100)]
    )  # fmt: skip
    progs = parse_prog_dirs({"tc-5f829b2cb369": ["rcl_tc_ingress"], "tmp-tc-1-2": [], "odd": []})
    entry = entries.encode("rcl_ifstate", "x", {"slot": 1, "ifindex": 9, "flags": 1})
    decoded = entries.decode_all("rcl_ifstate", [entry], entries.Context({}))
    return [
        *(o.address for o in objs + progs),
        foreign[0].split()[0],
        *(str(Address.of_entry("rcl_ifstate", key)) for key, _ in decoded),
    ]


KINDS = "(map/, prog/, tc/, xdp/, cgroup/, netfilter/ or iptables/...)"
SHAPES = {
    "tc/eth0/ingress": Address(Kind.TC, iface="eth0", direction="ingress"),
    "map/rcl_nat_fe/10.96.0.10:80/tcp": Address(Kind.MAP, "rcl_nat_fe", "10.96.0.10:80/tcp"),
    "map/rcl_nat_be/e384e585/0": Address(Kind.MAP, "rcl_nat_be", "e384e585/0"),
    "prog/tc@5f829b2cb369": Address(Kind.PROG, prog="tc@5f829b2cb369"),
    "prog/tmp-tc-1-2": Address(Kind.PROG, prog="tmp-tc-1-2"),
    "cgroup/connect4": Address(Kind.CGROUP, hook="connect4"),
    "xdp/eth0": Address(Kind.XDP, iface="eth0"),
    "map/rcl_ct": Address(Kind.MAP, "rcl_ct"),
    "map/rcl_ifstate/cali1@5": Address(Kind.MAP, "rcl_ifstate", "cali1@5"),
    "map/rcl_ifstate/#9": Address(Kind.MAP, "rcl_ifstate", "#9"),
    "map/rcl_globals/0": Address(Kind.MAP, "rcl_globals", "0"),
    "netfilter/kube-proxy": Address(Kind.NETFILTER, name="kube-proxy"),
    "iptables/nat-outgoing": Address(Kind.IPTABLES, name="nat-outgoing"),
}


@pytest.mark.parametrize("text", sorted(SHAPES))
def test_known_shapes_parse_into_their_parts_and_render_back(text):
    address = Address.parse(text)
    assert address == SHAPES[text]
    assert str(address) == text


def test_every_address_compile_diff_and_observe_produce_round_trips():
    produced = compiled_addresses() + observed_addresses()
    kinds = {Address.parse(a).kind for a in produced}
    assert kinds == set(Kind)
    maps = {Address.parse(a).map for a in produced}
    assert {"rcl_nat_fe", "rcl_nat_be", "rcl_ifstate", "rcl_ct", "rcl_nat_globals"} <= maps
    assert {"rcl_pol_ep", "rcl_pol_hep", "rcl_xdp_ep", "rcl_failsafe", "rcl_host_ip"} <= maps
    for text in produced:
        assert str(Address.parse(text)) == text


def test_the_constructors_render_what_the_plan_shows():
    assert str(Address.of_map("rcl_ct")) == "map/rcl_ct"
    assert str(Address.of_entry("rcl_nat_fe", "10.96.0.10:53/udp")) == (
        "map/rcl_nat_fe/10.96.0.10:53/udp"
    )
    assert str(Address.of_prog(prog_ref("connect", "abc"))) == "prog/connect@abc"
    assert str(Address.of_tc("cali1", "egress")) == "tc/cali1/egress"
    assert str(Address.of_cgroup("sendmsg4")) == "cgroup/sendmsg4"
    assert str(Address.of_xdp("eth0")) == "xdp/eth0"
    assert str(Address.of_netfilter("kube-proxy")) == "netfilter/kube-proxy"
    assert str(Address.of_iptables("nat-outgoing")) == "iptables/nat-outgoing"


def test_entries_and_maps_and_program_references():
    assert Address.parse("map/rcl_nat_be/e384e585/0").key == "e384e585/0"
    assert Address.parse("map/rcl_nat_be").key is None
    assert Address.parse("prog/tc@5f829b2cb369").prog_set == "tc"
    assert Address.parse("prog/tc@5f829b2cb369").prog_hash == "5f829b2cb369"
    assert (Address.parse("prog/tmp-x").prog_set, Address.parse("prog/tmp-x").prog_hash) == (
        "tmp-x",
        "",
    )
    assert split_prog_ref(prog_ref("tc", "h")) == ("tc", "h")


def test_service_entries_of_a_fragment_are_addressable():
    fragment = service_fragments([SVC, SLICE], "n1", [])[("kube-system", "dns")]
    for key, value, *_ in fragment.frontends:
        text, _ = entries.decode_one("rcl_nat_fe", key, value, entries.Context({}))
        assert Address.parse(str(Address.of_entry("rcl_nat_fe", text))).key == text


@pytest.mark.parametrize(
    "text,message",
    [
        ("", f"'' is not an address {KINDS}"),
        ("map", f"'map' is not an address {KINDS}"),
        ("bpf/eth0", f"'bpf/eth0' is not an address {KINDS}"),
        ("xdp/", "'xdp/' is not a valid xdp address"),
        ("xdp/eth0/x", "'xdp/eth0/x' is not a valid xdp address"),
        ("map/", "'map/' is not a valid map address"),
        ("map//0", "'map//0' is not a valid map address"),
        ("map/rcl_ct/", "'map/rcl_ct/' is not a valid map address"),
        ("prog/", "'prog/' is not a valid prog address"),
        ("prog/a/b", "'prog/a/b' is not a valid prog address"),
        ("tc/eth0", "'tc/eth0' is not a valid tc address"),
        ("tc/eth0/sideways", "'tc/eth0/sideways' is not a valid tc address"),
        ("tc//ingress", "'tc//ingress' is not a valid tc address"),
        ("tc/eth0/ingress/x", "'tc/eth0/ingress/x' is not a valid tc address"),
        ("cgroup/", "'cgroup/' is not a valid cgroup address"),
        ("cgroup/a/b", "'cgroup/a/b' is not a valid cgroup address"),
    ],
)
def test_malformed_text_is_refused_with_its_reason(text, message):
    with pytest.raises(AddressError) as err:
        Address.parse(text)
    assert str(err.value) == message


def test_a_constructor_refuses_parts_that_would_not_parse_back():
    with pytest.raises(AddressError, match="not a valid tc address"):
        Address.of_tc("eth0/1", "ingress")
    with pytest.raises(AddressError, match="not a valid map address"):
        Address.of_entry("rcl_ct", "")
    with pytest.raises(AddressError, match="not a valid cgroup address"):
        Address.of_cgroup("")


@pytest.mark.parametrize(
    "parts",
    [("rcl_ct",), ("rcl_nat_fe", "10.96.0.10:53/udp"), ("", "k"), ("a/b", "k"), ("rcl_ct", "")],
)
def test_text_of_a_map_or_entry_is_what_the_instance_renders_or_refuses(parts):
    build, text = (
        (Address.of_map, Address.map_text)
        if len(parts) == 1
        else (Address.of_entry, Address.entry_text)
    )
    try:
        expected = str(build(*parts))
    except AddressError as exc:
        with pytest.raises(AddressError) as err:
            text(*parts)
        assert str(err.value) == str(exc)
    else:
        assert text(*parts) == expected


@pytest.mark.parametrize(
    "iface,direction",
    [
        ("cali1", "egress"),
        ("eth0", "ingress"),
        ("eth0/1", "ingress"),
        ("", "egress"),
        ("eth0", "sideways"),
    ],  # fmt: skip
)
def test_text_of_a_tc_filter_is_what_the_instance_renders_or_refuses(iface, direction):
    try:
        expected = str(Address.of_tc(iface, direction))
    except AddressError as exc:
        with pytest.raises(AddressError) as err:
            Address.tc_text(iface, direction)
        assert str(err.value) == str(exc)
    else:
        assert Address.tc_text(iface, direction) == expected
