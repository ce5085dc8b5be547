"""A pod interface (interfacePrefix) that no WorkloadEndpoint of this node
names is held closed: it runs our tc programs both ways, flagged as a
workload under policy, with no policy entry (rcl_pol_ep) and no sources
(rcl_wep_src), which the datapath reads as "drop its IPv4". When its
WorkloadEndpoint lands, the same slot and filters stay and only its entries
are added."""

from reconciler.compile.dataplane import compile_desired
from reconciler.compile.interfaces import UNNAMED
from reconciler.config.model import Resource
from reconciler.datapath.maps.iface_types import IF_POLICY
from reconciler.plan.diff import Action, diff
from reconciler.plan.state import Link, ObjKind, ObservedState

NODE = "n1"
LINKS = [Link("lo", 1), Link("eth0", 2), Link("cali-a", 3), Link("cali-xtra", 4)]
WARNING = (
    "interface cali-xtra: no WorkloadEndpoint on node 'n1' names it: its traffic is dropped "
    "until one does"
)


def res(kind, name, spec, namespace=None):
    body = {"apiVersion": "x", "kind": kind, "metadata": {"name": name}, "spec": spec}
    return Resource(kind, name, namespace, body, f"{kind}.yaml", 1)


def wep(name, iface, ip):
    spec = {"node": NODE, "interfaceName": iface, "ipNetworks": [f"{ip}/32"]}
    return res("WorkloadEndpoint", name, spec, "shop")


FELIX = res("FelixConfiguration", "default", {"bpfEnabled": True})
A = wep("a", "cali-a", "10.65.0.10")
XTRA = wep("xtra", "cali-xtra", "10.65.0.40")


def compiled(*resources, previous=None):
    return compile_desired([FELIX, *resources], NODE, LINKS, "/b", "src", previous=previous)


def test_an_unnamed_pod_interface_runs_our_programs_with_no_policy_and_no_sources():
    d = compiled(A)
    assert WARNING in d.warnings
    assert not any("no program attached" in w for w in d.warnings)
    state = d.objects["map/rcl_ifstate/cali-xtra"].attrs
    assert state["flags"] & 1 and state["flags"] & IF_POLICY  # a workload, under policy
    for direction in ("ingress", "egress"):
        tc = d.objects[f"tc/cali-xtra/{direction}"]
        assert tc.attrs == {**d.objects[f"tc/cali-a/{direction}"].attrs, "slot": state["slot"]}
        assert tc.info == {"role": "workload", "selected_by": UNNAMED}
    # the named one has its policy and sources; the unnamed one neither: fail closed
    assert "map/rcl_pol_ep/cali-a" in d.objects and "map/rcl_wep_src/cali-a" in d.objects
    assert not [a for a in d.objects if a.endswith("/cali-xtra") and "rcl_ifstate" not in a]


def _changes(before, after):
    """What an apply of `after` changes on a node that holds `before`."""
    return diff(after, ObservedState(before.objects, (), before.tables))


def test_its_workload_endpoint_adds_entries_and_keeps_slot_and_filters():
    before = compiled(A)
    for after in (compiled(A, XTRA), compiled(A, XTRA, previous=before)):  # full, incremental
        assert WARNING not in after.warnings
        for address in ("map/rcl_ifstate/cali-xtra", "tc/cali-xtra/ingress", "tc/cali-xtra/egress"):
            assert after.objects[address].attrs == before.objects[address].attrs
        changes = _changes(before, after)
        touched = {c.address for c in changes}
        assert all(c.action is Action.CREATE and c.kind is ObjKind.ENTRY for c in changes), touched
        assert {"map/rcl_pol_ep/cali-xtra", "map/rcl_wep_src/cali-xtra"} <= touched
        slot = before.objects["map/rcl_ifstate/cali-xtra"].attrs["slot"]
        assert after.objects["map/rcl_pol_ep/cali-xtra"].attrs["slot"] == slot
        assert after.objects["map/rcl_wep_src/cali-xtra"].attrs["nets"] == "10.65.0.40/32"
    # and back: the endpoint leaves, the interface stays, its entries go, its filters stay
    back = _changes(compiled(A, XTRA), before)
    assert {c.address for c in back} >= {"map/rcl_pol_ep/cali-xtra", "map/rcl_wep_src/cali-xtra"}
    assert all(c.action is Action.DELETE and c.kind is ObjKind.ENTRY for c in back)


def test_host_and_excluded_interfaces_are_not_held_closed():
    spec = {"interfaceExclude": "cali-xtra", "bpfDataIfacePattern": "^(eth|cali-a)"}
    felix = res("FelixConfiguration", "default", {"bpfEnabled": True, **spec})
    d = compile_desired([felix], NODE, LINKS, "/b", "src")
    assert "map/rcl_ifstate/cali-xtra" not in d.objects and "tc/cali-xtra/ingress" not in d.objects
    assert not any("cali-xtra" in w for w in d.warnings)
    # a pod-named interface the data pattern claims stays a data interface, with no word
    assert d.objects["tc/cali-a/ingress"].info["role"] == "data"
    assert not any("cali-a" in w for w in d.warnings)
