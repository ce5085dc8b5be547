"""Policy semantics (reconciler.compile.policy_model) and the class compiler
(reconciler.compile.policy) agreeing with them on every packet tried."""

from __future__ import annotations

import ipaddress
import random

import pytest

from reconciler.compile.policy import compile_chain, verdict_of
from reconciler.compile.policy_model import Packet, PolicyError, build_model, evaluate
from reconciler.config.load import load


def ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


BASE = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec:
  labelsToApply: {pcns.team: shop, zone: blue}
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.ops}
spec:
  labelsToApply: {pcns.team: ops}
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  node: n1
  interfaceName: cali-web
  ipNetworks: [10.0.0.1/32]
  profiles: [kns.shop]
  ports: [{name: http, protocol: TCP, port: 8080}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: db, namespace: shop, labels: {app: db}}
spec:
  node: n2
  interfaceName: cali-db
  ipNetworks: [10.0.0.2/32]
  profiles: [kns.shop]
  serviceAccountName: dbsa
  ports: [{name: pg, protocol: TCP, port: 5432}]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: mon, namespace: ops, labels: {app: mon}}
spec:
  node: n2
  interfaceName: cali-mon
  ipNetworks: [10.0.1.1/32]
  profiles: [kns.ops]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: bad, labels: {feed: bad}}
spec: {nets: [198.51.100.0/24, "2001:db8::/32"]}
---
apiVersion: projectcalico.org/v3
kind: NetworkSet
metadata: {name: partners, namespace: shop, labels: {role: partner}}
spec: {nets: [203.0.113.0/24]}
"""


def model(extra: str):
    loaded = load(BASE + "---\n" + extra, "t.yaml")
    assert not loaded.diagnostics, loaded.diagnostics
    return build_model(loaded.resources, "n1")


def verdict(m, direction, peer, proto=6, dport=0, sport=40000):
    chain = m.chains[("shop/web", direction)]
    p = Packet(ip(peer), proto, dport, sport)
    v = evaluate(chain, p)
    compiled = verdict_of(compile_chain(chain), p)
    assert (compiled.action, compiled.ref) == (v.action, v.ref), (p, v, compiled)
    return v.action, v.ref


def test_profile_applies_when_no_policy_selects_and_drop_without_profile():
    m = model("")
    assert verdict(m, "ingress", "1.2.3.4") == ("Allow", "profile/kns.shop ingress rule 1")
    # inherited labelsToApply (prefixed or not) and the implicit namespace label
    assert m.endpoints[0].peer.labels["zone"] == "blue"
    assert m.endpoints[0].peer.labels["pcns.team"] == "shop"
    assert m.endpoints[0].peer.labels["projectcalico.org/namespace"] == "shop"
    bare = build_model(
        [r for r in load(BASE.replace("profiles: [kns.shop]\n  ports", "ports", 1), "t").resources],
        "n1",
    )
    chain = bare.chains[("shop/web", "ingress")]
    assert evaluate(chain, Packet(ip("1.2.3.4"), 6, 80)).ref == "end of profiles (drop)"


POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
{spec}
"""


def np(name, spec, ns="shop"):
    return POLICY.format(
        name=name, ns=ns, spec="\n".join("  " + line for line in spec.splitlines())
    )


def test_selected_endpoint_default_denies_and_rules_decide():
    m = model(
        np(
            "a",
            """selector: app == "web"
ingress:
- action: Allow
  protocol: TCP
  source: {selector: app == "db"}
  destination: {ports: [http, 9000]}""",
        )
    )
    assert verdict(m, "ingress", "10.0.0.2", 6, 8080) == ("Allow", "policy/shop/a ingress rule 1")
    assert verdict(m, "ingress", "10.0.0.2", 6, 9000)[0] == "Allow"
    assert verdict(m, "ingress", "10.0.0.2", 6, 8081) == ("Deny", "tier/default default action")
    assert verdict(m, "ingress", "10.0.0.2", 17, 8080)[0] == "Deny"
    # NetworkPolicy selectors stay in their namespace: mon (ops) is not "db"
    assert verdict(m, "ingress", "10.0.1.1", 6, 8080)[0] == "Deny"
    # types default to Ingress: egress falls to the profile
    assert verdict(m, "egress", "10.0.1.1", 6, 80)[0] == "Allow"


