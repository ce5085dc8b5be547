"""The CLI modes: validate, plan, apply, status, watch."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from reconciler import render
from reconciler.cli import EXIT_CHANGES, EXIT_ERROR, EXIT_OK, emit_json, open_source, source_spec
from reconciler.plan import FORMAT_VERSION, Plan


def _cache_dir(args: argparse.Namespace) -> Path | None:
    from reconciler.source import default_cache_dir

    return None if args.no_cache else default_cache_dir()


def validate_mode(args: argparse.Namespace) -> int:
    from reconciler.validate import validate_source

    spec = {"kind": "dir", "paths": args.validate} if args.validate else source_spec(args)
    src = open_source(spec, not args.no_cache)
    result = validate_source(src, _cache_dir(args), args.jobs or None, with_resources=False)
    fmt = args.format or ("json" if args.json else "text")
    diags = sorted(result.diagnostics, key=lambda d: (d.file, d.line, d.path))
    if fmt == "json":
        emit_json(
            {
                "format_version": FORMAT_VERSION,
                "valid": result.ok,
                "files": result.files,
                "resources": result.resource_count,
                "diagnostics": [d.as_json() for d in diags],
            }
        )
    elif fmt == "junit":
        sys.stdout.write(render.render_junit(list(diags), result.files))
    else:
        sys.stdout.write(render.render_diagnostics(diags))
        status = "valid" if result.ok else f"invalid: {len(result.errors)} error(s)"
        print(
            f"{result.files} file(s), {result.resource_count} resource(s): {status}",
            file=sys.stderr,
        )
    return EXIT_OK if result.ok else EXIT_ERROR


def _target(args: argparse.Namespace) -> Any:
    from reconciler.cgroups import cgroup2_mount
    from reconciler.pipeline import Target, default_state_dir

    root = args.bpffs_root.rstrip("/")
    state = Path(args.state_dir) if args.state_dir else default_state_dir(root)
    cgroup = args.cgroup or cgroup2_mount()
    return Target(args.node, root, state, args.netns, _cache_dir(args), cgroup)


def _plan_or_report(
    args: argparse.Namespace,
    spec: dict[str, Any],
    fingerprint: bool = True,
    changed: frozenset[str] | None = None,
    keep_derived: bool = True,
) -> tuple[Plan, Any, Any] | None:
    """(plan, desired state, what was observed), or None after reporting an
    invalid config."""
    from reconciler.pipeline import InvalidConfig, make_plan

    target = _target(args)
    try:
        plan, desired, observed = make_plan(
            lambda: open_source(spec, not args.no_cache, changed), target, fingerprint, keep_derived
        )
    except InvalidConfig as exc:
        diags = sorted(exc.validation.diagnostics, key=lambda d: (d.file, d.line, d.path))
        if args.json:
            emit_json(
                {
                    "format_version": FORMAT_VERSION,
                    "valid": False,
                    "diagnostics": [d.as_json() for d in diags],
                }
            )
        else:
            sys.stderr.write(render.render_diagnostics(diags))
            print(f"error: {exc}; nothing was changed", file=sys.stderr)
        return None
    # The saved plan records how to re-read its source, for the staleness check.
    return dataclasses.replace(plan, source={**plan.source, "spec": spec}), desired, observed


def plan_mode(args: argparse.Namespace) -> int:
    # The observed-state fingerprint is only needed to save or print the plan.
    # A plan's incremental state is not stored: the apply derives it again
    # from the applied state for less than writing it would cost.
    planned = _plan_or_report(
        args, source_spec(args), bool(args.out or args.json), keep_derived=False
    )
    if planned is None:
        return EXIT_ERROR
    plan, _, _ = planned
    if args.out:
        plan.dump(args.out)
    if args.json:
        emit_json(plan.as_json())
    else:
        sys.stdout.write(render.render_plan(plan))
        if args.out:
            print(
                f"\nSaved the plan to {args.out}. Apply it with: reconcile --apply "
                f"--plan-file {args.out}"
            )
    return EXIT_OK if plan.empty else EXIT_CHANGES


def apply_mode(args: argparse.Namespace, changed: frozenset[str] | None = None) -> int:
    """Plan, apply, verify. `changed` (from --watch): the only files that may
    differ from the last pass; the drift timer's passes read everything."""
    from reconciler.lock import LockHeld, apply_lock
    from reconciler.pipeline import (
        ReconcileError,
        applied_dumps,
        check_fresh,
        check_same_changes,
        desired_state,
        execute,
        record_applied,
        udp_balanced_at_connect,
        verify,
    )  # fmt: skip

    target = _target(args)
    try:
        with apply_lock(target.bpffs_root, target.netns):
            if args.plan_file:
                plan = Plan.read(args.plan_file)
                spec = plan.source.get("spec") or source_spec(args)
                src = open_source(dict(spec), not args.no_cache)
                links, slots, now = check_fresh(plan, src, target)
                desired = desired_state(src, target, links, slots=slots)
                check_same_changes(plan, desired, now)
                observed = None
            else:
                planned = _plan_or_report(args, source_spec(args), False, changed)
                if planned is None:
                    return EXIT_ERROR
                plan, desired, observed = planned
            # --watch passes that find nothing to do stay quiet
            quiet = args.json or (args.watch and plan.empty and not plan.warnings)
            if not quiet:
                sys.stdout.write(render.render_plan(plan))
            backends = desired.tables.get("rcl_nat_be")
            udp = udp_balanced_at_connect(plan, desired)
            results = execute(plan, target, backends, udp) if not plan.empty else []
            # Re-observe and compare with the very state we meant to reach. The
            # NAT tables the plan read, with the keys apply wrote, let the next
            # plan recognise them: verify need not read them again.
            remaining, digests = verify(desired, target, plan, digests=observed is None)
            record_applied(plan, target, len(results))
            if not remaining:
                from reconciler import desired_cache

                dumps = applied_dumps(plan, observed) if observed is not None else {}
                desired_cache.note_applied(
                    desired, digests, {t: d for t, d in dumps.items() if t not in digests}
                )
    except LockHeld as exc:
        raise ReconcileError(str(exc)) from None
    if args.json:
        emit_json(
            {
                "format_version": FORMAT_VERSION,
                "plan": plan.as_json(),
                "results": [{"address": a, "result": r} for a, r in results],
                "converged": not remaining,
                "remaining": [c.as_json() for c in remaining],
            }
        )
    elif results:
        from reconciler.diff import summarize

        s = summarize(plan.changes)
        print(
            f"\nApply complete! Resources: {s['add']} added, {s['change']} changed, "
            f"{s['destroy']} destroyed."
        )
    if remaining:
        sys.stderr.write("error: not converged after apply; still different:\n")
        sys.stderr.write("".join(render.change_line(c) + "\n" for c in remaining))
        return EXIT_ERROR
    if not quiet:
        print("Verified: the kernel matches the configuration.")
    return EXIT_OK


def status_mode(args: argparse.Namespace) -> int:
    from reconciler.status import collect_status, render_status

    status = collect_status(_target(args))
    if args.json:
        emit_json({"format_version": FORMAT_VERSION, **status})
    else:
        sys.stdout.write(render_status(status))
    return EXIT_OK


def watch_mode(args: argparse.Namespace) -> int:
    """Level-triggered loop: any event (file change, new commit, timer) means 'look again'."""
    from reconciler import desired_cache
    from reconciler.watch import watch

    # A pass reacts to a push; the state it compiled is written once idle.
    desired_cache.defer_writes()
    return watch(
        args, lambda changed: apply_mode(args, changed), time.monotonic, desired_cache.flush
    )
