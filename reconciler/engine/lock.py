"""One apply at a time per node, and one watcher: an flock'd file that
names its holder.

The lock is keyed on what an apply changes, the bpffs root and the network
namespace, never on `--state-dir`: two applies with different state dirs
change the same kernel objects. It lives in a root-owned 0700 directory
(LOCK_DIR), so no other user can take it first or swap it for a symlink.

An flock belongs to the open file, and a forked child shares it: a worker
of a process pool would hold the lock after its parent was killed, for
good. So a child closes its copy as soon as it is forked (close-on-fork, by
an at-fork hook), and the lock is released exactly when its holder dies.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path

LOCK_DIR = Path("/run/calico-reconciler/locks")

_held: set[int] = set()  # lock descriptors this process holds


def _close_held_in_child() -> None:
    for fd in list(_held):
        with suppress(OSError):
            os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class LockHeld(Exception):
    pass


class UnsafeLockDir(PermissionError):
    """The lock directory is not ours alone: no privilege would fix that."""


def netns_identity(netns: str | None) -> str:
    """The network namespace an apply changes, as device:inode of its nsfs
    file (stable however it is named); a name that does not exist yet is
    keyed by its name (observe then fails on it)."""
    path = f"/run/netns/{netns}" if netns else "/proc/self/ns/net"
    try:
        st = os.stat(path)
    except OSError:
        return f"name:{netns}"
    return f"{st.st_dev}:{st.st_ino}"


def lock_path(
    bpffs_root: str, netns: str | None, directory: Path | None = None, kind: str = "apply"
) -> Path:
    """The `kind` lock file of a node (bpffs root and netns) in `directory`
    (LOCK_DIR, read when called)."""
    directory = LOCK_DIR if directory is None else directory
    root = os.path.realpath(bpffs_root)
    key = hashlib.sha256(f"{root}\0{netns_identity(netns)}".encode()).hexdigest()[:24]
    return directory / f"{kind}-{key}.lock"


def secure_dir(directory: Path) -> None:
    """Create `directory` (0700) and check it is ours alone: owned by this
    user, not a symlink, writable by no one else. Raises UnsafeLockDir (or
    PermissionError when it cannot be created)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise UnsafeLockDir(
            f"{directory} is not a directory owned by uid {os.geteuid()} and writable by it "
            "alone; refusing to use it; nothing was changed"
        )


def apply_lock(
    bpffs_root: str, netns: str | None = None, directory: Path | None = None
) -> AbstractContextManager[None]:
    """Held while an apply changes the node."""
    return _node_lock("apply", bpffs_root, netns, directory)


def watch_lock(
    bpffs_root: str, netns: str | None = None, directory: Path | None = None
) -> AbstractContextManager[None]:
    """Held by a watcher for its life: two would undo each other's passes."""
    return _node_lock("watch", bpffs_root, netns, directory)


@contextmanager
def _node_lock(
    kind: str, bpffs_root: str, netns: str | None, directory: Path | None
) -> Iterator[None]:
    directory = LOCK_DIR if directory is None else directory
    secure_dir(directory)
    path = lock_path(bpffs_root, netns, directory, kind)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    _held.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(_describe_holder(kind, path, bpffs_root)) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv),
            "bpffs_root": bpffs_root,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        _held.discard(fd)
        os.close(fd)  # closing releases the flock


_HOLDERS = {"apply": "another apply is running", "watch": "another watcher follows this node"}


def _describe_holder(kind: str, path: Path, bpffs_root: str) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not holder:
        return f"another {kind} holds the lock of {bpffs_root} ({path})"
    return (
        f"{_HOLDERS[kind]}: pid {holder.get('pid')} on {holder.get('host')} "
        f"since {holder.get('since')} ({holder.get('command')}); lock {path}"
    )
