"""A working tree read ahead by a forked child gives exactly what a read in
the process gives, reports the same errors, and never stands in for a read
it did not make."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.cli import commands
from reconciler.cli.main import parser
from reconciler.config import read_ahead, source
from reconciler.config.source import SourceCache, SourceError, from_paths
from reconciler.config.validate import ResultCache, _cache_key, engine_fingerprint

TIER = (
    "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: t{i}}}\n"
    "spec: {{order: {i}}}\n"
)


def write_tree(root: Path, count: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"t{i:04d}.yaml").write_text(TIER.format(i=i))


def read_here(paths, stat_cache):
    return source.scan_tree(paths, stat_cache, SourceCache())[:2]


def test_the_child_reads_what_a_read_here_reads_and_saves_the_stat_cache(tmp_path):
    root = tmp_path / "cfg"
    write_tree(root / "sub", 20)
    (root / "top.yaml").write_text(TIER.format(i=99))
    stat_cache = tmp_path / "stat.marshal"
    ahead = read_ahead.TreeReadAhead([str(root)], stat_cache, None)
    try:
        taken = ahead.take([str(root)], stat_cache)
        ahead.settle()
    finally:
        ahead.close()
    assert taken is not None
    records, keys = taken
    expected_records, expected_keys = read_here([str(root)], None)
    assert records == expected_records
    assert keys == expected_keys
    _, entries = marshal.loads(stat_cache.read_bytes())  # the child saved it
    assert set(entries) == set(keys.values())


def test_a_source_built_from_the_child_equals_one_read_here(tmp_path):
    root = tmp_path / "cfg"
    write_tree(root, 12)
    stat_cache = tmp_path / "stat.marshal"
    sources = SourceCache()
    sources.read_ahead = read_ahead.TreeReadAhead([str(root)], stat_cache, None)
    try:
        ahead = from_paths([str(root)], stat_cache, sources)
    finally:
        sources.read_ahead.close()
    here = from_paths([str(root)], None)
    assert ahead == here
    assert [f.read() for f in ahead.files] == [f.read() for f in here.files]


def test_a_tree_error_is_raised_by_take_as_a_read_here_raises_it(tmp_path):
    root = tmp_path / "cfg"
    write_tree(root, 3)
    os.mkfifo(root / "pipe.yaml")
    with pytest.raises(SourceError) as here:
        from_paths([str(root)], None)
    ahead = read_ahead.TreeReadAhead([str(root)], tmp_path / "stat.marshal", None)
    try:
        with pytest.raises(SourceError) as there:
            ahead.take([str(root)], tmp_path / "stat.marshal")
    finally:
        ahead.close()
    assert "pipe.yaml: is a FIFO, not a regular file" in str(there.value)
    assert str(there.value) == str(here.value)


def test_other_paths_or_another_stat_cache_are_read_here(tmp_path):
    root, other = tmp_path / "cfg", tmp_path / "other"
    write_tree(root, 3)
    write_tree(other, 2)
    stat_cache = tmp_path / "stat.marshal"
    ahead = read_ahead.TreeReadAhead([str(root)], stat_cache, None)
    try:
        assert ahead.take([str(other)], stat_cache) is None
        assert ahead.take([str(root)], tmp_path / "elsewhere.marshal") is None
        assert ahead.take([str(root)], stat_cache) is not None
        assert ahead.take([str(root)], stat_cache) is None  # taken once only
    finally:
        ahead.close()


def test_a_child_that_dies_before_answering_leaves_the_read_to_the_parent(tmp_path, monkeypatch):
    root = tmp_path / "cfg"
    write_tree(root, 3)

    def die(*args, **kwargs):
        os._exit(3)

    monkeypatch.setattr(source, "scan_tree", die)  # in the child only: it runs after the fork
    ahead = read_ahead.TreeReadAhead([str(root)], tmp_path / "stat.marshal", None)
    try:
        assert ahead.take([str(root)], tmp_path / "stat.marshal") is None
    finally:
        ahead.close()
    monkeypatch.undo()
    sources = SourceCache()
    sources.read_ahead = ahead  # taken and closed: from_paths reads itself
    assert len(from_paths([str(root)], None, sources).files) == 3


def test_the_child_validates_the_changed_files_into_the_validation_cache(tmp_path):
    root = tmp_path / "cfg"
    write_tree(root, 4)
    stat_cache, results = tmp_path / "stat.marshal", tmp_path / "validation"
    ahead = read_ahead.TreeReadAhead([str(root)], stat_cache, results)
    try:
        records, _ = ahead.take([str(root)], stat_cache)
        ahead.settle(timeout=30)
    finally:
        ahead.close()
    keys = [_cache_key(engine_fingerprint(), shown, digest) for shown, digest, _, _ in records]
    assert set(ResultCache(results).get_many(keys, full=True)) == set(keys)


def test_the_child_validates_before_the_parent_takes_records_bigger_than_a_pipe(tmp_path):
    """The records of 1,500 files outgrow a pipe's 64 KiB: the child must not
    wait for the parent to read them before it validates the changed file."""
    root = tmp_path / "cfg"
    write_tree(root, 1500)
    stat_cache, results = tmp_path / "stat.marshal", tmp_path / "validation"
    from_paths([str(root)], stat_cache)  # a stat cache of the tree
    written, entries = marshal.loads(stat_cache.read_bytes())
    stat_cache.write_bytes(marshal.dumps((written + 5 * 10**9, entries)))  # not racily clean
    changed = root / "t0007.yaml"
    changed.write_text(TIER.format(i=7007))
    key = _cache_key(engine_fingerprint(), str(changed), source.blob_id(changed.read_bytes()))
    ahead = read_ahead.TreeReadAhead([str(root)], stat_cache, results)
    try:
        ahead.settle(timeout=60)  # before take: a blocked child would never get there
        with ResultCache(results) as cache:  # validated, and the records not read yet
            assert set(cache.get_many([key], full=True)) == {key}
        records, _ = ahead.take([str(root)], stat_cache)
    finally:
        ahead.close()
    assert len(marshal.dumps(records)) > 64 * 1024
    assert [r[0] for r in records if r[3] is not None] == [str(changed)]


def args_of(*argv: str):
    return parser().parse_intermixed_args(list(argv))


def big_stat_cache(cache_home: Path, paths: list[str]) -> None:
    """A stat cache for `paths` as big as one a 500-file tree leaves."""
    path = source.stat_cache_path(cache_home / "calico-reconciler", paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * source.READ_AHEAD_MIN_BYTES)


def test_only_a_big_working_tree_planned_or_applied_by_root_is_read_ahead(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    root = tmp_path / "cfg"
    write_tree(root, 2)
    plan = ("--plan", "--config", str(root), "--node", "n")
    assert commands.start_read_ahead(args_of(*plan)) is None  # small
    big_stat_cache(tmp_path / "cache", [str(root)])
    for argv in (
        ("--plan", "--config", str(root), "--node", "n", "--no-cache"),
        ("--plan", "--repo", str(tmp_path), "--node", "n"),
        ("--watch", "--config", str(root), "--node", "n"),
        ("--validate", str(root)),  # nothing to import meanwhile: no gain
    ):
        assert commands.start_read_ahead(args_of(*argv)) is None, argv
    for argv in (plan, ("--apply", "--config", str(root), "--node", "n")):
        big_stat_cache(tmp_path / "cache", [str(root)])  # the last child saved the real one
        sources = commands.start_read_ahead(args_of(*argv))
        assert sources is not None and sources.read_ahead is not None
        sources.read_ahead.close()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # plan and apply stop first without root
    assert commands.start_read_ahead(args_of(*plan)) is None


def test_the_child_does_not_outlive_a_parent_killed_while_it_validates(tmp_path):
    """A parent killed with -9 after taking the records: its child, busy
    validating, goes with it."""
    root = tmp_path / "cfg"
    write_tree(root, 40)
    stat_cache, results = tmp_path / "stat.marshal", tmp_path / "validation"
    code = f"""
import time
from pathlib import Path
from reconciler.config import read_ahead
ahead = read_ahead.TreeReadAhead([{str(root)!r}], Path({str(stat_cache)!r}), Path({str(results)!r}))
ahead.take([{str(root)!r}], Path({str(stat_cache)!r}))
print(ahead.pid, flush=True)
time.sleep(60)
"""

    # A slow validation stands in for a big one: the child sleeps in it.
    slow = tmp_path / "sitecustomize.py"
    slow.write_text(
        "import reconciler.config.read_ahead as r, time\n"
        "r._prevalidate = lambda *a: time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[2]}"}
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, 9)
        parent.wait(10)
        for _ in range(100):
            try:
                state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
            except OSError:
                break  # reaped: gone
            if state == "Z":
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the read-ahead child {child} outlived its parent")
    finally:
        if parent.poll() is None:
            parent.kill()