def test_tiers_pass_order_and_default_action():
    extra = """\
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: sec}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: strict}
spec: {order: 20}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sec.block}
spec:
  tier: sec
  order: 1
  selector: all()
  ingress:
  - action: Deny
    source: {selector: feed == "bad", namespaceSelector: global()}
  - action: Pass
    source: {nets: [10.0.0.0/24]}
  - action: Log
  - action: Allow
    protocol: ICMP
    icmp: {type: 8}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: strict.b}
spec:
  tier: strict
  order: 5
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: UDP
    source: {notNets: [10.0.0.0/30]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: strict.a}
spec:
  tier: strict
  selector: app == "web"
  ingress:
  - action: Allow
    protocol: TCP
"""
    m = model(extra)
    assert verdict(m, "ingress", "198.51.100.9") == ("Deny", "policy/sec.block ingress rule 1")
    # Pass: skips the rest of sec, strict decides (UDP from outside 10.0.0.0/30)
    assert verdict(m, "ingress", "10.0.0.7", 17, 53)[0] == "Allow"
    assert verdict(m, "ingress", "10.0.0.2", 17, 53) == ("Deny", "tier/strict default action")
    # ICMP echo allowed in sec; other ICMP passes by sec's defaultAction
    assert verdict(m, "ingress", "10.9.9.9", 1, 8 << 8) == (
        "Allow",
        "policy/sec.block ingress rule 4",
    )
    assert verdict(m, "ingress", "10.9.9.9", 1, 0) == ("Deny", "tier/strict default action")
    # unordered strict.a comes after strict.b
    assert verdict(m, "ingress", "10.0.0.2", 6, 80) == ("Allow", "policy/strict.a ingress rule 1")
    chain = m.chains[("shop/web", "ingress")]
    assert [t.name for t in chain.tiers] == ["sec", "strict"]
    assert chain.tiers[1].policies == ("policy/strict.b", "policy/strict.a")


def test_calicos_own_tiers_keep_their_order_and_action_without_a_resource():
    """default (1,000,000, Deny), adminnetworkpolicy (1,000, Pass) and baselineadminnetworkpolicy
    (10,000,000, Pass) exist in Calico whether or not the config holds their
    Tier: a tier ordered after 1,000,000 comes after default, and the
    reserved tiers without a resource end in their own defaultAction."""
    extra = """\
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: late}
spec: {order: 2000000}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: late.deny-tcp}
spec:
  tier: late
  selector: app == "web"
  ingress: [{action: Deny, protocol: TCP}, {action: Pass, protocol: ICMP}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: adminnetworkpolicy.ops-only}
spec:
  tier: adminnetworkpolicy
  selector: app == "web"
  ingress: [{action: Deny, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: baselineadminnetworkpolicy.floor}
spec:
  tier: baselineadminnetworkpolicy
  selector: app == "web"
  ingress: [{action: Allow, protocol: ICMP}]
"""
    web = np("web-tcp80", 'selector: app == "web"\ningress:\n- action: Allow\n  protocol: TCP\n'
             "  destination: {ports: [80]}\n- action: Pass\n  protocol: ICMP\n")
    m = model(extra + "---\n" + web)
    chain = m.chains[("shop/web", "ingress")]
    assert [t.name for t in chain.tiers] == [
        "adminnetworkpolicy",
        "default",
        "late",
        "baselineadminnetworkpolicy",
    ]
    assert [t.default_action for t in chain.tiers] == ["Pass", "Deny", "Deny", "Pass"]
    # default decides before late: TCP 80 allowed there, late's Deny never reached
    allowed = ("Allow", "policy/shop/web-tcp80 ingress rule 1")
    assert verdict(m, "ingress", "10.9.9.9", 6, 80) == allowed
    # adminnetworkpolicy ends in a Pass, not a Deny: TCP 81 reaches default's end
    assert verdict(m, "ingress", "10.9.9.9", 6, 81) == ("Deny", "tier/default default action")
    denied = ("Deny", "policy/adminnetworkpolicy.ops-only ingress rule 1")
    assert verdict(m, "ingress", "10.9.9.9", 17, 53) == denied
    # ICMP: Passed by default and by late, baselineadminnetworkpolicy allows it
    floor = ("Allow", "policy/baselineadminnetworkpolicy.floor ingress rule 1")
    assert verdict(m, "ingress", "10.9.9.9", 1, 8 << 8) == floor
    # and the verdict names the tiers it passed through, and what passed it
    icmp = evaluate(chain, Packet(ip("10.9.9.9"), 1, 8 << 8, 0))
    assert icmp.passed == (
        "tier adminnetworkpolicy: Pass by its default action",
        "tier default: Pass by policy/shop/web-tcp80 ingress rule 2",
        "tier late: Pass by policy/late.deny-tcp ingress rule 2",
    )
    assert evaluate(chain, Packet(ip("10.9.9.9"), 6, 80, 40000)).passed == (
        "tier adminnetworkpolicy: Pass by its default action",
    )


