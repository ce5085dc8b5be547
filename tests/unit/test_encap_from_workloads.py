"""Felix's allowVXLANPacketsFromWorkloads, allowIPIPPacketsFromWorkloads and
vxlanPort reach the datapath's global flags (rcl_globals: bpf/lib/policy.h
rcl_pol_encap_refused drops what they do not allow), and are no longer
listed as not enforced."""

from __future__ import annotations

import pytest

from reconciler.compile.dataplane import compile_desired
from reconciler.config.enforcement import not_enforced
from reconciler.datapath.maps import codecs
from tests.unit.test_compile import LINKS, res

FIELDS = ("allowVXLANPacketsFromWorkloads", "allowIPIPPacketsFromWorkloads", "vxlanPort")


def globals_of(spec: dict) -> dict:
    felix = res("FelixConfiguration", "default", {"bpfEnabled": True, **spec})
    desired = compile_desired([felix], "n1", LINKS, "/sys/fs/bpf/x", "src")
    return dict(desired.objects["map/rcl_globals/0"].attrs)


def flags_of(attrs: dict) -> int:
    _, value = codecs.encode("rcl_globals", "0", attrs)
    return int.from_bytes(value[4:8], "little")


def test_by_default_both_are_dropped_and_vxlan_is_port_4789() -> None:
    g = globals_of({})
    assert (g["vxlan_port"], g["vxlan_from_workloads"], g["ipip_from_workloads"]) == (
        4789,
        "Drop",
        "Drop",
    )
    flags = flags_of(g)
    assert flags >> 16 == 4789 and flags & (16 | 32) == 0


@pytest.mark.parametrize(
    ("spec", "bits"),
    [
        ({"allowVXLANPacketsFromWorkloads": True}, 16),
        ({"allowIPIPPacketsFromWorkloads": True}, 32),
        ({"allowVXLANPacketsFromWorkloads": True, "allowIPIPPacketsFromWorkloads": True}, 48),
        ({"allowVXLANPacketsFromWorkloads": False, "vxlanPort": 8472}, 0),
    ],
)
def test_each_allowance_sets_its_own_bit_beside_the_port(spec: dict, bits: int) -> None:
    g = globals_of(spec)
    flags = flags_of(g)
    assert flags & (16 | 32) == bits
    assert flags >> 16 == spec.get("vxlanPort", 4789)
    assert flags & 3 == 0  # defaultEndpointToHostAction Drop, untouched


def test_the_fields_are_not_listed_as_not_enforced() -> None:
    felix = res("FelixConfiguration", "default", {f: 4789 if f == "vxlanPort" else True
                                                  for f in FIELDS})  # fmt: skip
    listed = {n.field for n in not_enforced([felix])}
    assert not listed & {f"spec.{f}" for f in FIELDS}
