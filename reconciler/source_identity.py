"""What a config source's identity says, for every layer that records one.

A source's identity (config.source.Source.identity) names exactly what was
read: `git:<commit>` or `dir:<hash>`, with `+<fingerprint>` when a skip or
ignore policy (.reconcile.yaml, --skip-kinds, --ignore-paths) filtered it,
so nothing cached or applied under one policy stands for another. It is a
name to compare, not a commit: a plan and the applied record carry the
commit in a field of its own (`commit`), and recorded_commit reads that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POLICY_MARK = "+"  # never in a commit id or a directory hash
GIT = "git:"


def with_policy(identity: str, fingerprint: str) -> str:
    """The identity of a source read under a skip/ignore policy."""
    return f"{identity}{POLICY_MARK}{fingerprint}"


def identity_commit(identity: str) -> str | None:
    """The commit an identity names (`git:<commit>`, with or without a
    policy's fingerprint), or None for a directory's. For what records an
    identity alone: a pass record, an applied record of an older version."""
    if not identity.startswith(GIT):
        return None
    return identity.removeprefix(GIT).partition(POLICY_MARK)[0] or None


def recorded_commit(source: Mapping[str, Any]) -> str | None:
    """The Git commit a recorded source (a plan's `source`, the applied
    record's) was read from, or None for a directory: its `commit` field,
    else (a record written before there was one) its identity's."""
    commit = source.get("commit")
    if isinstance(commit, str) and commit:
        return commit
    return identity_commit(str(source.get("identity") or ""))
