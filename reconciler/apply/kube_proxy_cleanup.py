"""Take kube-proxy's chains out of the node's netfilter tables: the rules of
other chains that jump to them, then the chains; its nftables mode's own
tables whole. Only kube-proxy's (reconciler.kernel.netfilter.kube_proxys):
kubelet's and everyone else's rules stay."""

from __future__ import annotations

from reconciler.kernel import netfilter


def remove_kube_proxy(netns: str | None) -> str:
    """Remove them; what was done, for the apply's output."""
    chains = netfilter.kube_proxy_chains(netns)
    tables = sorted({(c.backend, c.family, c.table) for c in chains})
    for backend, family, table in tables:
        if backend == "nft" and table == netfilter.KUBE_PROXY_TABLE:
            netfilter.delete_nft_table(netns, family, table)
            continue
        script = netfilter.cleanup_script(netfilter.save(netns, backend, family, table))
        if script is not None:
            netfilter.restore(netns, backend, family, script)
    where = ", ".join(" ".join(t) for t in tables)
    return f"removed {len(chains)} chain(s) of kube-proxy ({where})"
