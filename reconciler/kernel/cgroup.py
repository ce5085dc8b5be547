"""Finding the cgroup v2 hierarchy (it is not always at /sys/fs/cgroup)."""

from __future__ import annotations


def cgroup2_mount(mounts: str | None = None) -> str | None:
    """The cgroup2 mount point from /proc/mounts (hybrid layouts mount it elsewhere)."""
    if mounts is None:
        try:
            with open("/proc/mounts", encoding="utf-8") as fh:
                mounts = fh.read()
        except OSError:
            return None
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return parts[1]
    return None
