"""`--plan`: beside the kernel plan, the resources that changed between the
commit last applied to the node and the one planned (git sources)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from reconciler.plan.plan import Plan


def print_resource_changes(
    args: argparse.Namespace, plan: Plan, applied: Any = None, sources: Any = None
) -> None:
    """The text plan's section: see resource_changes."""
    found = resource_changes(args, plan, applied, sources)
    if found is None:
        return
    if isinstance(found, str):
        print(f"\n(no resource summary: {found})")
        return
    since, lines = found
    print(f"\nResources changed since the applied commit {since[:12]}:")
    sys.stdout.write("".join(f"  {line}\n" for line in lines) or "  (none)\n")


def json_resource_changes(
    args: argparse.Namespace, plan: Plan, applied: Any = None, sources: Any = None
) -> dict[str, Any]:
    """The JSON plan's `resource_changes` member (empty when there is none
    to give): {"since": commit, "changes": [...]} or {"error": why}."""
    found = resource_changes(args, plan, applied, sources)
    if found is None:
        return {}
    if isinstance(found, str):
        return {"resource_changes": {"error": found}}
    since, lines = found
    return {"resource_changes": {"since": since, "changes": lines}}


def resource_changes(
    args: argparse.Namespace, plan: Plan, applied: Any = None, sources: Any = None
) -> tuple[str, list[str]] | str | None:
    """The resources that changed between the commit last applied and the
    one planned, as (that commit, lines); a string when they cannot be read;
    None when there is nothing to compare (not a git source, nothing
    applied from it, the same commit). `applied`: the last-apply record to
    compare against (default: the state directory's; a snapshot plan has
    none). `sources`: the command's SourceCache (the planned commit was
    read through it)."""
    if not args.repo:  # before the imports: every text plan comes here
        return None
    from reconciler.cli.commands import _cache_dir, _target
    from reconciler.config.source import SourceCache, SourceError
    from reconciler.config.spec import open_source
    from reconciler.engine import changes, history
    from reconciler.source_identity import recorded_commit

    record = applied if applied is not None else history.last_applied(_target(args).state_dir)
    source = (record or {}).get("source") or {}
    old_id, new_id = source.get("identity", ""), plan.source.get("identity", "")
    spec = source.get("spec") or {}
    commit = recorded_commit(source)
    if commit is None or old_id == new_id or spec.get("kind") != "git":
        return None
    old_spec = {**spec, "repo": args.repo, "ref": commit}
    sources = sources if sources is not None else SourceCache()
    try:
        old = changes.resources(open_source(old_spec, sources=sources), _cache_dir(args))
        new = changes.resources(open_source(plan.source["spec"], sources=sources), _cache_dir(args))
    except SourceError as exc:
        return str(exc)
    if old is None or new is None:
        return None
    return commit, list(changes.resource_changes(old, new))
