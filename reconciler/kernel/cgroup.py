"""Finding the cgroup v2 hierarchy (it is not always at /sys/fs/cgroup)."""

from __future__ import annotations

import os

from reconciler.kernel.mounts import filesystem_of, mount_table


class CgroupError(ValueError):
    """A --cgroup that is not a cgroup v2 directory."""


def cgroup2_mount() -> str | None:
    """The cgroup2 mount point from /proc/mounts (hybrid layouts mount it elsewhere)."""
    try:
        table = mount_table()
    except OSError:
        return None
    return next((point for point, fstype in table if fstype == "cgroup2"), None)


def check_cgroup(path: str) -> None:
    """CgroupError unless `path` is an existing directory of a cgroup v2
    hierarchy, where the connect-time programs can be attached: anything
    else would be planned and then refused by the kernel at apply."""
    if not os.path.isdir(path):
        raise CgroupError(f"--cgroup {path}: no such directory; nothing was changed")
    fstype, point = filesystem_of(path)
    if fstype != "cgroup2":
        on = f"{fstype} mounted at {point}" if fstype else "no known mount"
        raise CgroupError(
            f"--cgroup {path}: not a cgroup v2 directory (it is on {on}); nothing was changed"
        )
