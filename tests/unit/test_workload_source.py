"""Which sources each workload interface may send from (rcl_wep_src): its
IPv4 ipNetworks, and its allowSpoofedSourcePrefixes only where Felix's
workloadSourceSpoofing is Any; more networks than the datapath checks is a
plan-time error."""

from __future__ import annotations

from reconciler.compile.dataplane import compile_desired
from reconciler.config.model import Resource
from reconciler.plan.state import Link


def res(kind: str, name: str, spec: dict, ns: str | None = None) -> Resource:
    body = {"kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec}
    return Resource(kind, name, ns, body, "f.yaml", 1)


def felix(**spec: object) -> Resource:
    return res("FelixConfiguration", "default", {"bpfEnabled": True, **spec})


def wep(name: str, nets: list[str], spoofed: list[str] | None = None) -> Resource:
    spec: dict = {"node": "n1", "interfaceName": f"cali-{name}", "ipNetworks": nets}
    if spoofed is not None:
        spec["allowSpoofedSourcePrefixes"] = spoofed
    return res("WorkloadEndpoint", name, spec, "shop")


LINKS = [Link("cali-a", 7, ()), Link("cali-b", 8, ()), Link("eth0", 2, ("192.168.1.10",))]


def sources(*resources: Resource) -> tuple[dict[str, dict], tuple[str, ...], tuple[str, ...]]:
    desired = compile_desired(list(resources), "n1", LINKS, "/x", "s")
    entries = {
        address.rsplit("/", 1)[1]: dict(obj.attrs)
        for address, obj in desired.objects.items()
        if address.startswith("map/rcl_wep_src/")
    }
    return entries, desired.warnings, desired.errors


def test_a_workload_sends_from_its_ipv4_networks_alone() -> None:
    entries, warnings, errors = sources(
        felix(), wep("a", ["10.65.0.10/32", "fd00::a/128"]), wep("b", ["10.65.1.7/24"])
    )
    slots = {e["ifindex"]: e["slot"] for e in entries.values()}
    assert entries == {
        "cali-a": {"slot": slots[7], "ifindex": 7, "nets": "10.65.0.10/32"},
        "cali-b": {"slot": slots[8], "ifindex": 8, "nets": "10.65.1.0/24"},  # host bits cleared
    }
    # each in its interface's rcl_ifstate slot
    assert sorted(slots.values()) == [2, 3]
    assert errors == () and not any("allowSpoofed" in w for w in warnings)


def test_spoofing_allowances_count_only_where_felix_allows_them() -> None:
    spoofer = wep("a", ["10.65.0.10/32"], ["192.0.2.0/24"])
    entries, warnings, _ = sources(felix(), spoofer)
    assert entries["cali-a"]["nets"] == "10.65.0.10/32"
    assert (
        "WorkloadEndpoint/shop/a: allowSpoofedSourcePrefixes ignored: FelixConfiguration "
        "workloadSourceSpoofing is not Any (as in Calico)"
    ) in warnings
    entries, warnings, _ = sources(felix(workloadSourceSpoofing="Any"), spoofer)
    assert entries["cali-a"]["nets"] == "10.65.0.10/32,192.0.2.0/24"
    assert not any("allowSpoofed" in w for w in warnings)


def test_adjacent_networks_merge_and_more_than_the_datapath_checks_is_an_error() -> None:
    # eleven addresses in a row: four networks once merged
    row = [f"10.65.1.{10 + i}/32" for i in range(11)]
    entries, _, errors = sources(felix(), wep("a", row))
    assert entries["cali-a"]["nets"] == "10.65.1.10/31,10.65.1.12/30,10.65.1.16/30,10.65.1.20/32"
    assert errors == ()
    apart = [f"10.65.{i}.1/32" for i in range(9)]
    entries, _, errors = sources(felix(), wep("a", apart))
    assert "cali-a" not in entries
    assert errors == (  # refused before anything is compiled, at the field
        "f.yaml:1: WorkloadEndpoint/shop/a: spec.ipNetworks: 9 IPv4 networks to send from "
        "(ipNetworks, adjacent ones merged); the datapath checks at most 8 per workload: "
        "list at most 8 (one wider prefix covers several)",
    )


def test_an_entry_moves_with_its_interfaces_slot() -> None:
    from reconciler.compile.slots import keep_slots

    desired = compile_desired([felix(), wep("a", ["10.65.0.10/32"])], "n1", LINKS, "/x", "s")
    kept = keep_slots(desired, {7: 9})  # the kernel holds cali-a in slot 9
    assert kept.objects["map/rcl_wep_src/cali-a"].attrs["slot"] == 9
    assert kept.objects["map/rcl_ifstate/cali-a"].attrs["slot"] == 9
