"""IPPool natOutgoing: the rules compiled, the restore script that puts
them in place (and takes them out), and what the plan lists as not
enforced. Pure: tests/kernel/test_nat_outgoing.py sends the traffic."""

from __future__ import annotations

from reconciler.compile.nat_outgoing import compile_nat_outgoing, port_range, rules
from reconciler.config.enforcement import HOST_IPS_NOT_KNOWN, not_enforced
from reconciler.datapath.chains import NAT_OUTGOING_JUMP, ours, ours_in_place, restore_script
from tests.unit.test_compile import res


def pool(name: str, cidr: str, **spec):
    return res("IPPool", name, {"cidr": cidr, **spec})


JUMP = NAT_OUTGOING_JUMP
ADDRESS = "iptables/nat-outgoing"


def test_pods_masquerade_beyond_every_pool():
    resources = [pool("a", "10.65.0.0/16", natOutgoing=True), pool("b", "10.70.0.5/24"),
                 pool("v6", "fd00::/48", natOutgoing=True)]  # fmt: skip
    [obj] = compile_nat_outgoing(resources, {}).objects
    assert obj.address == "iptables/nat-outgoing"
    assert obj.attrs["rules"] == [
        JUMP,
        "-A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN",
        "-A RCL-NAT-OUTGOING -d 10.70.0.0/24 -j RETURN",  # (normalized)
        "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -j MASQUERADE --random-fully",
    ]
    assert obj.info == {"pools": ["10.65.0.0/16"]}


def test_no_pool_with_nat_outgoing_no_chain():
    assert compile_nat_outgoing([pool("a", "10.65.0.0/16")], {}).objects == ()
    assert compile_nat_outgoing([], {}).objects == ()


def test_an_address_and_a_port_range():
    assert port_range("20000:29999") == "20000-29999" and port_range(5000) == "5000-5000"
    assert port_range(None) is None and port_range("") is None
    assert rules(["10.65.0.0/16"], ["10.65.0.0/16"], "192.168.50.1", "20000-29999")[2:] == (
        "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -p tcp -j SNAT --to-source 192.168.50.1:20000-29999",
        "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -p udp -j SNAT --to-source 192.168.50.1:20000-29999",
        "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -j SNAT --to-source 192.168.50.1",
    )
    assert rules(["10.65.0.0/16"], ["10.65.0.0/16"], None, "1-2")[2] == (
        "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -p tcp -j MASQUERADE --to-ports 1-2 --random-fully"
    )


SAVED = f"""\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:RCL-NAT-OUTGOING - [0:0]
-A POSTROUTING -o eth9 -j MASQUERADE
{JUMP}
-A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN
COMMIT
"""


def test_our_rules_are_read_from_iptables_save():
    assert ours(SAVED) == [JUMP, "-A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN"]
    assert ours("*nat\n-A POSTROUTING -o eth9 -j MASQUERADE\nCOMMIT\n") == []


def test_a_jump_with_rules_before_it_is_not_ours_as_wanted():
    """A rule ahead of our jump sees the packet first (an ACCEPT there keeps
    it from masquerade): observed so, the jump differs from the one wanted
    and the plan puts it back first."""
    assert ours_in_place(SAVED) == [
        f"{JUMP}  # after 1 rule(s) of POSTROUTING",
        "-A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN",
    ]
    first = SAVED.replace(f"-A POSTROUTING -o eth9 -j MASQUERADE\n{JUMP}",
                          f"{JUMP}\n-A POSTROUTING -o eth9 -j MASQUERADE")  # fmt: skip
    assert ours_in_place(first) == ours(first)


def test_the_restore_script_rewrites_the_chain_in_one_transaction():
    wanted = [JUMP, "-A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN",
              "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -j MASQUERADE --random-fully"]  # fmt: skip
    assert restore_script(SAVED, wanted).splitlines() == [
        "*nat",
        "-D" + JUMP[2:],  # every jump out, one back in first place
        ":RCL-NAT-OUTGOING - [0:0]",
        "-I POSTROUTING 1" + JUMP[len("-A POSTROUTING"):],
        "-A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN",
        "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -j MASQUERADE --random-fully",
        "COMMIT",
    ]
    # from nothing: no jump to delete
    fresh = restore_script("*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n", wanted).splitlines()
    assert fresh[1] == ":RCL-NAT-OUTGOING - [0:0]"
    # gone: jumps deleted, the chain flushed and deleted; the other rule untouched
    assert restore_script(SAVED, None).splitlines() == [
        "*nat", "-D" + JUMP[2:], ":RCL-NAT-OUTGOING - [0:0]", "-X RCL-NAT-OUTGOING", "COMMIT",
    ]  # fmt: skip


def test_pool_fields_besides_cidr_and_nat_outgoing_are_listed():
    listed = not_enforced([pool("a", "10.65.0.0/16", natOutgoing=True, blockSize=26,
                                vxlanMode="CrossSubnet")])  # fmt: skip
    assert [n.render() for n in listed] == [
        "IPPool/a: not enforced: blockSize, vxlanMode: IPAM's and routing's, not this node's "
        "datapath (its cidr and natOutgoing are acted on)"
    ]
    assert not_enforced([pool("a", "10.65.0.0/16", natOutgoing=True)]) == []
    felix = res("FelixConfiguration", "default", {"natOutgoingExclusions": "IPPoolsAndHostIPs",
                                                  "natPortRange": "20000:29999"})  # fmt: skip
    assert [(n.field, n.reason) for n in not_enforced([felix])] == [
        ("spec.natOutgoingExclusions", HOST_IPS_NOT_KNOWN)
    ]


def test_the_plan_shows_each_rule_added_or_gone():
    from reconciler.cli.render import change_line
    from reconciler.plan.diff import Action, Change
    from reconciler.plan.state import ObjKind

    old = [JUMP, "-A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN"]
    new = [*old, "-A RCL-NAT-OUTGOING -s 10.65.0.0/16 -j MASQUERADE --random-fully"]
    info = {"pools": ["10.65.0.0/16"]}
    update = Change(Action.UPDATE, ADDRESS, ObjKind.IPTABLES,
                    {"rules": old}, {"rules": new}, info)  # fmt: skip
    assert change_line(update).splitlines() == [
        f"    ~ {ADDRESS:<40} 2 -> 3 rule(s)  (natOutgoing: 10.65.0.0/16)",
        "        + -A RCL-NAT-OUTGOING -s 10.65.0.0/16 -j MASQUERADE --random-fully",
    ]
    gone = Change(Action.DELETE, ADDRESS, ObjKind.IPTABLES, {"rules": old}, None, {})
    assert change_line(gone).splitlines() == [
        f"    - {ADDRESS:<40} 2 rule(s)",
        f"        - {JUMP}",
        "        - -A RCL-NAT-OUTGOING -d 10.65.0.0/16 -j RETURN",
    ]
