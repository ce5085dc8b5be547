"""Host protection's pure parts: untracked egress chains, the XDP program's
flat address lookup (its exact entries by prefix length), explain's order
for host egress, and the --status rendering of XDP and untracked counters."""

from __future__ import annotations

import ipaddress
import random
from types import SimpleNamespace
from typing import Any

from reconciler.compile.host_policy import untracked_net_entries
from reconciler.compile.policy import compile_chain
from reconciler.compile.policy_model import build_model
from reconciler.config.load import load
from reconciler.datapath.maps import host_types as ht
from reconciler.engine.explain import explain
from reconciler.observe import host_counters

CONFIG = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: h, labels: {role: uplink}}
spec: {node: n1, interfaceName: eth0, expectedIPs: [192.168.50.1]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == "uplink"
  doNotTrack: true
  applyOnForward: true
  types: [Ingress, Egress]
  ingress:
  - action: Deny
    source: {nets: [10.1.0.0/16]}
  - action: Allow
    source: {nets: [10.1.2.0/24, 10.1.2.3/32, 172.16.0.0/12]}
  egress:
  - action: Allow
    protocol: TCP
    destination: {ports: [7000]}
  - action: Deny
    protocol: TCP
    destination: {ports: [7001]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-out}
spec:
  selector: role == "uplink"
  types: [Egress]
  egress: [{action: Deny}]
"""


def model() -> Any:
    return build_model(load(CONFIG, "c.yaml").resources, "n1")


def test_do_not_track_egress_rules_are_the_untracked_egress_chain_only() -> None:
    m = model()
    untracked_out = m.chains[("h", "untracked-egress")]
    assert [p for t in untracked_out.tiers for p in t.policies] == ["policy/untracked"]
    egress = m.chains[("h", "egress")]
    assert [p for t in egress.tiers for p in t.policies] == ["policy/deny-out"]
    assert "policy/untracked" not in str(m.chains[("h", "forward-egress")])


def flat_class(program: Any, addr: int) -> int:
    """The datapath's flat lookup (bpf/lib/policy_lookup.h rcl_pol_net_class) over the
    entries the compile writes: the /32 itself, then each length in the mask,
    longest first."""
    exact = {net: cls for cls, (net, plen) in enumerate(program.addr_classes) if plen == 32}
    if addr in exact:
        return exact[addr]
    nets, mask = untracked_net_entries(program)
    by_key = {key.split("/", 2)[2]: attrs["class"] for _, key, attrs in nets}
    for plen in range(31, -1, -1):
        if mask >> plen & 1:
            masked = addr & ((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF) if plen else 0
            found = by_key.get(f"{ipaddress.IPv4Address(masked)}/{plen}")
            if found is not None:
                return found
    return 0


def test_the_flat_lookup_finds_the_class_the_lpm_finds() -> None:
    program = compile_chain(model().chains[("h", "untracked")])
    nets, mask = untracked_net_entries(program)
    assert mask == (1 << 0) | (1 << 12) | (1 << 16) | (1 << 24), ht.nets_text(mask)
    assert ht.nets_text(mask) == "24,16,12,0" and ht.nets_mask("24,16,12,0") == mask
    assert ht.nets_text(0) == "-" and ht.nets_mask("-") == 0
    assert all(key.split("/")[1] == "net" for _, key, _ in nets)
    rng = random.Random(7)
    named = ("10.1.2.3", "10.1.2.4", "10.1.3.1", "10.2.0.1", "172.20.1.1", "8.8.8.8")
    probes = [int(ipaddress.IPv4Address(a)) for a in named]
    probes += [rng.getrandbits(32) for _ in range(2000)]
    probes += [int(ipaddress.IPv4Address("10.1.0.0")) + rng.getrandbits(16) for _ in range(2000)]
    for addr in probes:
        assert flat_class(program, addr) == program.addr_class(addr), ipaddress.IPv4Address(addr)


def test_explain_host_egress_asks_the_untracked_egress_rules_first() -> None:
    resources = load(CONFIG, "c.yaml").resources
    found = explain(resources, "n1", "192.168.50.1", "192.168.50.2:7001/tcp")
    assert [(f.direction, f.action, f.ref) for f in found] == [
        ("untracked egress (tc, before conntrack)", "Deny", "policy/untracked egress rule 2")
    ]
    found = explain(resources, "n1", "192.168.50.1", "192.168.50.2:7000/tcp")
    assert [(f.action, f.ref) for f in found] == [("Allow", "policy/untracked egress rule 1")]
    # no untracked rule decides: the normal egress policy does
    found = explain(resources, "n1", "192.168.50.1", "192.168.50.2:7002/tcp")
    assert [(f.direction, f.action, f.ref) for f in found] == [
        ("egress (from the host)", "Deny", "policy/deny-out egress rule 1")
    ]


def test_status_names_untracked_drops_by_rule_and_shows_xdp_counters() -> None:
    objects = {
        "map/rcl_pol_verdict/0badc0de/1.0.0": SimpleNamespace(
            attrs={"action": "deny", "rule": 1}, info={"policy": "policy/u ingress rule 2"}
        ),
        "map/rcl_pol_verdict/0badc0de/default": SimpleNamespace(
            attrs={"action": "nomatch", "rule": 2}, info={"policy": "no untracked rule matched"}
        ),
        "map/rcl_pol_ep/cali1": SimpleNamespace(attrs={}, info={"policy": "not a verdict"}),
    }
    refs = host_counters.rule_refs(objects)
    assert refs == {("0badc0de", 1): "policy/u ingress rule 2",
                    ("0badc0de", 2): "no untracked rule matched"}  # fmt: skip
    drops = [
        {"interface": "eth0", "direction": "in", "program": "0badc0de", "rule": 1,
         "policy": None, "packets": 5},
        {"interface": "eth0", "direction": "out", "program": "0000abcd", "rule": 0,
         "policy": None, "packets": 2},
    ]  # fmt: skip
    named = host_counters.name_rules(drops, refs)
    assert [d["policy"] for d in named] == ["policy/u ingress rule 2", None]
    status = {
        "xdp": {"eth0": {"dropped": 5, "allowed": 3, "failsafe": 1, "passed": 9}},
        "untracked_drops": named,
    }
    lines = host_counters.render(status)
    assert lines[1].split() == ["XDP", "(untracked", "ingress)", "dropped", "allowed",
                                "failsafe", "passed"]  # fmt: skip
    assert lines[2].split() == ["eth0", "5", "3", "1", "9"]
    assert lines[4] == "Untracked (doNotTrack) drops by rule:"
    assert lines[5].split() == ["eth0", "XDP", "5", "policy/u", "ingress", "rule", "2"]
    assert lines[6].split() == ["eth0", "tc", "egress", "2", "program", "0000abcd", "rule", "0"]
    assert host_counters.render({"xdp": {}, "untracked_drops": []}) == []


def test_metrics_export_xdp_and_untracked_counters(monkeypatch: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from reconciler.engine import node_stats
    from reconciler.gitops import metrics

    stats = {
        "xdp": {"eth0": {"dropped": 5, "allowed": 3, "failsafe": 1, "passed": 9}},
        "untracked_drops": [
            {"interface": "eth0", "direction": "out", "program": "0000abcd", "rule": 1,
             "policy": "policy/u egress rule 2", "packets": 2},
        ],
    }  # fmt: skip
    monkeypatch.setattr(node_stats, "node_stats", lambda _target: stats)
    registry = CollectorRegistry()
    registry.register(metrics._KernelCollector(SimpleNamespace()))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    assert 'calico_reconciler_xdp_packets_total{interface="eth0",result="dropped"} 5.0' in text
    assert 'calico_reconciler_xdp_packets_total{interface="eth0",result="passed"} 9.0' in text
    assert (
        'calico_reconciler_untracked_dropped_total{direction="out",interface="eth0",'
        'program="0000abcd",rule="1"} 2.0' in text
    ), text


def test_explain_a_pods_flow_to_its_node_by_the_endpoint_to_host_action() -> None:
    """Host endpoint policy never sees it (deny-out above, and the host
    endpoint's missing ingress policy, stay out of it)."""
    from tests.unit.test_error_paths import WEB

    for action, expected in (("Drop", "Deny"), ("Accept", "Allow"), ("Return", "Allow")):
        felix = ("apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n"
                 "metadata: {name: default}\n"
                 f"spec: {{defaultEndpointToHostAction: {action}}}\n")  # fmt: skip
        resources = load("---\n".join([CONFIG, WEB, felix]), "c.yaml").resources
        found = explain(resources, "n1", "shop/web", "192.168.50.1:22/tcp")
        assert found[-1].action == expected and found[-1].ref.startswith(
            f"defaultEndpointToHostAction {action}"
        ), found
        assert all(f.direction != "ingress (to the host)" for f in found)


def test_an_applyonforward_rule_naming_the_endpoints_own_side_is_noted() -> None:
    """For forwarded traffic the endpoint's side of a rule is matched against
    its expectedIPs, not the packet's address: the plan says so, for that
    rule alone (the remote side, and the host's own chains, are judged as
    written)."""
    from reconciler.compile.host_policy import forward_side_notes

    forward = """\
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: fwd}
spec:
  selector: role == "uplink"
  applyOnForward: true
  types: [Ingress]
  ingress:
  - {action: Deny, protocol: TCP, destination: {nets: [10.65.0.21/32], ports: [8081]}}
  - {action: Allow, source: {nets: [192.168.50.0/24]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: own-only}
spec:
  selector: role == "uplink"
  types: [Ingress]
  ingress: [{action: Allow, destination: {nets: [192.168.50.1/32]}}]
"""
    resources = load(CONFIG + forward, "c.yaml").resources
    assert forward_side_notes(build_model(resources, "n1"), resources) == [
        "policy/fwd ingress rule 1: for traffic HostEndpoint/h forwards (applyOnForward), its "
        "destination is matched against the endpoint's own addresses (expectedIPs), not the "
        "packet's destination"
    ]
    assert forward_side_notes(model(), load(CONFIG, "c.yaml").resources) == []
