"""The CLI modes: validate, plan, apply, status, watch.

A mode imports the engine, the observer and the watch loop inside its
function: --validate never loads the kernel and compile layers
(bench/validate_bench.py's warm re-validation), and no one-shot run loads
the watcher (bench/plan_bench.py's no-op plan)."""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.cli import output
from reconciler.cli.exit_codes import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from reconciler.cli.output import emit_json
from reconciler.config.source import (
    SourceCache,
    SourceError,
    default_cache_dir,
    stat_cache_path,
    worth_reading_ahead,
)
from reconciler.config.spec import open_source
from reconciler.version import version

if TYPE_CHECKING:
    from reconciler.plan.plan import Plan

# JSON documents: each kind has its own format_version (docs/json-output.md)
VALIDATION_KIND = "reconcile.validation"
VALIDATION_FORMAT_VERSION = 1
APPLY_FORMAT_VERSION = 1


def source_spec(args: argparse.Namespace) -> dict[str, Any]:
    if args.repo:
        from reconciler.cli.watch_cmd import git_spec

        return git_spec(args, kind_policy(args))
    return {"kind": "dir", "paths": [args.config], "policy": kind_policy(args)}


def kind_policy(args: argparse.Namespace) -> dict[str, Any]:
    """What the flags add to .reconcile.yaml (repo_config.combine's keywords)."""
    return {
        "skip_kinds": getattr(args, "skip_kinds", ""),
        "ignore_paths": getattr(args, "ignore_paths", ""),
        "strict": getattr(args, "strict_kinds", False),
    }


