"""`--explain --kernel` on an interface that carries no program of ours (an
`ingress` qdisc not ours holds our clsact's place: the interface is blocked
and apply leaves it out): the loaded program still denies the crafted
packet, but real traffic passes, and explain says the interface enforces
nothing instead of vouching for the Deny."""

from __future__ import annotations

from tests.kernel.test_host_to_pod import DENY_ALL_BACK
from tests.kernel.test_policy import BACK, FRONT, pods, tcp

__all__ = ["pods"]  # the fixture, shared with test_policy


def test_explain_kernel_says_a_blocked_interface_enforces_nothing(pods):
    node = pods.node
    sb = node.sandbox
    assert sb.exec(sb.node, "tc", "qdisc", "add", "dev", BACK.host_iface, "ingress").returncode == 0
    node.write("k8s-deny.yaml", DENY_ALL_BACK)
    rc, _, err = node.run("--apply")
    assert rc == 1 and BACK.host_iface in err, err  # applied but for the blocked interface
    assert tcp(pods, FRONT, BACK.ip) == f"back0 {FRONT.ip}"  # the Deny is not enforced

    rc, out, err = node.run("--explain", "--from", FRONT.name, "--to", f"{BACK.ip}:8080/tcp",
                            "--kernel")  # fmt: skip
    assert rc == 0, out + err
    assert "shop/back0 ingress: Deny by tier/default default action (tier default)\n" in out, out
    assert (
        f"  kernel: our program is not attached to {BACK.host_iface} (blocked: an ingress qdisc "
        "not ours holds the place of our clsact): this interface enforces nothing of ours\n"
    ) in out, out
    assert "(agrees)" in out.split("shop/back0 ingress")[0], out  # front0's egress is attached
    assert out.endswith(f"Verdict: Deny (not enforced: no program of ours on {BACK.host_iface})\n")
