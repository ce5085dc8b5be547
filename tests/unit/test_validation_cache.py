"""The validation cache leaves no write-ahead log behind: with the collector
off, as the CLI runs, a dropped connection would stay open until the
process leaves, and the next process would read its whole log again."""

from __future__ import annotations

import gc

from reconciler.config.source import SourceFile
from reconciler.config.validate import ResultCache, cached_resources, validate_files

TIER = b"apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t%d}\nspec: {order: %d}\n"


def tier(i: int) -> SourceFile:
    data = TIER % (i, i)
    from reconciler.config.source import blob_id

    return SourceFile(f"t{i}.yaml", blob_id(data), lambda: data)


def test_validating_and_reading_back_leave_no_open_connection(tmp_path):
    collecting = gc.isenabled()
    gc.disable()
    try:
        files = [tier(i) for i in range(3)]
        results = validate_files(files, tmp_path)  # validated and stored
        assert all(r.ok for r in results.values())
        assert not (tmp_path / "validate.sqlite-wal").exists()
        again = validate_files(files, tmp_path)  # from the cache
        assert {p: r.resources for p, r in again.items()} == {
            p: r.resources for p, r in results.items()
        }
        found = cached_resources({f.path: f.digest for f in files}, tmp_path)
        assert found is not None and set(found) == {f.path for f in files}
        assert not (tmp_path / "validate.sqlite-wal").exists()
    finally:
        if collecting:
            gc.enable()


def test_a_closed_cache_answers_nothing_and_stores_nothing(tmp_path):
    with ResultCache(tmp_path) as cache:
        assert cache.db is not None
    assert cache.db is None
    assert cache.get_many(["k"], full=True) == {}
    cache.put_many([])  # no connection: nothing happens
    cache.close()  # twice is fine