def test_pass_from_last_tier_reaches_profiles():
    m = model(np("p", "selector: all()\ningress:\n- action: Pass\n  protocol: TCP\n"))
    assert verdict(m, "ingress", "1.1.1.1", 6, 1) == ("Allow", "profile/kns.shop ingress rule 1")
    passed = evaluate(m.chains[("shop/web", "ingress")], Packet(ip("1.1.1.1"), 6, 1, 40000))
    assert passed.passed == ("tier default: Pass by policy/shop/p ingress rule 1",)
    assert verdict(m, "ingress", "1.1.1.1", 17, 1) == ("Deny", "tier/default default action")


def test_namespace_selector_sets_service_accounts_named_ports_not_fields():
    m = model(
        np(
            "e",
            """selector: app == "web"
types: [Egress]
egress:
- action: Deny
  protocol: TCP
  notProtocol: UDP
  destination: {namespaceSelector: team == "ops", notPorts: [1000]}
- action: Allow
  protocol: TCP
  destination: {selector: app == "db", ports: [pg]}
- action: Allow
  protocol: TCP
  destination: {serviceAccounts: {names: [dbsa]}, ports: ["6000:6010"]}
- action: Allow
  destination: {selector: role == "partner"}
  source: {ports: []}
- action: Allow
  protocol: 47
""",
        )
    )
    assert verdict(m, "egress", "10.0.1.1", 6, 80) == ("Deny", "policy/shop/e egress rule 1")
    assert verdict(m, "egress", "10.0.1.1", 6, 1000) == ("Deny", "tier/default default action")
    assert verdict(m, "egress", "10.0.0.2", 6, 5432)[0] == "Allow"
    assert verdict(m, "egress", "10.0.0.2", 6, 6005)[0] == "Allow"
    assert verdict(m, "egress", "10.0.0.2", 6, 6011)[0] == "Deny"
    assert verdict(m, "egress", "203.0.113.5", 17, 5) == ("Allow", "policy/shop/e egress rule 4")
    assert verdict(m, "egress", "8.8.8.8", 47) == ("Allow", "policy/shop/e egress rule 5")


def test_unenforceable_rule_is_an_error_naming_it():
    with pytest.raises(PolicyError, match=r"policy/shop/h ingress rule 2: 'http' match cannot"):
        model(
            np(
                "h",
                "selector: all()\ningress:\n- action: Allow\n"
                "- action: Allow\n  http: {methods: [GET]}",
            )
        )


