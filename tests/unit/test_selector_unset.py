"""A selector-valued field written "" is the field left out, as Calico reads
it: its Go types hold every selector as a plain string with omitempty, and
libcalico-go acts on each only when it is not "" (the GlobalNetworkPolicy
update processor for a policy's namespaceSelector and
serviceAccountSelector, the rule conversion for a side's selector,
notSelector, namespaceSelector and serviceAccounts). So `--explain`, the
compiled program (what the datapath loads) and the model agree with the
policy written without the field."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.compile.policy import compile_chain, verdict_of
from reconciler.compile.policy_model import Packet, build_model, evaluate
from reconciler.config.load import load

NODE = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {bpfEnabled: true, bpfEnforceRPF: Disabled}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node-1-eth0, labels: {host-endpoint: "true"}}
spec:
  node: n1
  interfaceName: eth0
  expectedIPs: [192.168.50.1]
  profiles: [projectcalico-default-allow]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: threat-feed, labels: {threat-feed: bad-actors}}
spec: {nets: [198.51.100.0/24]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: monitoring-hosts, labels: {role: monitoring}}
spec: {nets: [192.168.50.2/32]}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod-api}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod-db}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: api-0, namespace: prod-api, labels: {app: api}}
spec: {node: n2, interfaceName: cali-api, ipNetworks: [10.65.0.10/32], profiles: [kns.prod-api]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db-0, namespace: prod-db, labels: {app: postgres}}
spec: {node: n1, interfaceName: cali-db, ipNetworks: [10.65.0.30/32], profiles: [kns.prod-db]}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: api-1, namespace: prod-db, labels: {app: api}}
spec: {node: n2, interfaceName: cali-api1, ipNetworks: [10.65.0.31/32], profiles: [kns.prod-db]}
"""

# The walk-through's deny list: a Helm-rendered `namespaceSelector: ""`.
BLOCK = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.block-bad-actors}
spec:
  tier: security
  order: 10
  selector: all()
  namespaceSelector: ""
  types: [Egress]
  egress:
  - action: Deny
    destination: {selector: threat-feed == 'bad-actors'}
  - action: Pass
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
"""

# serviceAccountSelector "" on the policy, namespaceSelector "" on its rule.
SA_EMPTY = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sa-empty}
spec:
  selector: all()
  serviceAccountSelector: ""
  types: [Egress]
  egress:
  - action: Deny
    destination: {selector: role == 'monitoring', namespaceSelector: ""}
"""

# A namespaced policy's rule with namespaceSelector "": its own namespace only.
OWN_NS = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: db-from-own-ns, namespace: prod-db}
spec:
  order: 100
  selector: app == 'postgres'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == 'api', namespaceSelector: ""}
    destination: {ports: [5432]}
"""


def without(text: str, line: str) -> str:
    assert text.count(line) == 1, line
    return text.replace(line, "")


def explain(capsys: pytest.CaptureFixture[str], cfg: Path, src: str, dst: str) -> str:
    code = main(["--explain", "--from", src, "--to", dst, "--config", str(cfg),
                 "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def config(tmp_path: Path, name: str, policy: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "all.yaml").write_text(NODE + "---\n" + policy)
    return directory


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def verdict_lines(out: str) -> list[str]:
    """The explanation without the compiled program's id (a content hash
    that names the policy's text)."""
    return [line for line in out.splitlines() if "compiled program" not in line]


def test_a_global_policys_empty_namespace_selector_still_applies_to_host_endpoints(
    tmp_path, capsys
):
    bare = without(BLOCK, '  namespaceSelector: ""\n')
    flow = ("192.168.50.1", "198.51.100.5:443/TCP")
    written = explain(capsys, config(tmp_path, "written", BLOCK), *flow)
    left_out = explain(capsys, config(tmp_path, "left-out", bare), *flow)
    assert verdict_lines(written) == verdict_lines(left_out) == [
        "node-1-eth0 egress (from the host): Deny by policy/security.block-bad-actors egress "
        "rule 1 (tier security)",
        "Verdict: Deny",
    ]
    assert "agrees: yes" in written


def test_empty_service_account_and_rule_namespace_selectors_are_left_out(tmp_path, capsys):
    as_written = explain(capsys, config(tmp_path, "written", SA_EMPTY),
                         "192.168.50.1", "192.168.50.2:443/TCP")  # fmt: skip
    bare = without(without(SA_EMPTY, '  serviceAccountSelector: ""\n'), ', namespaceSelector: ""')
    left_out = explain(capsys, config(tmp_path, "left-out", bare),
                       "192.168.50.1", "192.168.50.2:443/TCP")  # fmt: skip
    assert verdict_lines(as_written) == verdict_lines(left_out) == [
        "node-1-eth0 egress (from the host): Deny by policy/sa-empty egress rule 1 (tier default)",
        "Verdict: Deny",
    ]


