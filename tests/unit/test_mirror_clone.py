"""A followed remote's first clone: one that fails or times out leaves no
directory behind, a directory a dead process left does not block the next
clone, and the next fetch clones afresh once the remote answers."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from reconciler.config.source import SourceError
from reconciler.gitops.repo import Follower, clone_mirror, remove_stale_clones

DEAD_PID = 2**22 + 1  # above pid_max's ceiling: never a running process


def _bare_repo(path: Path) -> str:
    work = path.parent / (path.name + ".work")
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "a.yaml").write_text("kind: x\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True)
    out = subprocess.run(["git", "-C", str(path), "rev-parse", "main"], capture_output=True)
    return out.stdout.decode().strip()


def _leftovers(repos: Path) -> list[str]:
    return sorted(p.name for p in repos.iterdir()) if repos.exists() else []


def test_a_failed_first_clone_leaves_nothing_and_the_next_fetch_clones(tmp_path):
    remote = tmp_path / "server" / "config.git"
    follower = Follower(f"file://{remote}", "main", tmp_path / "cache")
    with pytest.raises(SourceError, match="git clone"):
        follower.fetch()  # the server has no repository yet
    assert _leftovers(tmp_path / "cache" / "repos") == []
    assert not follower.fetched
    remote.parent.mkdir()
    head = _bare_repo(remote)
    follower.fetch()  # the remote recovered: cloned now
    assert follower.fetched and follower.resolve() == head
    assert _leftovers(tmp_path / "cache" / "repos") == [follower.local.name]


def test_a_clone_that_times_out_removes_its_directory(tmp_path):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)  # accepts, never answers
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(hung.accept()[0]), daemon=True).start()
    mirror = tmp_path / "repos" / "m"
    try:
        with pytest.raises(SourceError, match="no answer after 1s"):
            clone_mirror(f"git://127.0.0.1:{hung.getsockname()[1]}/config.git", mirror, 1.0)
    finally:
        for s in (*accepted, hung):
            s.close()
    assert _leftovers(tmp_path / "repos") == []


def test_a_clone_a_dead_process_left_is_removed_and_a_live_ones_kept(tmp_path):
    remote = tmp_path / "config.git"
    head = _bare_repo(remote)
    repos = tmp_path / "cache" / "repos"
    follower = Follower(f"file://{remote}", "main", tmp_path / "cache")
    mirror = follower.local
    repos.mkdir(parents=True)
    dead_old = repos / f"{mirror.name}.{DEAD_PID}.tmp"  # named as a clone was once named
    dead_new = repos / f"{mirror.name}.{DEAD_PID}.abc123.tmp"
    live = repos / f"{mirror.name}.1.tmp"  # pid 1 runs: its clone may be in progress
    other = repos / f"other.{DEAD_PID}.tmp"  # another mirror's: not ours to judge here
    # what a timed-out clone of this process was once left as: never in the way
    own = repos / f"{mirror.name}.{os.getpid()}.tmp"
    for d in (dead_old, dead_new, live, other, own):
        (d / "objects").mkdir(parents=True)
    follower.fetch()
    assert follower.resolve() == head
    assert _leftovers(repos) == sorted([mirror.name, live.name, other.name, own.name])
    assert remove_stale_clones(mirror) == []