@pytest.mark.parametrize("protocol", ["protocol: UDP\n  ", "notProtocol: TCP\n  ", ""])
def test_not_icmp_without_protocol_icmp_is_an_error_naming_the_rule(protocol):
    """Calico's validator accepts notICMP whatever the protocol, but an ICMP
    type is only defined for ICMP packets: a plan-time error, not a guess."""
    spec = ('selector: app == "web"\ningress:\n- action: Allow\n'
            f"- action: Deny\n  {protocol}notICMP: {{type: 8}}\n")  # fmt: skip
    with pytest.raises(PolicyError, match=r"^policy/shop/n ingress rule 2: notICMP with protocol "
                       r".*this dataplane cannot enforce it; set protocol: ICMP"):  # fmt: skip
        model(np("n", spec))


def test_ipversion_makes_protocol_numbers_literal():
    """Protocol 1 with ipVersion 6 is a rule for IPv6 (never IPv4 traffic);
    58 with ipVersion 4 is IPv4's protocol 58, as Calico takes both."""
    m = model(np("v", 'selector: app == "web"\ningress:\n'
                      "- action: Deny\n  protocol: 1\n  ipVersion: 6\n"
                      "- action: Deny\n  protocol: 58\n  ipVersion: 4\n"
                      "- action: Allow\n"))  # fmt: skip
    ping = verdict(m, "ingress", "192.0.2.1", 1, 8 << 8)
    assert ping == ("Allow", "policy/shop/v ingress rule 3")
    assert verdict(m, "ingress", "192.0.2.1", 58) == ("Deny", "policy/shop/v ingress rule 2")


def test_compiled_program_agrees_with_the_model_on_random_packets():
    m = model(
        np(
            "r",
            """selector: all()
ingress:
- action: Deny
  protocol: TCP
  source: {nets: [10.0.0.0/8], notNets: [10.0.0.0/24]}
  destination: {ports: ["100:200", 443]}
- action: Pass
  protocol: UDP
  source: {ports: [53]}
- action: Allow
  protocol: 1
  notICMP: {type: 3}
- action: Allow
  protocol: ICMP
  notICMP: {type: 3, code: 4}
- action: Deny
  source: {selector: feed == "bad", namespaceSelector: global()}
- action: Allow
  protocol: TCP
  source: {notSelector: app == "db"}
""",
        )
    )
    chain = m.chains[("shop/web", "ingress")]
    program = compile_chain(chain)
    rng = random.Random(7)
    peers = ["10.0.0.2", "10.0.0.9", "10.3.0.1", "198.51.100.1", "1.1.1.1", "203.0.113.9"]
    for _ in range(3000):
        p = Packet(
            ip(rng.choice(peers)),
            rng.choice([1, 6, 17, 47]),
            rng.choice([0, 53, 99, 100, 150, 200, 201, 443, 3 << 8, (3 << 8) | 4, 8 << 8]),
            rng.choice([53, 54, 40000]),
        )
        v = evaluate(chain, p)
        c = verdict_of(program, p)
        assert (c.action, c.ref) == (v.action, v.ref), p
    assert program.sport_classes  # source ports were classified


def test_identical_chains_share_a_program_and_a_change_names_a_new_one():
    a = compile_chain(model("").chains[("shop/web", "ingress")])
    b = compile_chain(model("").chains[("shop/web", "ingress")])
    c = compile_chain(model(np("x", "selector: all()")).chains[("shop/web", "ingress")])
    assert a.prog_id == b.prog_id != c.prog_id


def gnp(name, spec):
    body = "\n".join("  " + line for line in spec.splitlines())
    head = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
    return f"{head}metadata: {{name: {name}}}\nspec:\n{body}\n"


