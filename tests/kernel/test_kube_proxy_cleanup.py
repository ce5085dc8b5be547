"""kube-proxy's leftover rules in the node's netfilter (iptables-nft,
iptables-legacy, ip6tables, its nftables mode's own table) are taken out by
the apply in BPF mode, and nothing else is: kubelet's chains and other
rules stay. With bpfKubeProxyIptablesCleanupEnabled false they all stay.
Everything happens in the sandbox node's namespace; the rules are read
back with the system's own tools."""

from __future__ import annotations

import subprocess

from tests.kernel.conftest import FELIX, PODS
from tests.unit.test_kube_proxy_cleanup import SAVED_NAT

FRONT, _ = PODS

# What kube-proxy (iptables mode) and kubelet leave, in iptables-restore
# syntax: the nat table as iptables-save shows it, and the filter table.
KUBE_PROXY_FILTER = """\
*filter
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FIREWALL -d 127.0.0.0/8 -m conntrack --ctstate RELATED -j DROP
COMMIT
"""
KUBE_PROXY_NAT6 = """\
*nat
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
COMMIT
"""


def in_node(node, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", node.sandbox.node, *argv],
        input=stdin, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def leave_kube_proxys_rules(node) -> None:
    for backend in ("nft", "legacy"):
        in_node(node, f"iptables-{backend}-restore", "--noflush", stdin=SAVED_NAT)
        in_node(node, f"iptables-{backend}-restore", "--noflush", stdin=KUBE_PROXY_FILTER)
        in_node(node, f"ip6tables-{backend}-restore", "--noflush", stdin=KUBE_PROXY_NAT6)
    in_node(node, "nft", "add table ip kube-proxy; add chain ip kube-proxy services; "
            "add table ip6 kube-proxy; add chain ip6 kube-proxy services")  # fmt: skip


def rules(node, tool: str) -> str:
    return in_node(node, tool)


def test_bpf_mode_takes_kube_proxys_chains_out_and_leaves_the_rest(node):
    node.felix()
    node.wep(FRONT)
    leave_kube_proxys_rules(node)
    rc, out, err = node.run("--plan")
    assert rc == 2, out + err
    # 2 x (7 in ip, 1 in ip6) iptables chains, 2 nftables chains of kube-proxy's tables
    assert "~ netfilter/kube-proxy                     chains: 18 -> 0" in out, out
    out = node.apply_converged()  # (and the next plan is "No changes.")
    assert "1 changed, 0 destroyed" in out, out
    for backend in ("nft", "legacy"):
        v4 = rules(node, f"iptables-{backend}-save")
        assert "KUBE-SERVICES" not in v4 and "KUBE-SVC-" not in v4 and "KUBE-SEP-" not in v4
        assert "KUBE-NODEPORTS" not in v4 and "KUBE-FORWARD" not in v4
        assert "KUBE-MARK-MASQ" not in v4 and "KUBE-POSTROUTING" not in v4
        # kubelet's chain and its rules, and rules of nobody's, stay
        assert "-A INPUT -j KUBE-FIREWALL" in v4
        assert "-A KUBE-FIREWALL -d 127.0.0.0/8" in v4
        assert "-A POSTROUTING -o eth9 -j MASQUERADE" in v4
        assert "-A MY-CHAIN -j RETURN" in v4 and "-g KUBE-" not in v4
        assert "KUBE-" not in rules(node, f"ip6tables-{backend}-save")
    assert "kube-proxy" not in in_node(node, "nft", "list tables")
    rc, out, _ = node.run("--status")
    assert "netfilter" not in out  # never counted as ours


def test_with_cleanup_off_kube_proxys_chains_stay(node):
    node.write("felix.yaml", FELIX.format(enabled="true", pattern="^eth")
               + "  bpfKubeProxyIptablesCleanupEnabled: false\n")  # fmt: skip
    node.wep(FRONT)
    leave_kube_proxys_rules(node)
    out = node.apply_converged()
    assert "netfilter" not in out
    assert "-A PREROUTING -m comment" in rules(node, "iptables-nft-save")
    assert "KUBE-SVC-ABC" in rules(node, "iptables-legacy-save")
    assert "table ip kube-proxy" in in_node(node, "nft", "list tables")
    # the setting turned on in Git: the next apply takes them out
    node.felix()
    rc, out, err = node.run("--apply")
    assert rc == 0 and "~ netfilter/kube-proxy" in out and "1 changed" in out, out + err
    assert "KUBE-SERVICES" not in rules(node, "iptables-nft-save")
