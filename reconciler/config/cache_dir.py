"""Where caches live, and the check that makes reading them safe.

Caches hold what later runs trust: stat data, validation results, compiled
states (read through a restricted unpickler), generated validators (run as
code). Whoever can write a cache could steer, or with the validators run
code as, the user who reads it, root for a plan or apply. So a cache
directory is used only when it and every directory above it could be
changed by no one but this user and root: the cache directory itself owned
by this user, mode 0700, not a symlink; each ancestor owned by root or this
user and writable by no one else (unless sticky, as /tmp is, where only an
entry's owner may rename it). Otherwise caching is off, with a warning.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

_warned: set[Path] = set()


def base() -> Path:
    """$XDG_CACHE_HOME/calico-reconciler, else ~/.cache/calico-reconciler."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(root) / "calico-reconciler"


def problem(directory: Path) -> str | None:
    """Why `directory` (which exists) is not safe to read caches from, or None."""
    me = os.geteuid()
    try:
        st = os.lstat(directory)
    except OSError as exc:
        return f"{directory}: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return f"{directory} is not a directory"
    if st.st_uid != me or st.st_mode & 0o077:
        return f"{directory} is not owned by uid {me} with mode 0700"
    for parent in Path(os.path.abspath(directory)).parents:
        try:
            pst = os.stat(parent)
        except OSError as exc:
            return f"{parent}: {exc.strerror}"
        sticky = pst.st_mode & stat.S_ISVTX
        if pst.st_uid not in (0, me) or (pst.st_mode & 0o022 and not sticky):
            return f"{parent} can be changed by other users"
    return None


def _tighten(directory: Path) -> None:
    """A directory of ours that only we could write but others may read
    (what earlier versions created) becomes 0700; one others could write
    stays as it is, and is refused."""
    st = os.lstat(directory)
    if (
        stat.S_ISDIR(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & 0o022
        and st.st_mode & 0o077
    ):
        os.chmod(directory, 0o700)


def secure(directory: Path) -> Path | None:
    """`directory`, created 0700 if missing, or None (with a warning) when
    another user could write it (see the module's rules)."""
    try:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        _tighten(directory)
    except OSError as exc:
        why: str | None = f"{directory}: {exc.strerror}"
    else:
        why = problem(directory)
    if why is None:
        return directory
    if directory not in _warned:
        _warned.add(directory)
        print(f"warning: caching is off: {why}", file=sys.stderr)
    return None


def default() -> Path | None:
    return secure(base())
