"""bpf/lib/policy_types.h and reconciler/datapath/maps/policy_types.py agree, as bcc compiles
them; every policy codec round-trips the entries compile makes."""

from __future__ import annotations

import pytest

from reconciler.compile.policy import compile_chain
from reconciler.compile.policy_model import build_model
from reconciler.compile.policy_objects import program_entries
from reconciler.config.load import load
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import policy_types as pl
from tests.kernel.rcl_bcc import skip_unless_kernel
from tests.kernel.test_nat_layout import _compare

pytestmark = pytest.mark.kernel


def test_policy_layouts_match_c() -> None:
    skip_unless_kernel()
    fields = {name: names for name, (_, names) in pl.LAYOUTS.items()}
    mismatches = _compare(
        "policy_types.h", fields, lambda n: pl.LAYOUTS[n][0].size, pl.field_offsets
    )
    assert not mismatches, "\n".join(mismatches)


POLICY = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: w, namespace: ns}
spec: {node: n1, interfaceName: cali-w, ipNetworks: [10.0.0.1/32]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: ns}
spec:
  ingress:
  - action: Allow
    protocol: TCP
    source: {nets: [10.1.0.0/16, 10.2.0.3/32], ports: ["1000:1999"]}
    destination: {ports: [80, "8000:8100"]}
  - action: Deny
    protocol: ICMP
    icmp: {type: 3, code: 4}
  - action: Allow
    protocol: 47
"""


def test_policy_entries_round_trip_through_their_codecs() -> None:
    loaded = load(POLICY, "p.yaml")
    model = build_model(loaded.resources, "n1")
    program = compile_chain(model.chains[("ns/w", "ingress")])
    seen = set()
    for name, text, attrs, _info in program_entries(program):
        key, value = entries.encode(name, text, attrs)
        assert entries.decode_one(name, key, value, entries.Context({})) == (text, attrs)
        seen.add(name)
    assert seen == {pl.MAP_EXACT, pl.MAP_LPM, pl.MAP_VERDICT}


def test_host_protection_layouts_match_c() -> None:
    from reconciler.datapath.maps import host_types as ht

    skip_unless_kernel()
    fields = {name: names for name, (_, names) in ht.LAYOUTS.items()}
    mismatches = _compare(
        "policy_types.h", fields, lambda n: ht.LAYOUTS[n][0].size, ht.field_offsets
    )
    assert not mismatches, "\n".join(mismatches)
