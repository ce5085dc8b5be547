"""An apply on a node whose state directory is full (a real tmpfs): the
kernel is changed, and the error says so, naming the record it could not
write and what to do; no temporary file is left. Once the kernel matches,
the same apply says nothing was changed; with room again it records the
state and the next plan and apply are "No changes."."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.kernel.conftest import PODS


@pytest.fixture
def full_state(node):
    """The node's state directory on a 64 KiB tmpfs, filled up."""
    node.state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(node.state)],
                   check=True)  # fmt: skip
    try:
        with open(node.state / "fill", "wb", buffering=0) as fh, pytest.raises(OSError):
            while True:
                fh.write(b"\0" * 4096)
        yield node
    finally:
        subprocess.run(["umount", str(node.state)], check=True)


def test_an_apply_it_cannot_record_says_the_kernel_was_changed(full_state):
    node = full_state
    node.felix()
    node.wep(PODS[0])
    rc, out, err = node.run("--plan")
    assert rc == 2 and "No changes." not in out, out + err  # (2: changes to make)
    rc, out, err = node.run("--apply")
    record = f"{node.state}/applied.json"
    assert rc != 0
    said = err.strip().splitlines()[-1]
    assert said.startswith(
        f"error: cannot write {record}: no space left on device; free space there; "
        "the kernel was changed: "
    ), out + err
    assert said.endswith(
        f"change(s) from {node.config} applied, but the record of what this node runs still "
        "names no source (none recorded) (--status and a restarted watcher go by it)"
    ), said
    assert sorted(os.listdir(node.state)) == ["fill"]  # no temporary file
    # the kernel holds the configuration: nothing to do, but still not recorded
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
    rc, out, err = node.run("--apply")
    assert rc != 0
    assert f"error: cannot write {record}: no space left on device; free space there; " \
        f"nothing was changed: the kernel already matches {node.config}" in err  # fmt: skip
    assert sorted(os.listdir(node.state)) == ["fill"]
    os.unlink(node.state / "fill")
    node.apply_converged()
    left = os.listdir(node.state)
    assert "applied.json" in left and not [n for n in left if n.endswith(".tmp")], left
