"""Validation: load, schema and semantic checks for a whole config source.

Results are cached per file by (engine fingerprint, path, blob id), so
re-validating a large repository where one file changed parses one file.
Cache misses are spread over every core with a fork pool.
"""

from __future__ import annotations

import contextlib
import functools
import marshal
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from reconciler.assets import SCHEMA_DIR, code_signature
from reconciler.config import calico_rules, converted_kinds, nat_capacity, node_ports
from reconciler.config.diagnostics import (
    Diagnostic,
    Finding,
    Path,
    Severity,
    format_path,
    not_read,
)
from reconciler.config.model import Resource
from reconciler.config.source import Source, SourceFile

# Below this many uncached files a pool costs more than it saves.
_PARALLEL_THRESHOLD = 64


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    resources: tuple[Resource, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


@dataclass(frozen=True, slots=True)
class Validation:
    resources: tuple[Resource, ...]
    diagnostics: tuple[Diagnostic, ...]
    files: int
    cached_files: int
    resource_count: int

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


def validate_document(
    resource: Resource, floats: bool = True, written: Mapping[Path, str] | None = None
) -> list[Diagnostic]:
    """Schema then semantic checks for one resource. `floats=False` (the
    loader saw no float in it) lets the schema skip its integer-strictness
    pass; `written` is the loader's texts of plain scalars YAML 1.1 reads
    otherwise (reconciler.config.as_written). A document nested past what a
    check's recursion can take is reported, never a traceback."""
    from reconciler.config import as_written, endpoint_networks, schema, semantic

    kind, body = resource.kind, resource.body
    try:
        precise = semantic.check(resource) + endpoint_networks.findings(resource)
        # a field the semantic checks judged is told once, in their words,
        # not also as the schema's pattern or range
        judged = {f.path for f in precise if f.severity is Severity.ERROR}
        findings = [f for f in schema.check(kind, body, floats)
                    if f.path not in judged] + precise  # fmt: skip
        if written:
            told = {f.path for f in findings}
            findings = [as_written.in_written_words(f, body, written) for f in findings]
            findings += as_written.boolean_words(
                body, written, told, lambda doc: schema.check(kind, doc, True)
            )
    except RecursionError:
        findings = [Finding((), "too deeply nested to check (a selector or pattern?)")]
    return [_located(resource, f) for f in findings]


def validate_file(path: str, data: bytes) -> FileResult:
    from reconciler.config.load import load  # as in validate_document

    loaded = load(data, path)
    diagnostics = list(loaded.diagnostics)
    resources = []
    for index, resource in enumerate(loaded.resources):
        found = validate_document(
            resource, index in loaded.with_floats, loaded.as_written.get(index)
        )
        diagnostics.extend(found)
        valid = not any(d.severity is Severity.ERROR for d in found)
        # what the rest of the pipeline reads: a valid resource of a converted
        # kind as the Calico policy Calico makes of it
        if valid:
            resource = converted_kinds.enforced(resource)
        resources.append(resource)
    return FileResult(path, tuple(resources), tuple(diagnostics))


def _validate_batch(batch: Sequence[tuple[str, bytes]]) -> list[FileResult]:
    return [validate_file(path, data) for path, data in batch]


@functools.cache
def engine_fingerprint() -> str:
    """Changes whenever the code or schemas that decide validity change:
    every module of this package (a hand-kept list misses the one added
    next), the protocol table it reads, and the schemas."""
    here = FsPath(__file__).resolve().parent
    return code_signature(
        [*here.glob("*.py"), here.parent / "protocols.py", *SCHEMA_DIR.glob("*.json")]
    )


Ident = tuple[str, str | None, str, str, int]  # kind, namespace, name, file, line


def _diag_rows(diagnostics: Iterable[Diagnostic]) -> list[tuple[Any, ...]]:
    return [(d.file, d.line, d.resource, d.path, d.message, d.severity.value) for d in diagnostics]


def _diags(rows: Iterable[tuple[Any, ...]]) -> tuple[Diagnostic, ...]:
    return tuple(
        Diagnostic(file, line, ref, path, message, Severity(severity))
        for file, line, ref, path, message, severity in rows
    )


class ResultCache:
    """A small sqlite store of per-file results keyed by content.

    Two blobs per file, as plain tuples in marshal's format (data, never
    code to run, and faster than pickle): a summary (diagnostics and
    resource identities, all `--validate` needs) and the full resources
    (what a plan compiles).

    Bounded, as a node that follows a repository for months writes rows at
    every change: the first write by a new validation engine drops every
    other engine's rows (no key of theirs can be asked again), and past
    `cap` rows the oldest written go first. The cap is MIN_ROWS or four
    times the largest source validated here, whichever is more, so the
    rows of the source a node follows stay while it churns.
    """

    MIN_ROWS = 50_000

    def __init__(self, directory: FsPath | None) -> None:
        self.db: sqlite3.Connection | None = None
        if directory is None:
            return
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(directory / "validate.sqlite", timeout=5)
            self.db.execute("PRAGMA journal_mode=WAL")
            # A cache: a power cut may lose its last results (they are
            # computed again), never corrupt it (WAL), so commits skip fsync.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS files (key TEXT PRIMARY KEY, summary BLOB, full BLOB)"
            )
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        except (OSError, sqlite3.Error):
            self.db = None  # a cache must never make validation fail

    def close(self) -> None:
        """Close the connection. It must be closed, not dropped: a connection
        and its statement cache refer to each other, so with the collector
        off (reconciler.cli.main) a dropped one stays open until the process
        leaves, and the WAL it leaves behind is read whole by the next
        process that opens the cache, and copied back again at its first
        commit (bench/layout_bench.py's one changed service applied). The
        last connection closed folds the WAL into the database and deletes it."""
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()
            self.db = None

    def __enter__(self) -> ResultCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, keys: Sequence[str], full: bool) -> dict[str, Any]:
        if self.db is None or not keys:
            return {}
        column = "full" if full else "summary"
        found: dict[str, Any] = {}
        try:
            for start in range(0, len(keys), 900):
                chunk = keys[start : start + 900]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, summary, {column} FROM files WHERE key IN ({marks})"
                for key, summary, blob in self.db.execute(query, chunk):
                    found[key] = (marshal.loads(summary), marshal.loads(blob) if full else None)
        except (sqlite3.Error, ValueError, EOFError, TypeError):
            return {}
        return found

    def put_many(self, items: Iterable[tuple[str, FileResult]], source_files: int = 0) -> None:
        """Store results by key; `source_files`: how many files the source
        being validated holds (it raises the cap, never lowers it)."""
        if self.db is None:
            return
        rows = []
        for key, result in items:
            idents = [(r.kind, r.namespace, r.name, r.file, r.line) for r in result.resources]
            summary = (_diag_rows(result.diagnostics), idents, _facts(result.resources))
            # Line tables stay out: they only place diagnostics, which are
            # already in the summary, and they are most of a resource's size.
            full = [(r.kind, r.name, r.namespace, r.body, r.file, r.line) for r in result.resources]
            rows.append((key, marshal.dumps(summary), marshal.dumps(full)))
        if not rows:
            return
        try:
            with self.db:
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?)", rows)
                self._bound(source_files)
        except sqlite3.Error:
            pass

    def _bound(self, source_files: int) -> None:
        """Drop other engines' rows once, then the oldest written past the cap
        (to three quarters of it, so that eviction is rare). Inside the write's
        transaction; the row count is asked only when the rowid span says it
        may be over (min and max of the rowid are each one B-tree descent)."""
        assert self.db is not None
        meta = dict(self.db.execute("SELECT name, value FROM meta"))
        engine = engine_fingerprint()
        if meta.get("engine") != engine:
            # keys are "<engine>:<digest>:<path>"; ";" follows ":"
            self.db.execute(
                "DELETE FROM files WHERE key < ? OR key >= ?", (f"{engine}:", f"{engine};")
            )
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('engine', ?)", (engine,))
        largest = int(meta.get("largest") or 0)
        if source_files > largest:
            largest = source_files
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('largest', ?)", (str(largest),))
        cap = max(self.MIN_ROWS, 4 * largest)
        low = self.db.execute("SELECT min(rowid) FROM files").fetchone()[0]
        high = self.db.execute("SELECT max(rowid) FROM files").fetchone()[0]
        if low is None or high - low + 1 <= cap:
            return
        count = self.db.execute("SELECT count(*) FROM files").fetchone()[0]
        if count > cap:
            self.db.execute(
                "DELETE FROM files WHERE rowid IN (SELECT rowid FROM files ORDER BY rowid LIMIT ?)",
                (count - cap * 3 // 4,),
            )


def _run(misses: Sequence[SourceFile], jobs: int) -> list[FileResult]:
    work = [(f.path, f.read()) for f in misses]
    if jobs <= 1 or len(work) < _PARALLEL_THRESHOLD:
        return _validate_batch(work)
    # Many small batches keep both cores busy even when file sizes differ.
    size = max(1, len(work) // (jobs * 8))
    batches = [work[i : i + size] for i in range(0, len(work), size)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor  # (and logging): only for a pool

    from reconciler.procs import die_with_parent

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(
        jobs, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        return [r for results in pool.map(_validate_batch, batches) for r in results]


def duplicate_findings(idents: Sequence[Ident]) -> list[Diagnostic]:
    """Same kind/namespace/name defined more than once."""
    first: dict[tuple[str, str | None, str], Ident] = {}
    out = []
    for ident in idents:
        kind, namespace, name, file, line = ident
        seen = first.setdefault((kind, namespace, name), ident)
        if seen is not ident:
            ref = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
            message = f"duplicate resource: also defined at {seen[3]}:{seen[4]}"
            out.append(
                Diagnostic(
                    file,
                    line,
                    ref,
                    "metadata.name",
                    message + converted_kinds.collision_hint(kind, name),
                )
            )
    return out


def apply_kind_policy(
    diagnostics: Iterable[Diagnostic], skip: frozenset[str], strict: bool
) -> list[Diagnostic]:
    """Notes about documents of kinds we do not read: dropped for the kinds
    in `skip`, errors under `strict`. Other diagnostics pass unchanged."""
    out = []
    for d in diagnostics:
        if d.severity is Severity.NOTE and d.path == "kind":
            if d.resource.split("/", 1)[0] in skip:
                continue
            if strict:
                d = Diagnostic(d.file, d.line, d.resource, d.path, d.message)
        out.append(d)
    return out


def _cache_key(fingerprint: str, path: str, digest: str) -> str:
    return f"{fingerprint}:{digest}:{path}"


def _results(
    files: Sequence[SourceFile], cache_dir: FsPath | None, full: bool, jobs: int
) -> tuple[list[str], dict[str, Any], dict[str, FileResult]]:
    """Cache keys, cached rows by key and fresh results by path: the misses
    are validated (over `jobs` processes) and stored."""
    fingerprint = engine_fingerprint()
    keys = [_cache_key(fingerprint, f.path, f.digest) for f in files]
    with ResultCache(cache_dir) as cache:
        cached = cache.get_many(keys, full=full)
        misses = [f for f, key in zip(files, keys, strict=True) if key not in cached]
        fresh = {f.path: r for f, r in zip(misses, _run(misses, jobs), strict=True)}
        cache.put_many(
            ((_cache_key(fingerprint, f.path, f.digest), fresh[f.path]) for f in misses),
            source_files=len(files),
        )
    return keys, cached, fresh


def validate_files(files: Sequence[SourceFile], cache_dir: FsPath | None) -> dict[str, FileResult]:
    """Per-file results for a few files (no cross-file checks): what an
    incremental compile needs for the files that changed."""
    keys, cached, fresh = _results(files, cache_dir, True, 1)
    out: dict[str, FileResult] = {}
    for f, key in zip(files, keys, strict=True):
        if f.path in fresh:
            out[f.path] = fresh[f.path]
            continue
        (diag_rows, *_), full = cached[key]
        out[f.path] = FileResult(f.path, tuple(Resource(*row) for row in full), _diags(diag_rows))
    return out


def cached_resources(
    blobs: Mapping[str, str], cache_dir: FsPath | None
) -> dict[str, tuple[Resource, ...]] | None:
    """The resources of files (path -> blob id) validated before, or None if
    any of them is not in the cache any more."""
    fingerprint = engine_fingerprint()
    keys = {_cache_key(fingerprint, path, digest): path for path, digest in blobs.items()}
    found: dict[str, Any] = {}
    if keys:
        with ResultCache(cache_dir) as cache:
            found = cache.get_many(list(keys), full=True)
    if len(found) != len(keys):
        return None
    return {keys[key]: tuple(Resource(*row) for row in full) for key, (_, full) in found.items()}


def _facts(resources: Iterable[Resource]) -> list[node_ports.Fact]:
    """What the whole-source checks need of each resource: node_ports' facts,
    and a policy's tier when a Tier resource must name it."""
    out = [fact for r in resources for fact in node_ports.facts_of(r)]
    out += [fact for r in resources for fact in nat_capacity.facts_of(r)]
    for r in resources:
        tier = calico_rules.tier_needed(r)
        if tier is not None:
            path = ("spec", "tier")
            out.append(("tier", r.ref, r.file, r.line_of(path), format_path(path), tier))
    return out


def missing_tier_findings(
    facts: Sequence[node_ports.Fact], idents: Sequence[Ident]
) -> list[Diagnostic]:
    """Each policy whose tier no Tier resource of the source names."""
    known = {ident[2] for ident in idents if ident[0] == "Tier"}
    return [
        Diagnostic(file, line, ref, path, calico_rules.missing_tier(tier).message)
        for kind, ref, file, line, path, tier in (f for f in facts if f[0] == "tier")
        if tier not in known
    ]


def validate_source(
    source: Source,
    cache_dir: FsPath | None = None,
    jobs: int | None = None,
    with_resources: bool = True,
    every_node: bool = False,
) -> Validation:
    """Validate every file of a source; diagnostics are all collected.

    `with_resources=False` (plain `--validate`) skips rebuilding resources
    from the cache: only diagnostics and identities are needed.
    `every_node` (--validate, the pre-receive hook): also refuse what a
    plan would refuse on some node, whichever (a nodePort outside the node
    port ranges or on a failsafe port of any node's configuration, a NAT
    frontend map too small for the frontends every node programs); a plan
    checks its own node's instead (reconciler/compile/config_limits.py)."""
    keys, cached, fresh = _results(
        source.files, cache_dir, with_resources, jobs or os.cpu_count() or 1
    )
    resources: list[Resource] = []
    diagnostics: list[Diagnostic] = []
    idents: list[Ident] = []
    facts: list[node_ports.Fact] = []
    for f, key in zip(source.files, keys, strict=True):
        result = fresh.get(f.path)
        if result is not None:
            resources += result.resources
            diagnostics += result.diagnostics
            idents += [(r.kind, r.namespace, r.name, r.file, r.line) for r in result.resources]
            facts += _facts(result.resources)
            continue
        (diag_rows, file_idents, file_facts), full = cached[key]
        diagnostics += _diags(diag_rows)
        idents += file_idents
        facts += file_facts
        if full is not None:
            resources += [Resource(*row) for row in full]
    diagnostics += duplicate_findings(idents)
    diagnostics += missing_tier_findings(facts, idents)
    diagnostics += node_ports.shared(facts)
    if every_node:
        diagnostics += node_ports.problems(facts)
        diagnostics += nat_capacity.problems(facts)
    diagnostics += [not_read(path) for path in source.unread]
    if source.skip_kinds or source.strict_kinds:
        diagnostics = apply_kind_policy(diagnostics, source.skip_kinds, source.strict_kinds)
    return Validation(
        tuple(resources), tuple(diagnostics), len(source.files), len(cached), len(idents)
    )
