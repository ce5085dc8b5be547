"""A full state directory: every record write says which file, why and what
to do (never a bare "[Errno 28]"), leaves the old record as it was and no
temporary file behind; an apply whose record cannot be written says what
the kernel went through. The directory is a real tmpfs filled up (root)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reconciler.engine import history
from reconciler.engine.reconcile import Target, Unrecorded, record_applied, unrecorded
from reconciler.engine.store import StateStore
from reconciler.plan.diff import Action, Change
from reconciler.plan.plan import Plan
from reconciler.plan.state import ObjKind

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root)")

NEW = {"identity": "git:" + "b" * 40, "description": "repo@main (bbbbbbbbbbbb)", "commit": "b" * 40}
OLD = {"identity": "git:" + "a" * 40, "description": "repo@main (aaaaaaaaaaaa)", "commit": "a" * 40}


@pytest.fixture
def state(tmp_path):
    """A small tmpfs under tmp_path holding a record, then filled up."""
    where = tmp_path / "state"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(where)],
                   check=True)  # fmt: skip
    try:
        (where / history.APPLIED).write_text(json.dumps({"source": OLD}) + "\n")
        with open(where / "fill", "wb", buffering=0) as fh, pytest.raises(OSError) as full:
            while True:
                fh.write(b"\0" * 4096)
        assert full.value.errno == 28
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _names(where: Path) -> list[str]:
    return sorted(os.listdir(where))


def _plan(changes: int) -> Plan:
    change = Change(Action.CREATE, "tc/cali-a/ingress", ObjKind.TC, None, {}, {})
    return Plan("n1", dict(NEW), "/sys/fs/bpf/x", "fp", (change,) * changes, {"hash": "1"}, (), ())


def test_a_record_that_cannot_be_written_names_the_file_and_the_remedy(state):
    before = (state / history.APPLIED).read_bytes()
    with pytest.raises(history.StateWriteError) as caught:
        history.write_json(state / history.WATCH, {"state": "ok", "pad": "x" * 8192})
    assert str(caught.value) == f"cannot write {state}/watch.json: no space left on device; " \
        "free space there"  # fmt: skip
    assert isinstance(caught.value, OSError) and caught.value.errno == 28
    assert _names(state) == ["applied.json", "fill"]  # no temporary file left
    assert (state / history.APPLIED).read_bytes() == before


def test_the_applied_record_is_left_as_it_was_and_no_tmp_file(state):
    target = Target("n1", "/sys/fs/bpf/x", state)
    with pytest.raises(history.StateWriteError) as caught:
        record_applied(_plan(3), target, 3)
    assert str(caught.value) == (
        f"cannot write {state}/applied.json: no space left on device; free space there"
    )
    assert _names(state) == ["applied.json", "fill"]
    assert history.last_applied(state) == {"source": OLD}
    # once there is room the record is written, and nothing else is left
    os.unlink(state / "fill")
    record_applied(_plan(3), target, 3)
    assert history.last_applied(state)["source"] == NEW
    assert _names(state) == ["applied.json"]


def test_the_cache_store_removes_what_it_could_not_write(state):
    store = StateStore(state / "states")
    os.unlink(state / "fill")
    (state / "fill").write_bytes(b"\0" * (64 * 1024 - 2 * 4096))  # room for the directory only
    store._write_applied(("state-1", {"t": "digest" * 2000}, {}))  # (a cache: never raises)
    assert [p.name for p in (state / "states").iterdir() if ".tmp" in p.name] == []


def test_an_apply_it_cannot_record_says_what_the_kernel_went_through():
    full = OSError(28, "No space left on device")
    exc = history.StateWriteError(Path("/var/lib/x/applied.json"), full)
    write = "cannot write /var/lib/x/applied.json: no space left on device; free space there"
    told = unrecorded(exc, _plan(75), 0, {"source": OLD})
    assert isinstance(told, Unrecorded)
    assert (told.identity, told.converged) == (NEW["identity"], True)
    assert str(told) == (
        f"{write}; the kernel was changed: 75 change(s) from repo@main (bbbbbbbbbbbb) applied, "
        "but the record of what this node runs still names repo@main (aaaaaaaaaaaa) "
        "(--status and a restarted watcher go by it)"
    )
    partly = unrecorded(exc, _plan(75), 2, None)
    assert "(2 object(s) still differ)" in str(partly) and not partly.converged
    assert "still names no source (none recorded)" in str(unrecorded(exc, _plan(1), 0, None))
    same = str(unrecorded(exc, _plan(0), 0, {"source": OLD}))
    assert same.startswith(f"{write}; nothing was changed: the kernel already matches repo@main")


@pytest.mark.parametrize(("code", "remedy"), [
    (30, "read-only file system; remount it read-write or give a writable --state-dir"),
    (13, "permission denied; run as root or give a writable --state-dir"),
    (5, "input/output error"),
])  # fmt: skip
def test_each_reason_has_its_remedy(code, remedy):
    exc = history.StateWriteError(Path("/s/watch.json"), OSError(code, os.strerror(code)))
    assert str(exc) == f"cannot write /s/watch.json: {remedy}"
