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


def _rows(directory) -> list[str]:
    import sqlite3

    db = sqlite3.connect(directory / "validate.sqlite")
    try:
        return [key for (key,) in db.execute("SELECT key FROM files ORDER BY rowid")]
    finally:
        db.close()


def _result(i: int):
    from reconciler.config.validate import FileResult

    return FileResult(f"t{i}.yaml", (), ())


def test_a_new_engine_drops_the_rows_of_every_other_at_its_first_write(tmp_path):
    from reconciler.config.validate import engine_fingerprint

    engine = engine_fingerprint()
    with ResultCache(tmp_path) as cache:
        assert cache.db is not None
        with cache.db:  # rows an earlier engine wrote, around ours in key order
            cache.db.executemany(
                "INSERT INTO files VALUES (?, x'00', x'00')",
                [("0old:d:a.yaml",), (f"{engine}0:d:a.yaml",), ("zzz:d:a.yaml",)],
            )
        cache.put_many([(f"{engine}:d1:t1.yaml", _result(1))])
        cache.put_many([(f"{engine}:d2:t2.yaml", _result(2))])
    assert _rows(tmp_path) == [f"{engine}:d1:t1.yaml", f"{engine}:d2:t2.yaml"]


def test_the_oldest_rows_go_past_the_cap_which_follows_the_largest_source(tmp_path, monkeypatch):
    from reconciler.config.validate import engine_fingerprint

    engine = engine_fingerprint()
    monkeypatch.setattr(ResultCache, "MIN_ROWS", 8)
    with ResultCache(tmp_path) as cache:
        for i in range(10):  # one file per write, as a node following a repository writes
            cache.put_many([(f"{engine}:d{i}:t{i}.yaml", _result(i))], source_files=1)
    kept = _rows(tmp_path)
    assert len(kept) <= 8 and kept[-1] == f"{engine}:d9:t9.yaml"
    assert f"{engine}:d0:t0.yaml" not in kept and kept == sorted(kept, key=lambda k: int(k[-6]))
    assert len(kept) == 7  # past 8 rows, down to three quarters of the cap (6), then one more
    with ResultCache(tmp_path) as cache:  # a source of 5 files: the cap becomes 20
        batch = [(f"{engine}:e{i}:u{i}.yaml", _result(i)) for i in range(5)]
        cache.put_many(batch, source_files=5)
        for i in range(10, 18):
            cache.put_many([(f"{engine}:d{i}:t{i}.yaml", _result(i))], source_files=1)
        assert _rows(tmp_path)[:7] == kept and len(_rows(tmp_path)) == 20  # nothing dropped
        cache.put_many([(f"{engine}:d18:t18.yaml", _result(18))], source_files=1)
    rows = _rows(tmp_path)
    assert len(rows) == 15 and not set(kept[:6]) & set(rows)  # the oldest written went
    assert all(key in rows for key, _ in batch) and rows[-1] == f"{engine}:d18:t18.yaml"
