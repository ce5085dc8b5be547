"""What a process keeps in memory between reconcile passes, in one object
that whoever runs the passes owns and hands in: a one-shot command makes
one, --watch keeps one for its life (where the caches pay off). Nothing in
the engine or config packages keeps such state at module level, so two
owners (tests, or two watchers in one process) never see each other's."""

from __future__ import annotations

import atexit
from pathlib import Path

from reconciler.config.source import SourceCache
from reconciler.engine.store import StateStore


class Caches:
    """The source reader's caches and a compiled-state store per cache
    directory. With `defer_writes` (--watch), states are written by flush(),
    which the owner calls when idle, and at exit at the latest."""

    def __init__(self, defer_writes: bool = False, sources: SourceCache | None = None) -> None:
        self.sources = sources if sources is not None else SourceCache()
        self.defer_writes = defer_writes
        self._states: dict[Path, StateStore] = {}
        if defer_writes:
            atexit.register(self.flush)

    def states(self, cache_dir: Path | None) -> StateStore | None:
        """The store of compiled states under `cache_dir` (None: caching is off)."""
        if cache_dir is None:
            return None
        store = StateStore.under(cache_dir, self.defer_writes)
        return self._states.setdefault(store.directory, store)

    def flush(self) -> None:
        for store in self._states.values():
            store.flush()