def _cache_dir(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else default_cache_dir()


def _validate_spec(args: argparse.Namespace) -> dict[str, Any]:
    spec = source_spec(args)
    # a path given twice (or as ./x and x) is read once
    paths = list(dict.fromkeys(p if p == "-" else os.path.normpath(p) for p in args.paths))
    return {**spec, "kind": "dir", "paths": paths} if paths else spec


def start_read_ahead(args: argparse.Namespace) -> SourceCache | None:
    """For a one-shot --plan or --apply of a big working tree: a SourceCache
    whose tree is already being read by a forked child
    (reconciler.config.read_ahead), or None. Called from a single-threaded
    process only, before the engine is imported. Plan and apply need root
    and stop before reading anything without it, so only root reads ahead.
    --validate does not: it has nothing to import meanwhile, and the fork
    and the hand-over would be all it gained (bench/layout_bench.py)."""
    if args.no_cache or not (args.plan or args.apply) or args.repo:
        return None
    if os.geteuid() != 0:
        return None
    cache = default_cache_dir()
    if cache is None:
        return None
    paths = [args.config]
    stat_cache = stat_cache_path(cache, paths)
    if not worth_reading_ahead(stat_cache):
        return None
    from reconciler.config import read_ahead

    sources = SourceCache()
    try:
        sources.read_ahead = read_ahead.TreeReadAhead(paths, stat_cache, cache)
    except OSError:  # no fork or no pipe: read in this process
        return None
    atexit.register(sources.read_ahead.close)
    return sources


def _sources(args: argparse.Namespace) -> SourceCache:
    """The SourceCache main() started reading ahead with, else a new one."""
    sources = getattr(args, "sources", None)
    return sources if sources is not None else SourceCache()


def _empty_stdin(src: Any) -> Any:
    """The diagnostic for a standard input (a PATH of `-`) that holds no
    YAML document: no bytes, or only whitespace, comments and document
    markers (what the loader makes no document of), as a producer that
    failed leaves it; else None."""
    from reconciler.config.source import STDIN_SHOWN

    for file in src.files:
        if file.path == STDIN_SHOWN and _no_document(file.read()):
            from reconciler.config.diagnostics import NO_RESOURCE, Diagnostic

            return Diagnostic(STDIN_SHOWN, 1, NO_RESOURCE, "(source)",
                              "standard input was empty (no YAML document): nothing was "
                              "validated; pass --allow-empty if that is meant")  # fmt: skip
    return None


def _no_document(data: bytes) -> bool:
    from reconciler.config.limits import MAX_FILE_BYTES

    if len(data) > MAX_FILE_BYTES:  # too long to read: the loader says so
        return False
    for line in data.splitlines():
        text = line.strip(b" \r")  # (a tab is no YAML whitespace there: the loader says so)
        if text and not text.startswith(b"#") and text not in (b"---", b"..."):
            return False
    return True


def validate_mode(args: argparse.Namespace) -> int:
    fmt = args.format or ("json" if args.json else "text")
    try:
        src = open_source(_validate_spec(args), not args.no_cache, sources=SourceCache())
    except SourceError as exc:
        if fmt == "text":
            raise  # main's one error handler says it
        # a CI reporter reads the format asked for, also when the tree is unreadable
        _emit_validation(fmt, unreadable(exc.problems), ok=False, files=0, resources=0, paths=[])
        return EXIT_ERROR
    # Here, not at the top: a no-op plan answered by a stored state validates
    # nothing and need not load the validation cache's sqlite3, nor the
    # diagnostics (bench/layout_bench.py's no-op plan over 200 interfaces).
    from reconciler.config.diagnostics import Severity
    from reconciler.config.validate import validate_source

    result = validate_source(
        src, _cache_dir(args), args.jobs or None, with_resources=False, every_node=True
    )
    if result.files == 0 and not args.allow_empty:
        # nothing read at all (a mistyped or empty directory, a tree of
        # files the walk skips): CI must not pass it, as --plan and
        # --apply would not
        import dataclasses

        from reconciler.config.diagnostics import empty_source

        empty = empty_source(src.description, "pass --allow-empty")
        result = dataclasses.replace(result, diagnostics=(*result.diagnostics, empty))
    elif not args.allow_empty and (stdin_empty := _empty_stdin(src)) is not None:
        # `kustomize build ... | reconcile --validate -` whose producer
        # failed: standard input empty is refused as an empty directory is
        import dataclasses

        result = dataclasses.replace(result, diagnostics=(*result.diagnostics, stdin_empty))
    diags = sorted(result.diagnostics, key=lambda d: (d.file, d.line, d.path))
    if fmt != "text":
        _emit_validation(fmt, diags, result.ok, result.files, result.resource_count,
                         [f.path for f in src.files])  # fmt: skip
    else:
        notes = [d for d in diags if d.severity is Severity.NOTE]
        sys.stdout.write(
            output.render_diagnostics([d for d in diags if d.severity is not Severity.NOTE])
        )
        status = "valid" if result.ok else f"invalid: {len(result.errors)} error(s)"
        if notes:
            status += f" ({len(notes)} document(s) not validated: --format json lists them)"
        print(
            f"{result.files} file(s), {result.resource_count} resource(s): {status}",
            file=sys.stderr,
        )
    return EXIT_OK if result.ok else EXIT_ERROR


def unreadable(problems: Sequence[str]) -> list[Any]:
    """A source that could not be read, as diagnostics: one per problem
    (SourceError.problems), on the file it names ("path: why"), else on the
    source."""
    from reconciler.config.diagnostics import NO_RESOURCE, Diagnostic

    out = []
    for problem in problems:
        where, sep, why = problem.partition(": ")
        if sep and why and not where.startswith("--"):
            out.append(Diagnostic(where, 1, NO_RESOURCE, "(file)", why))
        else:
            out.append(Diagnostic("-", 1, NO_RESOURCE, "(source)", problem))
    return out


def _emit_validation(
    fmt: str, diags: Sequence[Any], ok: bool, files: int, resources: int, paths: Sequence[str]
) -> None:
    """A validation's report in a machine format (json, junit, sarif, github)."""
    if fmt == "json":
        emit_json(
            {
                "kind": VALIDATION_KIND,
                "format_version": VALIDATION_FORMAT_VERSION,
                "version": version(),
                "valid": ok,
                "files": files,
                "resources": resources,
                "diagnostics": [d.as_json() for d in diags],
            }
        )
        return
    from reconciler.cli import ci_formats  # its XML escaping loads urllib: CI formats only

    if fmt == "junit":
        sys.stdout.write(ci_formats.render_junit(list(paths), list(diags)))
    elif fmt == "sarif":
        emit_json(ci_formats.sarif_log(list(diags)))
    else:
        sys.stdout.write(ci_formats.render_github(list(diags)))


def _target(args: argparse.Namespace) -> Any:
    from reconciler.engine.spec import make_target

    return make_target(
        args.node, args.bpffs_root, args.state_dir, args.netns, _cache_dir(args), args.cgroup
    )


def _caches(args: argparse.Namespace | None = None) -> Any:
    """What this command keeps between the passes it makes (a one-shot
    command makes one, around the SourceCache main() read ahead with;
    --watch keeps its own for its life)."""
    from reconciler.engine.caches import Caches

    return Caches(sources=_sources(args) if args is not None else None)


def _report_invalid(args: argparse.Namespace, exc: Any) -> None:
    diags = sorted(exc.validation.diagnostics, key=lambda d: (d.file, d.line, d.path))
    if args.json:
        emit_json(
            {
                "kind": VALIDATION_KIND,
                "format_version": VALIDATION_FORMAT_VERSION,
                "version": version(),
                "valid": False,
                "diagnostics": [d.as_json() for d in diags],
            }
        )
    else:
        sys.stderr.write(output.render_diagnostics(diags))
        print(f"error: {exc}; nothing was changed", file=sys.stderr)


def _plan_or_report(
    args: argparse.Namespace,
    spec: dict[str, Any],
    fingerprint: bool = True,
    changed: frozenset[str] | None = None,
    keep_derived: bool = True,
    *,
    caches: Any,
) -> tuple[Plan, Any, Any] | None:
    """(plan, desired state, what was observed), or None after reporting an
    invalid config."""
    from reconciler.engine.reconcile import InvalidConfig, make_plan

    target = _target(args)
    try:
        plan, desired, observed = make_plan(
            lambda: open_source(spec, not args.no_cache, changed, sources=caches.sources),
            target,
            fingerprint,
            keep_derived,
            allow_empty=getattr(args, "allow_empty", False),
            caches=caches,
        )
    except InvalidConfig as exc:
        _report_invalid(args, exc)
        return None
    # The saved plan records how to re-read its source, for the staleness check.
    return dataclasses.replace(plan, source={**plan.source, "spec": spec}), desired, observed


def render_plan(args: argparse.Namespace, plan: Plan) -> str:
    # The plan and datapath modules load with the modes that plan, not
    # with --validate (bench/validate_bench.py's warm re-validation).
    from reconciler.cli import render
    from reconciler.cli.logs import finish, use_color

    finish()

    return render.render_plan(
        plan,
        detail=getattr(args, "detail", False),
        color=use_color(args),
        node_source=getattr(args, "node_source", ""),
    )


def plan_mode(args: argparse.Namespace) -> int:
    # The observed-state fingerprint is only needed to save or print the plan.
    # A plan's incremental state is not stored: the apply derives it again
    # from the applied state for less than writing it would cost.
    caches = _caches(args)
    spec = source_spec(args)
    if args.out and spec["kind"] == "dir":  # a saved plan is applied from anywhere
        spec = {**spec, "paths": [os.path.abspath(p) for p in spec["paths"]]}
    planned = _plan_or_report(
        args, spec, bool(args.out or args.json), keep_derived=False, caches=caches
    )
    if planned is None:
        return EXIT_ERROR
    plan, _, _ = planned
    if args.out:
        plan.dump(args.out)
    if args.json:
        from reconciler.cli.change_summary import json_resource_changes

        emit_json({**plan.as_json(), **json_resource_changes(args, plan, sources=caches.sources)})
    else:
        sys.stdout.write(render_plan(args, plan))
        from reconciler.cli.change_summary import print_resource_changes

        print_resource_changes(args, plan, sources=caches.sources)
        if args.out:
            again = " ".join(shlex.quote(word) for word in target_options(args))
            print(
                f"\nSaved the plan to {args.out}. Apply it with: reconcile --apply "
                f"--plan-file {shlex.quote(args.out)}{' ' + again if again else ''}"
            )
    return plan_exit_code(plan)


def plan_exit_code(plan: Plan) -> int:
    """0 no changes, 2 changes; also 2 for a plan with nothing else to do
    whose interfaces objects not ours keep it from attaching on: the kernel
    still differs from the configuration (engine.foreign_place)."""
    from reconciler.engine.foreign_place import blocked_in

    return EXIT_OK if plan.empty and not blocked_in(plan) else EXIT_CHANGES


def target_options(args: argparse.Namespace) -> list[str]:
    """The options naming the node a plan was made for, as given: --apply
    --plan-file must name the same one."""
    from reconciler.cli.main import DEFAULT_ROOT

    words = ["--node", args.node] if getattr(args, "node_source", "") == "--node" else []
    for option, value, default in (
        ("--netns", args.netns, None),
        ("--bpffs-root", args.bpffs_root, DEFAULT_ROOT),
        ("--cgroup", args.cgroup, None),
        ("--state-dir", args.state_dir, None),
    ):
        if value is not None and value != default:
            words += [option, value]
    return words


def apply_mode(args: argparse.Namespace, changed: frozenset[str] | None = None) -> int:
    """Plan, apply, verify. `changed` (from --watch): the only files that may
    differ from the last pass; the drift timer's passes read everything."""
    from reconciler.engine.reconcile import InvalidConfig, reconcile_once

    quiet = bool(args.json)

    def show(plan: Plan) -> None:
        nonlocal quiet
        # --watch passes that find nothing to do stay quiet
        quiet = args.json or (args.watch and plan.empty and not plan.warnings)
        if not quiet:
            sys.stdout.write(render_plan(args, plan))

    from reconciler.cli.status_history import recorded

    target = _target(args)
    caches = _caches(args)
    try:
        result = recorded(
            target,
            lambda: reconcile_once(
                target,
                source_spec(args),
                caches=caches,
                plan_file=args.plan_file,
                changed=changed,
                use_cache=not args.no_cache,
                on_plan=show,
                allow_empty=args.allow_empty,
            ),
        )
    except InvalidConfig as exc:
        _report_invalid(args, exc)
        return EXIT_ERROR
    plan = result.plan
    from reconciler.cli.logs import finish

    finish()
    if args.json:
        emit_json(
            {
                "kind": "reconcile.apply",
                "format_version": APPLY_FORMAT_VERSION,
                "version": version(),
                "plan": plan.as_json(),
                "results": [{"address": a, "result": r} for a, r in result.applied],
                "converged": result.converged,
                "remaining": [c.as_json() for c in result.remaining],
                "blocked": list(result.blocked),
            }
        )
    elif result.applied:
        print(_applied_line(result))
    if result.remaining:
        sys.stderr.write("error: not converged after apply; still different:\n")
        from reconciler.cli import render  # as in render_plan

        sys.stderr.write("".join(render.change_line(c) + "\n" for c in result.remaining))
        return EXIT_ERROR
    if result.blocked:
        from reconciler.engine.foreign_place import blocked_error

        print(f"error: {blocked_error(result.blocked)}", file=sys.stderr)
        return EXIT_ERROR
    if not quiet:
        print("Verified: the kernel matches the configuration.")
    return EXIT_OK


def _applied_line(result: Any) -> str:
    """What an apply that changed something did: complete, or, with
    interfaces left out for objects not ours, only partly done (the error
    after it names the objects and the remedy)."""
    from reconciler.engine.foreign_place import blocked_ifaces
    from reconciler.plan.diff import summarize  # as in render_plan

    s = summarize(result.plan.changes)
    counts = f"{s['add']} added, {s['change']} changed, {s['destroy']} destroyed"
    if not result.blocked:
        return f"\nApply complete! Resources: {counts}."
    ifaces = blocked_ifaces(result.blocked)
    return (
        f"\nApply partly done: the planned changes are made (resources: {counts}), but "
        f"{len(ifaces)} interface(s) were left out, where objects not ours hold the place of "
        f"ours: {', '.join(ifaces)}; their tc hooks are left as they were, so they do not "
        "enforce this configuration's policy."
    )


def status_mode(args: argparse.Namespace) -> int:
    """What is applied, the last reconciles, and whether the kernel still
    matches the source the last apply used. Exit 0 in sync, 2 it differs, 1
    the last reconcile failed."""
    from reconciler.cli.status_history import add_history, render_history
    from reconciler.observe.status import collect_status, render_status

    target = _target(args)
    from reconciler.observe import host_counters

    status = add_history(collect_status(target), target.state_dir)
    status["version"] = version()
    status["sync"], desired = _sync(args, target, status["last_apply"])
    owned = sum(status.get("owned", {}).values())
    if status["sync"]["state"] == "never applied" and owned:
        # something applied here, and this state directory does not know what
        status["sync"] = {"state": "unknown", "changes": 0, "warnings": [], "reason": (
            f"the node holds {owned} object(s) of ours, but {target.state_dir} has no record "
            "of an apply (applied with another --state-dir?)")}  # fmt: skip
    # the newest reconcile failed before it changed anything (an invalid or
    # empty source, a held lock): the kernel may match the last apply, and
    # the failure is still the news
    newest = next(iter(status.get("history") or ()), None)
    if newest and newest.get("result") == "failed" and status["sync"]["state"] != "failed":
        status["sync"]["last_failed"] = {
            key: newest.get(key, "") for key in ("started", "trigger", "error")
        }
    if desired is not None and status.get("untracked_drops"):
        refs = host_counters.rule_refs(desired.objects)
        status["untracked_drops"] = host_counters.name_rules(status["untracked_drops"], refs)
    from reconciler.cli.logs import finish

    finish()
    if args.json:
        emit_json({"kind": "reconcile.status", "format_version": STATUS_FORMAT_VERSION, **status})
    else:
        sys.stdout.write(render_status(status) + render_history(status))
        sys.stdout.write(render_sync(status["sync"]))
    state = status["sync"]["state"]
    if state in ("failed", "unknown") or status["sync"].get("last_failed"):
        return EXIT_ERROR
    return EXIT_CHANGES if state in ("drifted", "out of sync", "shadowed", "blocked") else EXIT_OK


STATUS_FORMAT_VERSION = 2  # docs/status.md


def _sync(
    args: argparse.Namespace, target: Any, record: dict[str, Any] | None
) -> tuple[dict[str, Any], Any]:
    """Plan again from the source the last apply recorded: `state` is one of
    never applied, failed, in sync, drifted (same source, the kernel moved),
    out of sync (the source moved since), blocked (no changes can be made,
    but objects not ours hold the place of ours: `blocked` names them,
    engine.foreign_place), shadowed (no changes, but a tc filter not ours
    can run before ours: reconcile.foreign_ahead), unknown (the source cannot
    be read).
    With it, the desired state that plan compiled (None when there was none)."""
    from reconciler.config.source import SourceError
    from reconciler.engine.foreign_place import held_by_foreign
    from reconciler.engine.reconcile import InvalidConfig, ReconcileError, foreign_ahead, make_plan

    if record is None:
        return {"state": "never applied", "changes": 0, "warnings": []}, None
    if record.get("error") or record.get("converged") is False:
        reason = record.get("error") or "not converged after apply"
        return {"state": "failed", "reason": reason, "changes": 0, "warnings": []}, None
    spec = (record.get("source") or {}).get("spec")
    if not spec:
        return {"state": "unknown", "reason": "the record names no source", "changes": 0,
                "warnings": []}, None  # fmt: skip
    caches = _caches()
    try:
        plan, desired, observed = make_plan(
            lambda: open_source(spec, True, sources=caches.sources),
            target,
            False,
            keep_derived=False,
            allow_empty=True,  # what a re-apply of the applied source would do, empty or not
            caches=caches,
        )
    except (SourceError, InvalidConfig, ReconcileError) as exc:
        return {"state": "unknown", "reason": str(exc), "changes": 0, "warnings": []}, None
    from reconciler.plan.diff import summarize

    ahead = foreign_ahead(desired, observed)  # in the plan's warnings too
    held = held_by_foreign(plan)
    if plan.empty and held:
        state = "blocked"  # what can be applied is there; ours cannot go where these sit
    elif plan.empty and ahead:
        state = "shadowed"  # what we applied is there, but another filter decides first
    elif plan.empty:
        state = "in sync"
    elif plan.source.get("identity") == record["source"].get("identity"):
        state = "drifted"
    else:
        state = "out of sync"
    found = {
        "state": state,
        "changes": len(plan.changes),
        "summary": summarize(plan.changes),
        "warnings": list(plan.warnings),
    }
    return ({**found, "blocked": list(held)} if held else found), desired


def render_sync(sync: dict[str, Any]) -> str:
    lines = [f"Warning: {w}" for w in sync.get("warnings", ())]
    state = sync["state"]
    if state == "in sync":
        lines.append("In sync: the kernel matches the source of the last apply.")
    elif state == "blocked":
        lines.append("Not in sync: the kernel holds what can be applied, but objects not ours "
                     "hold the place of ours, so this node does not enforce all of its policy: "
                     f"{'; '.join(sync.get('blocked', ()))} (the warnings above say what each "
                     "costs and how to remove it).")  # fmt: skip
    elif state == "shadowed":
        lines.append("Not in sync: the kernel holds what the last apply made, but a tc filter "
                     "that is not ours can run before ours (the warning above names it and what "
                     "to do) and decide packets before our policy sees them.")  # fmt: skip
    elif state == "drifted":
        # the source is the same; the kernel, or the node (a pod's interface
        # gone), moved: the changes are what that source gives here now
        lines.append(f"Drifted: the kernel differs from what the last applied source gives on "
                     f"this node now, by {sync['changes']} change(s) (reconcile --plan shows "
                     "them).")  # fmt: skip
    elif state == "out of sync":
        lines.append(f"Out of sync: the source changed since the last apply; "
                     f"{sync['changes']} change(s) pending (reconcile --plan).")  # fmt: skip
    elif state == "failed":
        lines.append(f"Last reconcile failed: {sync['reason']}")
    elif state == "unknown":
        lines.append(f"Sync unknown: {sync['reason']}")
    failed = sync.get("last_failed")
    if failed:
        from reconciler.cli.status_history import first_words

        error = first_words(str(failed.get("error") or "")) or "(no reason recorded)"
        lines.append(f"Last reconcile failed ({failed.get('trigger')}, {failed.get('started')}), "
                     f"nothing changed by it: {error}")  # fmt: skip
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def watch_mode(args: argparse.Namespace) -> int:
    """Level-triggered loop: any event (file change, new commit, timer) means 'look again'."""
    from reconciler.cli.watch_cmd import watch_cmd

    return watch_cmd(args)


def explain_mode(args: argparse.Namespace) -> int:
    """--explain --from SRC --to DST:PORT/PROTO [--kernel]: the deciding rules."""
    from reconciler.compile.policy_model import PolicyError
    from reconciler.config.validate import validate_source
    from reconciler.engine import explain

    src = open_source(source_spec(args), not args.no_cache, sources=SourceCache())
    result = validate_source(src, _cache_dir(args), args.jobs or None)
    if not result.ok:
        sys.stderr.write(
            output.render_diagnostics(sorted(result.diagnostics, key=lambda d: (d.file, d.line)))
        )
        return EXIT_ERROR
    root = args.bpffs_root.rstrip("/") if args.kernel else None
    try:
        answer = explain.explain_flow(
            result.resources, args.node, args.src, args.dst, root, args.netns
        )
    except (explain.ExplainError, PolicyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # the namespace whose routes were asked for
        print(f"error: --netns: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(answer.text)
    return EXIT_CHANGES if answer.disagrees else EXIT_OK