def test_a_network_policy_rule_with_a_not_selector_alone_stays_in_its_namespace():
    """Calico scopes a NetworkPolicy's entity to its namespace as soon as
    any selector field is used, notSelector too: not other namespaces' pods,
    not addresses that are no endpoint's."""
    m = model(np("p", 'selector: app == "web"\ningress:\n'
                      "- action: Allow\n  source: {notSelector: app == 'db'}\n"))  # fmt: skip
    allowed = ("Allow", "policy/shop/p ingress rule 1")
    assert verdict(m, "ingress", "203.0.113.5") == allowed  # shop's NetworkSet
    denied = ("Deny", "tier/default default action")
    assert verdict(m, "ingress", "10.0.0.2") == denied  # shop's db: what notSelector names
    assert verdict(m, "ingress", "10.0.1.1") == denied  # ops' mon: another namespace
    assert verdict(m, "ingress", "192.0.2.1") == denied  # no endpoint's address
    # a GlobalNetworkPolicy's notSelector alone still means "all but these"
    g = model(gnp("g", 'selector: app == "web"\ningress:\n'
                       "- action: Allow\n  source: {notSelector: app == 'db'}\n"))  # fmt: skip
    assert verdict(g, "ingress", "192.0.2.1") == ("Allow", "policy/g ingress rule 1")
    assert verdict(g, "ingress", "10.0.0.2") == denied


@pytest.mark.parametrize("field", ["nets", "notNets"])
@pytest.mark.parametrize("side", ["source", "destination"])
def test_a_rule_whose_nets_are_all_ipv6_is_no_ipv4_rule(field, side):
    """Calico filters a rule to an IP version: nets or notNets left empty by
    it drop the whole rule for IPv4 traffic (not a match-everything)."""
    m = model(np("p", 'selector: app == "web"\ningress:\n'
                      f'- action: Allow\n  {side}: {{{field}: ["fd00::/8"]}}\n'))  # fmt: skip
    assert verdict(m, "ingress", "192.0.2.1", 6, 80) == ("Deny", "tier/default default action")


def test_a_network_set_carries_its_namespace_label_and_its_namespace_profile_labels():
    by_namespace = "{selector: projectcalico.org/namespace == 'shop'}"
    m = model(gnp("g", 'selector: app == "web"\ningress:\n'
                       f"- action: Deny\n  source: {by_namespace}\n- action: Allow\n"))  # fmt: skip
    assert verdict(m, "ingress", "203.0.113.5") == ("Deny", "policy/g ingress rule 1")
    inherited = model(gnp("g", 'selector: app == "web"\ningress:\n'
                               "- action: Deny\n  source: {selector: pcns.team == 'shop'}\n"
                               "- action: Allow\n"))  # fmt: skip
    assert verdict(inherited, "ingress", "203.0.113.5") == ("Deny", "policy/g ingress rule 1")
    assert verdict(inherited, "ingress", "198.51.100.7") == ("Allow", "policy/g ingress rule 2")


SPY = """\
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: spy
  namespace: ops
  labels: {{app: spy, pcns.env: prod, pcsa.role: admin{extra}}}
spec:
  node: n2
  interfaceName: cali-spy
  ipNetworks: [10.0.1.9/32]
  profiles: [kns.ops]
"""


def test_a_pod_cannot_claim_namespace_or_service_account_labels_of_its_own():
    m = model(gnp("g", 'selector: app == "web"\ningress:\n'
                       "- action: Allow\n  source: {selector: pcns.env == 'prod'}\n"
                       "- action: Allow\n  source: {selector: has(pcsa.role)}\n")
              + SPY.format(extra=""))  # fmt: skip
    assert verdict(m, "ingress", "10.0.1.9") == ("Deny", "tier/default default action")


def test_the_service_account_label_names_the_account_when_the_spec_does_not():
    m = model(gnp("g", 'selector: app == "web"\ningress:\n'
                       "- action: Allow\n  source: {serviceAccounts: {names: [robot]}}\n")
              + SPY.format(extra=", projectcalico.org/serviceaccount: robot"))  # fmt: skip
    assert verdict(m, "ingress", "10.0.1.9") == ("Allow", "policy/g ingress rule 1")
    assert verdict(m, "ingress", "10.0.1.1") == ("Deny", "tier/default default action")


