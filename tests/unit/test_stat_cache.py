"""The working-tree stat cache may skip reading files, never serve a stale id."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from reconciler.config import source
from reconciler.config.source import SourceError, blob_id, from_paths


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "cfg"
    root.mkdir()
    for i in range(3):
        (root / f"f{i}.yaml").write_text(f"kind: Tier\nmetadata: {{name: t{i}}}\n")
    return root, tmp_path / "stat.marshal"


def backdate_cache(cache, seconds=5):
    import marshal

    written, entries = marshal.loads(cache.read_bytes())
    cache.write_bytes(marshal.dumps((written + seconds * 10**9, entries)))


def digests(src):
    return {os.path.basename(f.path): f.digest for f in src.files}


def test_unchanged_files_are_not_read_and_ids_match(tree, monkeypatch):
    root, cache = tree
    first = from_paths([str(root)], cache)
    backdate_cache(cache)  # the files' ctimes are now well before the cache write
    opened = []
    real_open = open

    def spy(path, *a, **k):
        opened.append(str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", spy)
    second = from_paths([str(root)], cache)
    assert digests(second) == digests(first)
    assert not [p for p in opened if p.endswith(".yaml")]  # nothing re-read
    assert second.files[0].read() == (root / "f0.yaml").read_bytes()  # lazily, verified


def test_same_size_edit_with_mtime_restored_is_still_seen(tree):
    root, cache = tree
    from_paths([str(root)], cache)
    backdate_cache(cache)
    target = root / "f1.yaml"
    st = os.stat(target)
    target.write_text(target.read_text().replace("t1", "x1"))  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back; ctime moves
    got = digests(from_paths([str(root)], cache))
    assert got["f1.yaml"] == blob_id(target.read_bytes())


def test_racily_clean_entries_are_hashed_again(tree):
    """An entry written in the same instant as the file's last change proves
    nothing (a second edit could follow within one timestamp tick)."""
    import marshal

    root, cache = tree
    path = str((root / "f2.yaml").resolve())
    st = os.stat(path)
    sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    # stat data matches, but the id is of other content, written right after the change
    cache.write_bytes(marshal.dumps((st.st_ctime_ns + 1, {path: (sig, "0" * 40)})))
    got = digests(from_paths([str(root)], cache))
    assert got["f2.yaml"] == blob_id((root / "f2.yaml").read_bytes())
    # the same entry written long after the change would be trusted
    cache.write_bytes(marshal.dumps((st.st_ctime_ns + 10**10, {path: (sig, "0" * 40)})))
    assert digests(from_paths([str(root)], cache))["f2.yaml"] == "0" * 40


def test_a_file_changed_mid_run_fails_loudly(tree):
    root, cache = tree
    from_paths([str(root)], cache)
    backdate_cache(cache)
    src = from_paths([str(root)], cache)
    time.sleep(0.01)
    (root / "f0.yaml").write_text("kind: Tier\nmetadata: {name: changed}\n")
    f0 = next(f for f in src.files if f.path.endswith("f0.yaml"))
    with pytest.raises(SourceError, match="changed while it was being read"):
        f0.read()


def test_a_corrupt_cache_is_ignored(tree):
    root, cache = tree
    cache.write_bytes(b"not a stat cache")
    assert digests(from_paths([str(root)], cache)) == digests(from_paths([str(root)]))


def test_one_cache_per_set_of_roots(tmp_path):
    a = source.stat_cache_path(tmp_path, ["/x", "/y"])
    assert a == source.stat_cache_path(tmp_path, ["/y", "/x"])
    assert a != source.stat_cache_path(tmp_path, ["/x"])


def test_a_new_tree_leaves_only_the_most_recent_stat_caches(tmp_path, monkeypatch):
    """One stat cache per set of roots: a runner validating a fresh checkout
    per job must not gain a file a job. The trees read last are kept."""
    monkeypatch.setattr(source, "STAT_CACHES_KEPT", 5)
    caches = tmp_path / "cache"

    def read_new_tree(name: str) -> Path:
        root = tmp_path / name
        root.mkdir()
        (root / "tier.yaml").write_text(f"kind: Tier\nmetadata: {{name: {name}}}\n")
        cache = source.stat_cache_path(caches, [str(root)])
        from_paths([str(root)], cache)
        return cache

    paths = []
    for i in range(8):
        paths.append(read_new_tree(f"checkout-{i}"))
        os.utime(paths[-1], ns=((i + 1) * 10**9, (i + 1) * 10**9))  # written in this order
    (caches / "stat" / "notes.txt").write_text("not a stat cache")
    assert set((caches / "stat").glob("*.marshal")) == set(paths[3:])
    # Reading a tree the directory already holds prunes nothing.
    monkeypatch.setattr(source, "STAT_CACHES_KEPT", 2)
    from_paths([str(tmp_path / "checkout-7")], paths[7])
    assert set((caches / "stat").glob("*.marshal")) == set(paths[3:])
    monkeypatch.setattr(source, "STAT_CACHES_KEPT", 5)
    newest = read_new_tree("checkout-new")
    assert set((caches / "stat").glob("*.marshal")) == {newest, *paths[4:]}
    assert (caches / "stat" / "notes.txt").exists()


def test_files_built_in_bulk_equal_those_built_one_by_one(tree):
    root, cache = tree
    from_paths([str(root)], cache)
    backdate_cache(cache)
    (root / "f0.yaml").write_text("kind: Tier\nmetadata: {name: changed}\n")  # read: bytes kept
    records, _, _ = source.scan_tree([str(root)], cache, source.SourceCache())
    assert [r[3] is None for r in records] == [False, True, True]  # the others: read when needed
    bulk, single = source.as_files(records), [source.as_file(r) for r in records]
    assert bulk == single and [f.read() for f in bulk] == [f.read() for f in single]
    assert [repr(f) for f in bulk] == [repr(f) for f in single]
    with pytest.raises(AttributeError):  # still frozen
        bulk[0].path = "elsewhere"


def test_a_same_size_rewrite_in_the_same_second_as_the_cache_is_seen(tree):
    """A rewrite right after the cache was written, same size, mtime and
    atime put back: the racy rule re-hashes it (its ctime is too close)."""
    root, cache = tree
    from_paths([str(root)], cache)  # written now: every file is racily clean
    target = root / "f1.yaml"
    st = os.stat(target)
    target.write_text(target.read_text().replace("t1", "y1"))  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    got = digests(from_paths([str(root)], cache))
    assert got["f1.yaml"] == blob_id(target.read_bytes())


def test_a_file_swapped_for_a_symlink_to_another_is_read_again(tree):
    """The walk's own stat data key the cache: a file replaced by a link to
    another file of the tree is known by the target's inode, not trusted."""
    root, cache = tree
    from_paths([str(root)], cache)
    backdate_cache(cache)
    (root / "f1.yaml").unlink()
    (root / "f1.yaml").symlink_to(root / "f2.yaml")
    got = digests(from_paths([str(root)], cache))
    assert got["f1.yaml"] == got["f2.yaml"] == blob_id((root / "f2.yaml").read_bytes())
