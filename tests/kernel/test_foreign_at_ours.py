"""Someone else's object where ours must go blocks that interface alone: a tc
filter at our priority (the rest of the node converges, with real traffic),
and a foreign XDP program (--status is not "in sync")."""

from __future__ import annotations

import json

from tests.kernel.conftest import PODS, foreign_tc_filter
from tests.kernel.test_foreign_ahead import tc
from tests.kernel.test_host import HEP, UNTRACKED, felix
from tests.kernel.test_reconcile import ping

FRONT, BACK = PODS
BACK_IF, FRONT_IF = f"cali-{BACK.name}", f"cali-{FRONT.name}"

DENY_FRONT_INGRESS = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: front-closed, namespace: shop}
spec:
  selector: app == "front0"
  types: [Ingress]
"""


def test_a_filter_at_our_priority_blocks_its_interface_and_nothing_else(node, tmp_path):
    from reconciler.datapath.programs import TC_PRIO

    node.felix()
    for pod in PODS:
        node.wep(pod)
    node.write("front.yaml", DENY_FRONT_INGRESS)
    foreign_tc_filter(node, BACK_IF, TC_PRIO)
    theirs = tc(node, "filter", "show", "dev", BACK_IF, "ingress")
    at_ours = f"tc/{BACK_IF}/ingress prio {TC_PRIO} someone-else"
    warning = (
        f"Warning: {at_ours}: a tc filter that is not ours holds our priority ({TC_PRIO:#x}) "
        f"where ours must go, so {BACK_IF} gets no policy or service NAT of ours"
    )
    saved = str(tmp_path / "plan.json")
    rc, out, err = node.run("--plan", "--out", saved)
    assert rc == 2 and warning in out, out + err
    assert f"+ tc/{FRONT_IF}/ingress" in out and f"tc/{BACK_IF}/egress" not in out, out
    rc, out, err = node.run("--apply", "--plan-file", saved)  # checked as it was planned
    assert rc == 1 and "Apply partly done:" in out and "Verified" not in out, out + err
    assert "Apply complete" not in out, out
    assert f"left out, where objects not ours hold the place of ours: {BACK_IF};" in out, out
    assert err.splitlines()[-1] == (
        "error: not converged: objects not ours hold the place of ours on 1 hook(s), left out "
        f"of the apply: {at_ours}; everything else was applied; remove them (reconcile --plan "
        "says how), then apply again"
    ), err
    # the other pod converged: its ingress policy holds, its own traffic flows
    assert ping(node, FRONT, BACK.ip), "front0 -> back0: allowed, replies included"
    assert not ping(node, BACK, FRONT.ip), "back0 -> front0: front0's policy denies it"
    # theirs untouched (same handle, same program), nothing of ours on that interface
    assert tc(node, "filter", "show", "dev", BACK_IF, "ingress") == theirs
    assert "rcl:" not in tc(node, "filter", "show", "dev", BACK_IF, "egress")
    rc, out, err = node.run("--status")
    assert rc == 1 and "In sync" not in out, out + err
    assert "Last reconcile failed: not converged: objects not ours hold the place" in out, out
    assert at_ours in out, out
    # again: nothing else to do, and it still says so
    rc, out, err = node.run("--apply")
    assert rc == 1 and warning in out and "Apply complete" not in out, out + err
    assert "No changes can be made until the 1 object(s) not ours" in out and "Plan:" not in out
    rc, out, err = node.run("--plan")
    assert rc == 2 and "No changes." not in out and warning in out, out + err
    # the warning's remedy, then ours attach and the node is in sync
    tc(node, "filter", "del", "dev", BACK_IF, "ingress", "pref", str(TC_PRIO))
    node.apply_converged()
    assert "rcl:" in tc(node, "filter", "show", "dev", BACK_IF, "ingress")
    rc, out, err = node.run("--status")
    assert rc == 0 and "In sync" in out, out + err


def test_a_foreign_xdp_program_makes_status_say_blocked(node):
    from bcc import BPF
    from pyroute2 import NetNS

    felix(node)
    node.write("hep.yaml", HEP)
    node.write("untracked.yaml", UNTRACKED)
    other = BPF(text=b"int other_xdp(struct xdp_md *ctx) { return XDP_PASS; }")
    try:
        fn = other.load_func(b"other_xdp", BPF.XDP)
        with NetNS(node.sandbox.node) as ns:
            idx = ns.link_lookup(ifname="eth0")[0]
            ns.link("set", index=idx, xdp={"attrs": [("IFLA_XDP_FD", fn.fd),
                                                    ("IFLA_XDP_FLAGS", 1 << 1)]})  # fmt: skip
    finally:
        other.cleanup()  # the attachment holds the program
    rc, out, err = node.run("--apply")  # all else: tc enforces the host endpoint's other policy
    assert rc == 0 and "+ xdp/eth0" not in out, out + err
    rc, out, err = node.run("--status")
    assert rc == 2 and "In sync" not in out, out + err
    assert "does not enforce all of its policy: xdp/eth0 generic prog" in out, out
    assert "ip link set dev eth0 xdpgeneric off" in out, out
    rc, out, err = node.run("--status", "--json")
    sync = json.loads(out)["sync"]
    assert rc == 2 and sync["state"] == "blocked", out
    assert [b.split(" ", 1)[0] for b in sync["blocked"]] == ["xdp/eth0"], sync
    # the warning's remedy, then ours attach and the node is in sync
    node.sandbox.exec(node.sandbox.node, "ip", "link", "set", "dev", "eth0", "xdpgeneric", "off",
                      check=True)  # fmt: skip
    rc, out, err = node.run("--apply")
    assert rc == 0 and "+ xdp/eth0" in out, out + err
    rc, out, err = node.run("--status")
    assert rc == 0 and "In sync" in out, out + err
