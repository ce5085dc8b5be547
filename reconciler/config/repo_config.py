"""`.reconcile.yaml`: what a config repository asks reconcile to leave alone.

A config repository also holds Kustomizations, Deployments, Helm charts and
values. At its root, `.reconcile.yaml` may say

    skipKinds: [Kustomization, Deployment]      # documents of these kinds: not reported
    ignorePaths: ["charts/**", "*.values.yaml"] # files not read at all

and the `--skip-kinds` / `--ignore-paths` flags add to it. `--validate`,
`--plan` and `--apply` all honour it: `apply_to` filters a Source. For a Git
commit it is the commit's own file (Source.config), never the working tree's.
An ignored path is never read, so nothing there can fail the read: a
symlink there that leaves the tree, dangles or loops (Source.refused) is
dropped with the file; one anywhere else is raised by `apply_to`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.config.limits import MAX_FILE_BYTES, human_bytes
from reconciler.config.source import (
    CONFIG_FILE,
    Source,
    SourceError,
    SourceFile,
    refusal_error,
)
from reconciler.source_identity import with_policy

FILE_NAME = CONFIG_FILE
_KEYS = ("skipKinds", "ignorePaths")


@dataclass(frozen=True, slots=True)
class RepoConfig:
    skip_kinds: frozenset[str] = frozenset()
    ignore_paths: tuple[str, ...] = ()
    strict_kinds: bool = False

    def ignores(self, relative: str) -> bool:
        """Whether a file (path relative to the config root, '/'-separated)
        matches an ignore pattern: a pattern with a '/' matches the whole
        path ('*' crosses directories, as '**' does), one without matches
        the file name or any directory on the way, as in .gitignore."""
        parts = relative.split("/")
        for pattern in self.ignore_paths:
            pattern = pattern.strip("/") if pattern.endswith("/") else pattern
            if "/" in pattern:
                if fnmatch.fnmatchcase(relative, pattern) or fnmatch.fnmatchcase(
                    relative, pattern.rstrip("*").rstrip("/") + "/*"
                ):
                    return True
            elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
                return True
        return False

    def ignores_dir(self, relative: str) -> bool:
        """Whether every path under the directory `relative` (relative to
        the config root, '/'-separated) is ignored, so the directory as a
        whole is: a pattern without a '/' matching one of its names, one
        with a '/' matching the directory itself (less a trailing '/', '/*'
        or '/**'), or one ending in '*' that matches the directory's path
        and a '/'."""
        parts = relative.split("/")
        for pattern in self.ignore_paths:
            pattern = pattern.strip("/") if pattern.endswith("/") else pattern
            if "/" in pattern:
                base = pattern.rstrip("*").rstrip("/")
                if fnmatch.fnmatchcase(relative, base) or (
                    pattern.endswith("*") and fnmatch.fnmatchcase(relative + "/", pattern)
                ):
                    return True
            elif any(fnmatch.fnmatchcase(part, pattern) for part in parts):
                return True
        return False

    @property
    def fingerprint(self) -> str:
        text = repr((sorted(self.skip_kinds), self.ignore_paths, self.strict_kinds))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _strings(value: object, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SourceError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def read(root: str) -> RepoConfig:
    """The config file at `root` (a directory), or an empty config."""
    path = os.path.join(root, FILE_NAME)
    if not os.path.isfile(path):
        return RepoConfig()
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SourceError(f"{path}: {exc}") from exc
    return parse(data, path)


def from_file(file: SourceFile | None, where: str) -> RepoConfig:
    """A Git commit's config file (Source.config), or an empty config."""
    return RepoConfig() if file is None else parse(file.read(), f"{where}: {file.path}")


