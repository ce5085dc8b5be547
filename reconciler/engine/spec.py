"""Where a reconcile converges: a Target with its defaults resolved, and the
kernel facts the layers above need (netns errors, link events) without
importing the kernel layer themselves."""

from __future__ import annotations

from pathlib import Path

from reconciler.engine.reconcile import Target, default_state_dir
from reconciler.kernel.bpf import BpffsError, UnsafeRoot, ensure_bpffs
from reconciler.kernel.cgroup import CgroupError, cgroup2_mount, check_cgroup
from reconciler.kernel.privileges import require_privileges
from reconciler.kernel.pyroute import link_changes
from reconciler.kernel.rtnetlink import NetnsError, check_netns

__all__ = [
    "BpffsError",
    "CgroupError",
    "NetnsError",
    "UnsafeRoot",
    "check_bpffs_root",
    "link_changes",
    "make_target",
    "require_privileges",
]


def make_target(
    node: str,
    bpffs_root: str,
    state_dir: str | None,
    netns: str | None,
    cache_dir: Path | None,
    cgroup: str | None,
) -> Target:
    """A Target; the state directory defaults by bpffs root, the cgroup to the
    cgroup2 mount. NetnsError when `netns` does not exist: nothing may
    create it (pyroute2 would, for a link watcher or a tc change)."""
    check_netns(netns)
    if cgroup:
        check_cgroup(cgroup)
    root = bpffs_root.rstrip("/")
    state = Path(state_dir) if state_dir else default_state_dir(root)
    return Target(node, root, state, netns, cache_dir, cgroup or cgroup2_mount())


def check_bpffs_root(root: str) -> None:
    """UnsafeRoot for a bpffs root nothing could ever be pinned under (off
    bpffs, not below /sys/fs/bpf where an apply mounts it) or that others can
    change. Reads only: a watcher refuses such a root at its start instead of
    failing every pass."""
    ensure_bpffs(root, create=False)
