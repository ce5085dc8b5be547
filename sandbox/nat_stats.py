"""One NAT statistics counter (rcl_nat_stats), summed over CPUs: for
benches and kernel tests that check what the datapath counted."""

from __future__ import annotations

from reconciler.datapath.maps import nat_types as nat
from reconciler.kernel import bpf as bpfsys


def read_stat(fd: int, which: nat.NatStat) -> int:
    """The counter `which` of the rcl_nat_stats map open as `fd`."""
    raw = bpfsys.map_lookup(fd, nat.U32.pack(which))
    if not isinstance(raw, list):
        raise TypeError(f"{nat.MAP_NAT_STATS} is not a per-CPU map: {raw!r}")
    return nat.stats_sum(raw)


def pinned_stat(bpffs_root: str, which: nat.NatStat) -> int:
    """The counter `which` of the rcl_nat_stats map pinned under `bpffs_root`."""
    fd = bpfsys.obj_get(f"{bpffs_root}/maps/{nat.MAP_NAT_STATS}")
    try:
        return read_stat(fd, which)
    finally:
        bpfsys.close(fd)
