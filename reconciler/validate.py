"""Validation: load, schema and semantic checks for a whole config source.

Results are cached per file by (engine fingerprint, path, blob id), so
re-validating a large repository where one file changed parses one file.
Cache misses are spread over every core with a fork pool.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sqlite3
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path as FsPath

from reconciler.diagnostics import Diagnostic, Finding, Severity, format_path
from reconciler.model import Resource
from reconciler.source import Source, SourceFile

_ENGINE_FILES = ("load.py", "schema.py", "semantic.py", "selector.py", "validate.py", "model.py")
# Below this many uncached files a pool costs more than it saves.
_PARALLEL_THRESHOLD = 64


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    resources: tuple[Resource, ...]
    diagnostics: tuple[Diagnostic, ...]


@dataclass(frozen=True, slots=True)
class Validation:
    resources: tuple[Resource, ...]
    diagnostics: tuple[Diagnostic, ...]
    files: int
    cached_files: int

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors


def _located(resource: Resource, finding: Finding) -> Diagnostic:
    return Diagnostic(
        resource.file,
        resource.line_of(finding.path),
        resource.ref,
        format_path(finding.path),
        finding.message,
        finding.severity,
    )


def validate_document(resource: Resource) -> list[Diagnostic]:
    """Schema then semantic checks for one resource."""
    from reconciler import schema, semantic

    findings = schema.check(resource.kind, resource.body)
    findings += semantic.check(resource)
    return [_located(resource, f) for f in findings]


def validate_file(path: str, data: bytes) -> FileResult:
    from reconciler.load import load

    loaded = load(data, path)
    diagnostics = list(loaded.diagnostics)
    for resource in loaded.resources:
        diagnostics.extend(validate_document(resource))
    return FileResult(path, loaded.resources, tuple(diagnostics))


def _validate_batch(batch: Sequence[tuple[str, bytes]]) -> list[FileResult]:
    return [validate_file(path, data) for path, data in batch]


def engine_fingerprint() -> str:
    """Changes whenever the code or schemas that decide validity change."""
    here = FsPath(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _ENGINE_FILES:
        path = here / name
        if path.exists():
            digest.update(path.read_bytes())
    from reconciler.schema import SCHEMA_DIR

    for path in sorted(SCHEMA_DIR.glob("*.json")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


class ResultCache:
    """A small sqlite store of pickled FileResults keyed by content."""

    def __init__(self, directory: FsPath | None) -> None:
        self.db: sqlite3.Connection | None = None
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(directory / "validate.sqlite", timeout=5)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value BLOB)")
        except (OSError, sqlite3.Error):
            self.db = None  # a cache must never make validation fail

    def get_many(self, keys: Sequence[str]) -> dict[str, FileResult]:
        if self.db is None or not keys:
            return {}
        found: dict[str, FileResult] = {}
        try:
            for start in range(0, len(keys), 900):
                chunk = keys[start : start + 900]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, value FROM results WHERE key IN ({marks})"
                for key, value in self.db.execute(query, chunk):
                    found[key] = pickle.loads(value)
        except (sqlite3.Error, pickle.UnpicklingError, EOFError):
            return found
        return found

    def put_many(self, items: Iterable[tuple[str, FileResult]]) -> None:
        if self.db is None:
            return
        rows = [
            (key, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)) for key, result in items
        ]
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)", rows)
        except sqlite3.Error:
            pass


def default_cache_dir() -> FsPath:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return FsPath(base) / "calico-reconciler"


def _run(misses: Sequence[SourceFile], jobs: int) -> list[FileResult]:
    work = [(f.path, f.read()) for f in misses]
    if jobs <= 1 or len(work) < _PARALLEL_THRESHOLD:
        return _validate_batch(work)
    # Many small batches keep both cores busy even when file sizes differ.
    size = max(1, len(work) // (jobs * 8))
    batches = [work[i : i + size] for i in range(0, len(work), size)]
    import multiprocessing

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return [r for results in pool.map(_validate_batch, batches) for r in results]


def duplicate_findings(resources: Sequence[Resource]) -> list[Diagnostic]:
    """Same kind/namespace/name defined more than once."""
    first: dict[tuple[str, str | None, str], Resource] = {}
    out = []
    for resource in resources:
        seen = first.setdefault(resource.key, resource)
        if seen is not resource:
            out.append(
                Diagnostic(
                    resource.file,
                    resource.line,
                    resource.ref,
                    "metadata.name",
                    f"duplicate resource: also defined at {seen.file}:{seen.line}",
                )
            )
    return out


def validate_source(
    source: Source, cache_dir: FsPath | None = None, jobs: int | None = None
) -> Validation:
    """Validate every file of a source; diagnostics are all collected."""
    fingerprint = engine_fingerprint()
    keys = [f"{fingerprint}:{f.digest}:{f.path}" for f in source.files]
    cache = ResultCache(cache_dir)
    cached = cache.get_many(keys)
    misses = [f for f, key in zip(source.files, keys, strict=True) if key not in cached]
    fresh = _run(misses, jobs or os.cpu_count() or 1)
    cache.put_many(
        (f"{fingerprint}:{f.digest}:{f.path}", r) for f, r in zip(misses, fresh, strict=True)
    )
    by_path = {r.path: r for r in cached.values()}
    by_path.update((r.path, r) for r in fresh)
    results = [by_path[f.path] for f in source.files]
    resources = tuple(r for result in results for r in result.resources)
    diagnostics = [d for result in results for d in result.diagnostics]
    diagnostics += duplicate_findings(resources)
    return Validation(resources, tuple(diagnostics), len(source.files), len(cached))
