"""The kernel conntrack's timeouts are read in the node's own namespace."""

from __future__ import annotations

import subprocess
import uuid

from reconciler.kernel.nf_sysctl import conntrack_timeouts


def test_the_timeouts_are_the_namespaces_own():
    ns = f"rclnf{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.netfilter.nf_conntrack_tcp_timeout_established=777"],
                       check=True)  # fmt: skip
        inside = conntrack_timeouts(ns)
        assert inside["tcpEstablished"] == 777
        assert set(inside) <= {"tcpSynSent", "tcpEstablished", "tcpFinsSeen", "genericTimeout",
                               "icmpTimeout"}  # fmt: skip
        assert conntrack_timeouts()["tcpEstablished"] != 777  # this namespace's is its own
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
