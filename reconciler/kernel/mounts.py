"""The mount table of this process's mount namespace (/proc/mounts)."""

from __future__ import annotations

import os
import re

# The kernel writes a space, tab, newline or backslash in a path as \ooo.
_ESCAPE = re.compile(r"\\([0-7]{3})")


def mount_table() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount, in mount order.
    OSError when /proc is not there to ask."""
    with open("/proc/mounts", encoding="utf-8") as mounts:
        return [
            (_ESCAPE.sub(lambda m: chr(int(m[1], 8)), f[1]), f[2])
            for f in (line.split() for line in mounts)
            if len(f) > 2
        ]


def filesystem_of(path: str, table: list[tuple[str, str]] | None = None) -> tuple[str, str]:
    """(filesystem type, mount point) of the nearest existing directory at or
    above `path`: where a new directory at `path` would live. `table`: a
    mount_table() already read."""
    existing = os.path.realpath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    best = ("", "/")
    for point, fstype in table if table is not None else mount_table():
        # the longest mount point wins, the latest mount on ties
        inside = existing == point or existing.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[1]):
            best = (fstype, point)
    return best
