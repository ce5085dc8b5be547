"""A source spec opened into a Source: a directory tree or a Git commit, with
the repository's skip and ignore policy (.reconcile.yaml and the flags that
add to it) applied, so that every mode reads the same files."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.config import repo_config, source
from reconciler.config.source import Source, SourceCache


def open_source(
    spec: Mapping[str, Any],
    use_cache: bool = True,
    changed: frozenset[str] | None = None,
    *,
    sources: SourceCache,
) -> Source:
    """The config snapshot a spec names. Remote repositories are mirrored under
    the cache directory whatever --no-cache says; the working-tree stat cache
    follows it. `changed` (absolute paths, from --watch's file events) lets a
    directory be re-read at those paths only. `sources` is what the caller's
    process keeps between reads (reconciler.config.source.SourceCache)."""
    policy = spec.get("policy", {})
    cache = source.default_cache_dir()  # None when no safe cache directory exists
    if spec["kind"] == "git":
        src = source.from_git(spec["repo"], spec["ref"], cache, sources)
        return repo_config.for_commit(src, **policy)
    paths = spec["paths"]
    config = repo_config.combine(paths, **policy)
    stat = source.stat_cache_path(cache, paths) if use_cache and cache is not None else None
    if changed is not None and len(paths) == 1:
        refreshed = sources.refresh(paths[0], changed, stat)
        if refreshed is not None:
            return repo_config.apply_to(refreshed, config, paths)
    return repo_config.apply_to(
        source.from_paths(paths, stat, sources, config=config), config, paths
    )
