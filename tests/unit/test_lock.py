"""The apply lock: one per node (bpffs root and network namespace), in a
directory nobody else can write, released when its holder dies even if the
holder's forked workers live on for a moment."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reconciler.engine.lock import (
    LockHeld,
    UnsafeLockDir,
    apply_lock,
    lock_path,
    secure_dir,
    watch_lock,
)

ROOT = str(Path(__file__).resolve().parents[2])


def test_lock_is_per_node_not_per_state_dir(tmp_path):
    locks = tmp_path / "locks"
    assert lock_path("/sys/fs/bpf/a", None, locks) == lock_path("/sys/fs/bpf/a/", None, locks)
    assert lock_path("/sys/fs/bpf/a", None, locks) != lock_path("/sys/fs/bpf/b", None, locks)
    # a namespace that does not exist is keyed by its name
    assert lock_path("/sys/fs/bpf/a", "nope-x", locks) != lock_path("/sys/fs/bpf/a", None, locks)
    with apply_lock("/sys/fs/bpf/a", None, locks):
        with pytest.raises(LockHeld) as held, apply_lock("/sys/fs/bpf/a", None, locks):
            pass
        assert f"another apply is running: pid {os.getpid()}" in str(held.value)
        with apply_lock("/sys/fs/bpf/b", None, locks):  # another node's root: free
            pass


def test_one_watcher_per_node_beside_its_applies(tmp_path):
    locks = tmp_path / "locks"
    with watch_lock("/sys/fs/bpf/a", None, locks):
        with pytest.raises(LockHeld) as held, watch_lock("/sys/fs/bpf/a/", None, locks):
            pass
        assert f"another watcher follows this node: pid {os.getpid()}" in str(held.value)
        with apply_lock("/sys/fs/bpf/a", None, locks):  # the watcher's passes take it
            pass
    with watch_lock("/sys/fs/bpf/a", None, locks):  # released
        pass


def test_lock_directory_must_be_ours_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    refused = (
        f"{{}} is not a directory owned by uid {os.geteuid()} and writable by it alone; "
        "refusing to use it; nothing was changed"
    )
    with pytest.raises(UnsafeLockDir) as err:
        secure_dir(shared)
    assert str(err.value) == refused.format(shared)
    os.symlink(shared, tmp_path / "link")
    with pytest.raises(UnsafeLockDir) as err:
        secure_dir(tmp_path / "link")
    assert str(err.value) == refused.format(tmp_path / "link")
    secure_dir(tmp_path / "mine")
    assert (os.stat(tmp_path / "mine").st_mode & 0o777) == 0o700


HOLDER = """
import os, sys, time, multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
sys.path.insert(0, {root!r})
from reconciler.engine.lock import apply_lock
from reconciler.procs import die_with_parent

def sleep(_):
    time.sleep(60)

with apply_lock("/sys/fs/bpf/held", None, Path({locks!r})):
    ctx = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(2, mp_context=ctx, initializer=die_with_parent,
                               initargs=(os.getpid(),))
    futures = [pool.submit(sleep, i) for i in range(2)]
    time.sleep(0.5)
    print(" ".join(str(p) for p in pool._processes), flush=True)
    time.sleep(60)
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_the_holder_releases_the_lock_and_its_workers_die(tmp_path):
    locks = tmp_path / "locks"
    script = HOLDER.format(root=ROOT, locks=str(locks))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in proc.stdout.readline().split()]
        assert len(workers) == 2
        with pytest.raises(LockHeld), apply_lock("/sys/fs/bpf/held", None, locks):
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with apply_lock("/sys/fs/bpf/held", None, locks):  # free at once
            pass
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers)
    finally:
        proc.kill()
        proc.wait()


def test_kill_9_of_validate_leaves_no_workers(tmp_path):
    tree = tmp_path / "cfg"
    tree.mkdir()
    policy = textwrap.dedent(
        """\
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {{name: p{i}-{j}}}
        spec:
          selector: app == 'x{j}'
          ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [80]}}}}]
        """
    )
    for i in range(200):
        (tree / f"f{i}.yaml").write_text("---\n".join(policy.format(i=i, j=j) for j in range(40)))
    env = {**os.environ, "PYTHONPATH": ROOT}
    # Each run kills validate at a different moment after its pool started:
    # at once, and twice while the workers are busy.
    for after_start in (0.0, 0.3, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "--validate", str(tree), "--no-cache",
             "--jobs", "2"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        children = _wait_for_children(proc)
        assert children, "validate's worker pool never started"
        time.sleep(after_start)
        children = sorted(set(children) | set(_children(proc.pid)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in children), (after_start, children)


def _wait_for_children(proc, timeout=60.0):
    """The child processes of a running `proc`, as soon as it has any."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        children = _children(proc.pid)
        if children:
            return children
        time.sleep(0.005)
    return []


def _children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out
