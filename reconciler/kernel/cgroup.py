"""Finding the cgroup v2 hierarchy (it is not always at /sys/fs/cgroup)."""

from __future__ import annotations

from reconciler.kernel.mounts import mount_table


def cgroup2_mount() -> str | None:
    """The cgroup2 mount point from /proc/mounts (hybrid layouts mount it elsewhere)."""
    try:
        table = mount_table()
    except OSError:
        return None
    return next((point for point, fstype in table if fstype == "cgroup2"), None)