NAMESPACES = """\
---
apiVersion: v1
kind: Namespace
metadata: {name: ops, labels: {env: dev}}
---
apiVersion: v1
kind: Namespace
metadata: {name: lab, labels: {env: dev}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: probe, namespace: lab, labels: {app: probe}}
spec:
  node: n2
  interfaceName: cali-probe
  ipNetworks: [10.0.2.1/32]
  profiles: [kns.lab]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: local-probe, namespace: lab, labels: {app: probe}}
spec:
  node: n1
  interfaceName: cali-lprobe
  ipNetworks: [10.0.2.2/32]
  profiles: [kns.lab]
"""


def test_a_kubernetes_namespace_gives_its_labels_and_its_open_profile():
    """A v1 Namespace is what Calico makes its kns.<name> profile of: its
    labels (and kubernetes.io/metadata.name) for namespaceSelector, Allow
    both ways for its pods. A kns profile written in the repository wins."""
    rules = ("- action: Deny\n  source: {namespaceSelector: env == 'dev'}\n"
             "- action: Allow\n"
             "  source: {namespaceSelector: kubernetes.io/metadata.name == 'shop'}\n")  # fmt: skip
    m = model(np("p", f'selector: app == "web"\ningress:\n{rules}') + NAMESPACES)
    assert verdict(m, "ingress", "10.0.2.1") == ("Deny", "policy/shop/p ingress rule 1")  # lab
    # ops has a Profile of its own (team: ops), which wins over its Namespace
    assert verdict(m, "ingress", "10.0.1.1") == ("Deny", "tier/default default action")
    # shop has no Namespace object, yet its kns. Profile carries the name label
    assert verdict(m, "ingress", "10.0.0.2") == ("Allow", "policy/shop/p ingress rule 2")
    probe = m.chains[("lab/local-probe", "ingress")]
    v = evaluate(probe, Packet(ip("192.0.2.1"), 6, 80, 40000))
    assert (v.action, v.ref) == ("Allow", "profile/kns.lab ingress rule 1")
    assert [r.ref for r in m.chains[("lab/local-probe", "egress")].profiles] == [
        "profile/kns.lab egress rule 1"
    ]


def test_protocols_as_numbers_quoted_or_not_mean_what_their_names_do():
    """Calico reads "17" as 17, and endpoint ports take 6, 17 and 132."""
    numbered = BASE.replace("ports: [{name: http, protocol: TCP, port: 8080}]",
                            "ports: [{name: http, protocol: 6, port: 8080}]")  # fmt: skip
    loaded = load(numbered + "---\n" + np("p", 'selector: app == "web"\ningress:\n'
                  '- action: Allow\n  protocol: "6"\n  destination: {ports: [http]}\n'
                  '- action: Allow\n  protocol: "17"\n'), "t.yaml")  # fmt: skip
    assert not loaded.diagnostics, loaded.diagnostics
    m = build_model(loaded.resources, "n1")
    assert verdict(m, "ingress", "10.9.9.9", 6, 8080) == ("Allow", "policy/shop/p ingress rule 1")
    assert verdict(m, "ingress", "10.9.9.9", 6, 8081) == ("Deny", "tier/default default action")
    assert verdict(m, "ingress", "10.9.9.9", 17, 53) == ("Allow", "policy/shop/p ingress rule 2")


INHERIT = """\
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: extra}
spec:
  labelsToApply: {zone: green, tier: gold}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: own, namespace: shop, labels: {app: own, zone: red}}
spec:
  node: n2
  interfaceName: cali-own
  ipNetworks: [10.0.0.7/32]
  profiles: [extra, kns.shop]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: two, namespace: shop, labels: {app: two}}
spec:
  node: n2
  interfaceName: cali-two
  ipNetworks: [10.0.0.8/32]
  profiles: [kns.shop, extra]
"""