def test_a_network_policy_rules_empty_namespace_selector_is_its_own_namespace(tmp_path, capsys):
    cfg = config(tmp_path, "written", OWN_NS)
    other_ns = explain(capsys, cfg, "10.65.0.10", "db-0:5432/TCP")  # prod-api's api-0
    assert verdict_lines(other_ns) == [
        "prod-db/db-0 ingress: Deny by tier/default default action (tier default)",
        "Verdict: Deny",
    ]
    own_ns = explain(capsys, cfg, "10.65.0.31", "db-0:5432/TCP")  # prod-db's api-1
    assert verdict_lines(own_ns) == [
        "prod-db/db-0 ingress: Allow by policy/prod-db/db-from-own-ns ingress rule 1 "
        "(tier default)",
        "Verdict: Allow",
    ]


def programs(text: str) -> dict[tuple[str, str], str]:
    loaded = load(NODE + "---\n" + text, "t.yaml")
    assert not loaded.diagnostics, loaded.diagnostics
    m = build_model(loaded.resources, "n1")
    return {key: compile_chain(chain).prog_id for key, chain in m.chains.items()}


@pytest.mark.parametrize(
    "policy,line",
    [
        (BLOCK, '  namespaceSelector: ""\n'),
        (SA_EMPTY, '  serviceAccountSelector: ""\n'),
        (without(SA_EMPTY, '  serviceAccountSelector: ""\n'), ', namespaceSelector: ""'),
        (OWN_NS, ', namespaceSelector: ""'),
    ],
    ids=["policy namespaceSelector", "policy serviceAccountSelector",
         "global rule namespaceSelector", "namespaced rule namespaceSelector"],  # fmt: skip
)
def test_the_datapath_gets_the_same_programs_as_without_the_field(policy, line):
    assert programs(policy) == programs(without(policy, line))


RULE_SIDE = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: side}}
spec:
  selector: app == 'postgres'
  types: [Ingress]
  ingress:
  - action: Allow
    source: {side}
"""


def db_ingress(side: str, peer: str) -> tuple[str, str]:
    loaded = load(NODE + "---\n" + RULE_SIDE.format(side=side), "t.yaml")
    assert not loaded.diagnostics, loaded.diagnostics
    chain = build_model(loaded.resources, "n1").chains[("prod-db/db-0", "ingress")]
    p = Packet(int(ipaddress.IPv4Address(peer)), 6, 5432, 40000)
    v = evaluate(chain, p)
    compiled = verdict_of(compile_chain(chain), p)
    assert (compiled.action, compiled.ref) == (v.action, v.ref)
    return v.action, v.ref


ALLOWED = ("Allow", "policy/side ingress rule 1")
DEFAULT_DENY = ("Deny", "tier/default default action")


@pytest.mark.parametrize(
    "side",
    [
        '{selector: ""}',
        '{notSelector: ""}',
        '{namespaceSelector: ""}',
        "{serviceAccounts: {}}",
        '{serviceAccounts: {selector: ""}}',
        '{serviceAccounts: {names: [], selector: ""}}',
    ],
)
def test_an_empty_rule_side_field_constrains_nothing(side):
    """Left out, the side matches any address, an endpoint's or not
    (Calico builds no selector of it); all() would match endpoints only."""
    assert db_ingress(side, "203.0.113.9") == ALLOWED  # no endpoint's address
    assert db_ingress(side, "10.65.0.10") == ALLOWED  # a pod of another namespace


def test_all_is_not_empty_on_a_rule_side():
    """The contrast that makes the cases above mean something: all() picks
    endpoints alone, so an address that is none is not matched."""
    assert db_ingress("{selector: all()}", "203.0.113.9") == DEFAULT_DENY
    assert db_ingress("{selector: all()}", "10.65.0.10") == ALLOWED
    # a service account match with a name still wants a pod that runs as it
    assert db_ingress("{serviceAccounts: {names: [x]}}", "10.65.0.10") == DEFAULT_DENY


def test_an_empty_policy_selector_is_all_as_left_out():
    both = [
        RULE_SIDE.format(side="{}").replace("selector: app == 'postgres'", 'selector: ""'),
        RULE_SIDE.format(side="{}").replace("  selector: app == 'postgres'\n", ""),
    ]
    assert programs(both[0]) == programs(both[1])
    loaded = load(NODE + "---\n" + both[0], "t.yaml")
    chains = build_model(loaded.resources, "n1").chains
    v = evaluate(chains[("prod-db/db-0", "ingress")], Packet(0xC0A80001, 6, 1, 2))
    assert (v.action, v.ref) == ALLOWED
