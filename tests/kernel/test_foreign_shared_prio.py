"""Someone else's tc filter at our priority, with another handle, on a hook
where ours is attached and unchanged: cls_bpf runs one priority's filters
newest first, so it decides packets before our policy. The plan and apply
warn, --status says shadowed (exit 2), and the filter is never touched."""

from __future__ import annotations

import contextlib
import json

from tests.kernel.test_foreign_ahead import tc
from tests.kernel.test_foreign_at_ours import BACK, DENY_FRONT_INGRESS, FRONT, FRONT_IF
from tests.kernel.test_reconcile import ping

THEIR_HANDLE = 2  # ours is 1: both at our priority, side by side


def _their_filter_at(node, iface: str, prio: int) -> None:
    """A BPF filter of someone else's on `iface`'s egress (towards the pod),
    at `prio` with its own handle, accepting every packet."""
    from bcc import BPF

    from reconciler.datapath.programs import TC_PARENTS
    from reconciler.kernel.pyroute import route

    other = BPF(text=b"#include <uapi/linux/pkt_cls.h>\n"
                     b"int theirs(struct __sk_buff *skb) { return TC_ACT_OK; }")  # fmt: skip
    try:
        fn = other.load_func(b"theirs", BPF.SCHED_CLS)
        with route(node.sandbox.node) as ipr:
            idx = ipr.link_lookup(ifname=iface)[0]
            ipr.tc("add-filter", "bpf", idx, THEIR_HANDLE, fd=fn.fd, name="theirs",
                   parent=TC_PARENTS["egress"], classid=1, direct_action=True,
                   prio=prio)  # fmt: skip
    finally:
        with contextlib.suppress(Exception):
            other.cleanup()  # the filter holds the program


def test_a_filter_at_our_priority_added_after_ours_is_warned_and_status_shadowed(node):
    from reconciler.datapath.programs import TC_PRIO

    node.felix()
    for pod in (FRONT, BACK):
        node.wep(pod)
    node.write("front.yaml", DENY_FRONT_INGRESS)
    node.apply_converged()
    assert not ping(node, BACK, FRONT.ip), "front0's ingress policy denies back0"
    _their_filter_at(node, FRONT_IF, TC_PRIO)
    shown = tc(node, "filter", "show", "dev", FRONT_IF, "egress")
    # the kernel lists (and runs) the newer filter first, and its verdict is final
    assert shown.index("theirs") < shown.index("rcl:"), shown
    assert ping(node, BACK, FRONT.ip), "theirs accepts before our policy sees the packet"

    shared = f"tc/{FRONT_IF}/egress prio {TC_PRIO} theirs"
    warning = (
        f"Warning: {shared}: a tc filter that is not ours shares our priority ({TC_PRIO:#x}) "
        "on a hook of ours; the kernel runs the filters of one priority newest first"
    )
    remedy = f"tc filter del dev {FRONT_IF} egress pref {TC_PRIO} handle <its handle> bpf"
    rc, out, err = node.run("--plan")
    assert rc == 0 and warning in out and remedy in out, out + err
    for _ in range(2):  # applied twice: nothing to change, the warning each time
        rc, out, err = node.run("--apply")
        assert rc == 0 and warning in out, out + err
    rc, out, err = node.run("--status")
    assert rc == 2 and "In sync" not in out and warning in out, out + err
    rc, out, err = node.run("--status", "--json")
    assert rc == 2 and json.loads(out)["sync"]["state"] == "shadowed", out
    assert tc(node, "filter", "show", "dev", FRONT_IF, "egress") == shown, "theirs untouched"

    # the warning's remedy: theirs goes by its handle, ours stays and decides
    tc(node, "filter", "del", "dev", FRONT_IF, "egress", "pref", str(TC_PRIO),
       "handle", str(THEIR_HANDLE), "bpf")  # fmt: skip
    assert "rcl:" in tc(node, "filter", "show", "dev", FRONT_IF, "egress")
    rc, out, err = node.run("--status")
    assert rc == 0 and "In sync" in out, out + err