def test_only_pcns_labels_of_a_namespace_profile_are_namespace_labels():
    """namespaceSelector reads the pcns. labels of kns.<ns> (prefix dropped),
    as Calico does; kns.shop's unprefixed zone: blue is a label its pods get."""
    m = model(np("p", 'selector: app == "web"\ningress:\n'
                      "- action: Deny\n  source: {namespaceSelector: has(zone)}\n"
                      "- action: Allow\n  source: {namespaceSelector: team == 'shop'}\n"
                      "- action: Deny\n"))  # fmt: skip
    assert verdict(m, "ingress", "10.0.0.2") == ("Allow", "policy/shop/p ingress rule 2")
    assert verdict(m, "ingress", "10.0.1.1") == ("Deny", "policy/shop/p ingress rule 3")  # ops
    by_pod = model(np("p", 'selector: app == "web"\ningress:\n'
                           "- action: Allow\n  source: {selector: zone == 'blue'}\n"))  # fmt: skip
    assert verdict(by_pod, "ingress", "10.0.0.2") == ("Allow", "policy/shop/p ingress rule 1")


def test_an_endpoint_label_beats_its_profiles_and_the_first_profile_beats_the_next():
    """Felix's label inheritance: the endpoint's own label, else the first of
    its profiles, in the order it names them, that gives it."""
    m = model(INHERIT)
    labels = {p.ref.rpartition("/")[2]: p.labels for p in m.peers}
    assert labels["own"]["zone"] == "red"  # its own
    assert labels["own"]["tier"] == "gold"
    assert labels["two"]["zone"] == "blue"  # kns.shop is named before extra
    assert labels["two"]["tier"] == "gold"


KSA = """\
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: ksa.shop.dbsa}
spec:
  labelsToApply: {pcsa.role: db, plain: x}
"""


def test_only_pcsa_labels_of_a_service_account_profile_are_account_labels():
    m = model(np("p", 'selector: app == "web"\ningress:\n'
                      "- action: Deny\n  source: {serviceAccounts: {selector: has(plain)}}\n"
                      "- action: Allow\n  source: {serviceAccounts: {selector: role == 'db'}}\n")
              + KSA)  # fmt: skip
    assert verdict(m, "ingress", "10.0.0.2") == ("Allow", "policy/shop/p ingress rule 2")


@pytest.mark.parametrize(
    ("global_name", "first"),
    [("zeta", "shop/m"), ("default.zeta", "default.zeta"), ("a-b", "a-b"), ("shop0", "shop/m")],
)
def test_policies_of_one_order_are_sorted_by_their_names_as_written(global_name, first):
    # Felix breaks a tie by name, a NetworkPolicy's after its namespace and a
    # slash: "shop/m" against the GlobalNetworkPolicy's name as created (since
    # v3.29.4 a default-tier policy keeps its name, `default.` prefix or not)
    extra = f"""\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: {global_name}}}
spec:
  order: 10
  selector: app == "web"
  ingress: [{{action: Allow, protocol: TCP}}]
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: m, namespace: shop}}
spec:
  order: 10
  selector: app == "web"
  ingress: [{{action: Deny, protocol: TCP}}]
"""
    m = model(extra)
    chain = m.chains[("shop/web", "ingress")]
    second = ({global_name, "shop/m"} - {first}).pop()
    assert chain.tiers[0].policies == (f"policy/{first}", f"policy/{second}")
    action = "Deny" if first == "shop/m" else "Allow"
    assert verdict(m, "ingress", "10.9.9.9", 6, 80) == (action, f"policy/{first} ingress rule 1")


