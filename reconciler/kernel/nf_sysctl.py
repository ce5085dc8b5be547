"""The kernel conntrack's own timeouts in a network namespace: what a
FelixConfiguration bpfConntrackTimeouts timer set to `Auto` takes, as
Felix reads them (the same five sysctls; the others have none)."""

from __future__ import annotations

from reconciler.kernel.rtnetlink import inside

# bpfConntrackTimeouts timer -> the sysctl under /proc/sys/net/netfilter
NF_TIMEOUT_SYSCTLS = {
    "tcpSynSent": "nf_conntrack_tcp_timeout_syn_sent",
    "tcpEstablished": "nf_conntrack_tcp_timeout_established",
    "tcpFinsSeen": "nf_conntrack_tcp_timeout_time_wait",
    "genericTimeout": "nf_conntrack_generic_timeout",
    "icmpTimeout": "nf_conntrack_icmp_timeout",
}


def conntrack_timeouts(netns: str | None = None) -> dict[str, int]:
    """Each timer's seconds as the namespace's conntrack has them; a sysctl
    the kernel does not offer (nf_conntrack not loaded) is left out."""
    found = {}
    with inside(netns):  # /proc/sys/net is the reading thread's namespace's
        for timer, name in NF_TIMEOUT_SYSCTLS.items():
            try:
                with open(f"/proc/sys/net/netfilter/{name}") as f:
                    found[timer] = int(f.read().strip())
            except (OSError, ValueError):
                continue
    return found