def parse(data: bytes, where: str) -> RepoConfig:
    """A config file's content; `where` names it in errors."""
    if len(data) > MAX_FILE_BYTES:
        raise SourceError(f"{where}: larger than {human_bytes(MAX_FILE_BYTES)}")
    # A YAML parser loads only for a .reconcile.yaml: bench/plan_bench.py's
    # no-op plan reads a stored state and parses no YAML.
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        loaded = YAML(typ="safe").load(data)
    except (YAMLError, UnicodeError) as exc:
        raise SourceError(f"{where}: {exc}") from exc
    if loaded is None:
        return RepoConfig()
    if not isinstance(loaded, dict):
        raise SourceError(f"{where}: expected a mapping with {' and '.join(_KEYS)}")
    unknown = sorted(set(loaded) - set(_KEYS), key=str)
    if unknown:
        raise SourceError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})")
    return RepoConfig(
        frozenset(_strings(loaded.get("skipKinds"), "skipKinds", where)),
        _strings(loaded.get("ignorePaths"), "ignorePaths", where),
    )


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def combine(
    roots: Sequence[str],
    skip_kinds: str = "",
    ignore_paths: str = "",
    strict: bool = False,
    found: Sequence[RepoConfig] = (),
) -> RepoConfig:
    """The config files of every directory root and those already `found`
    (a commit's), plus the flags' additions."""
    skip: set[str] = set(_csv(skip_kinds))
    ignore: list[str] = list(_csv(ignore_paths))
    configs = [*found, *(read(root) for root in roots if os.path.isdir(root))]
    for config in configs:
        skip |= config.skip_kinds
        ignore += [p for p in config.ignore_paths if p not in ignore]
    return RepoConfig(frozenset(skip), tuple(ignore), strict)


def _relative(path: str, roots: Iterable[str]) -> str:
    return _under(path, roots) or path


def _under(path: str, roots: Iterable[str]) -> str | None:
    """`path` (a file's shown path) relative to the root it is under, or
    None. A root is spelled as source shows its files: normalised unless
    absolute ("./cfg/" and "cfg" are both "cfg")."""
    for root in roots:
        base = root.rstrip("/") or "/"
        base = base if os.path.isabs(base) else os.path.normpath(base)
        prefix = base if base.endswith("/") else base + "/"
        if path.startswith(prefix) and len(path) > len(prefix):
            return path[len(prefix) :]
    return None


def unignored(
    refused: Iterable[tuple[str, bool, str]], config: RepoConfig, roots: Sequence[str] = ()
) -> list[tuple[str, bool, str]]:
    """The refused paths (Source.refused's entries) `config` does not ignore.
    A refused path that is a root itself, or under none of the `roots` of a
    directory source, is never ignored (a Git tree's paths have no root)."""
    kept = []
    for entry in refused:
        path, as_dir, _ = entry
        relative = _under(path, roots) if roots else path
        if relative is None or not (
            config.ignores(relative) or (as_dir and config.ignores_dir(relative))
        ):
            kept.append(entry)
    return kept


def _checked(source: Source, config: RepoConfig, roots: Sequence[str]) -> Source:
    """`source` once none of its refused paths is left unignored: those
    `config` ignores are dropped (never read, so they cannot fail the read),
    the others raised as one SourceError naming each."""
    if not source.refused:
        return source
    kept = unignored(source.refused, config, roots)
    if kept:
        raise refusal_error(kept)
    return dataclasses.replace(source, refused=())


def apply_to(source: Source, config: RepoConfig, roots: Sequence[str] = ()) -> Source:
    """`source` without the ignored files, carrying the kind policy; its
    identity changes with the config, so nothing cached under the old one
    stands for the new. A refused path (Source.refused) that the config does
    not ignore is raised here as a SourceError."""
    source = _checked(source, config, roots)
    if config == RepoConfig():
        return source
    files = tuple(f for f in source.files if not config.ignores(_relative(f.path, roots)))
    unread = tuple(p for p in source.unread if not config.ignores(_relative(p, roots)))
    return dataclasses.replace(
        source,
        identity=with_policy(source.identity, config.fingerprint),
        files=files,
        unread=unread,
        skip_kinds=config.skip_kinds,
        strict_kinds=config.strict_kinds,
    )


def for_commit(
    source: Source, skip_kinds: str = "", ignore_paths: str = "", strict: bool = False
) -> Source:
    """A Git commit's Source under its own config file plus the flags'."""
    own = from_file(source.config, source.description)
    return apply_to(source, combine([], skip_kinds, ignore_paths, strict, found=[own]))