def test_a_written_namespace_profile_carries_the_name_label_the_api_server_sets():
    """kns.ops is written without kubernetes.io/metadata.name; Calico's
    always has it (the API server sets it on every Namespace), so a
    namespaceSelector and a pod selector on it match; a different value
    written there is overridden by the namespace's name."""
    m = model(np("p", 'selector: app == "web"\ningress:\n'
                      "- action: Allow\n"
                      "  source: {namespaceSelector: kubernetes.io/metadata.name == 'ops'}\n"
                      "- action: Deny\n"))  # fmt: skip
    assert verdict(m, "ingress", "10.0.1.1") == ("Allow", "policy/shop/p ingress rule 1")
    assert verdict(m, "ingress", "10.0.0.2") == ("Deny", "policy/shop/p ingress rule 2")
    lying = model(np("p", 'selector: app == "web"\ningress:\n'
                          "- action: Allow\n"
                          "  source: {selector: pcns.kubernetes.io/metadata.name == 'ops'}\n")
                  ).peers  # fmt: skip
    weps = [p for p in lying if p.kind == "WorkloadEndpoint"]
    assert {p.ref: p.labels["pcns.kubernetes.io/metadata.name"] for p in weps} == {
        "WorkloadEndpoint/shop/web": "shop", "WorkloadEndpoint/shop/db": "shop",
        "WorkloadEndpoint/ops/mon": "ops",
    }  # fmt: skip
    forged_ops = "{pcns.team: ops, pcns.kubernetes.io/metadata.name: shop}"
    rules = ("- action: Allow\n"
             "  source: {namespaceSelector: kubernetes.io/metadata.name == 'shop'}\n"
             "- action: Deny\n")  # fmt: skip
    text = BASE.replace("{pcns.team: ops}", forged_ops) + "---\n"
    text += np("p", f'selector: app == "web"\ningress:\n{rules}')
    forged = build_model(load(text, "t.yaml").resources, "n1")
    assert verdict(forged, "ingress", "10.0.1.1") == ("Deny", "policy/shop/p ingress rule 2")


ZONED = """\
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: zoned}
spec:
  labelsToApply: {pcns.zone: z, pcns.team: other, env: prod}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: z0, namespace: shop, labels: {app: z0, pcns.zone: forged}}
spec:
  node: n2
  interfaceName: cali-z0
  ipNetworks: [10.0.0.9/32]
  profiles: [kns.shop, zoned]
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: z1, namespace: shop, labels: {app: z1}}
spec:
  node: n1
  interfaceName: cali-z1
  ipNetworks: [10.0.0.10/32]
  profiles: [zoned, kns.shop]
"""


def test_namespace_selector_reads_the_pcns_labels_of_every_profile_an_endpoint_names():
    """Felix matches a namespaceSelector as a pcns.-prefixed selector over
    the labels an endpoint inherits: a pcns. label of any profile it names
    counts, the first profile giving one wins, its own pcns. label does not."""
    rules = ("- action: Allow\n  source: {namespaceSelector: zone == 'z' && team == 'shop'}\n"
             "- action: Allow\n  source: {namespaceSelector: team == 'other'}\n"
             "- action: Deny\n  source: {selector: env == 'prod'}\n")  # fmt: skip
    m = model(np("p", f'selector: app == "web"\ningress:\n{rules}') + ZONED)
    assert verdict(m, "ingress", "10.0.0.9") == ("Allow", "policy/shop/p ingress rule 1")
    assert verdict(m, "ingress", "10.0.0.10") == ("Allow", "policy/shop/p ingress rule 2")
    assert verdict(m, "ingress", "10.0.0.2") == ("Deny", "tier/default default action")
    # and as a policy's own namespaceSelector, for the local z1
    g = model(ZONED + "---\n" + gnp("g", "namespaceSelector: zone == 'z'\nselector: all()\n"
                                         "ingress: [{action: Deny}]\n"))  # fmt: skip
    expected = {"shop/z1": ("Deny", "policy/g ingress rule 1"),
                "shop/web": ("Allow", "profile/kns.shop ingress rule 1")}  # fmt: skip
    for name, want in expected.items():
        v = evaluate(g.chains[(name, "ingress")], Packet(ip("192.0.2.1"), 6, 80, 40000))
        assert (v.action, v.ref) == want
