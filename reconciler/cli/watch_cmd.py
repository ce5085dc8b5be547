"""`reconcile --watch`: the watcher (gitops.loop) wired to the terminal.

Text: plans that change something, and a line per pass on stderr. With
--json, one JSON object per pass on stdout (its record, and the plan's
changes)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import sys
from typing import Any

from reconciler.cli import render
from reconciler.cli.exit_codes import EXIT_ERROR
from reconciler.plan.plan import Plan
from reconciler.version import version

log = logging.getLogger(__name__)

# One JSON object per line per pass with --watch --json (docs/json-output.md).
WATCH_KIND = "reconcile.watch.pass"
WATCH_FORMAT_VERSION = 1


def ensure_logging() -> None:
    """Messages to stderr, bare, unless the CLI has set logging up already."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def keyring_of(args: argparse.Namespace) -> Any:
    """The --keyring to verify commits with, or None without --verify-signatures."""
    from reconciler.gitops.signatures import Keyring, SignatureError

    if not getattr(args, "verify_signatures", False):
        return None
    if not args.keyring:
        raise SignatureError("--verify-signatures needs --keyring DIR")
    return Keyring.at(args.keyring)


def git_spec(args: argparse.Namespace, policy: dict[str, Any]) -> dict[str, Any]:
    """--repo for one-shot modes: the ref pinned to a commit; --plan and
    --apply refuse a rewind (and, with --verify-signatures, a commit the
    keyring refuses), --validate checks only signatures."""
    from reconciler.cli.commands import _target
    from reconciler.gitops.repo import pinned_spec

    if getattr(args, "plan_file", None):  # the saved plan names its commit
        return {"kind": "git", "repo": args.repo, "ref": args.ref, "policy": policy}
    checked = args.plan or args.apply
    state_dir = _target(args).state_dir if checked else None
    return pinned_spec(
        args.repo,
        args.ref,
        policy,
        state_dir,
        getattr(args, "allow_rewind", False),
        keyring_of(args),
    )


def explain_invalid(exc: Any) -> str:
    """An invalid configuration as the pusher would see it: every diagnostic."""
    diags = sorted(exc.validation.diagnostics, key=lambda d: (d.file, d.line, d.path))
    return f"{exc}:\n" + render.render_diagnostics(diags).rstrip("\n")


def watch_cmd(args: argparse.Namespace) -> int:
    from reconciler.cli.commands import _target, kind_policy
    from reconciler.engine.caches import Caches
    from reconciler.engine.lock import LockHeld, UnsafeLockDir, watch_lock
    from reconciler.engine.service_health import ServiceHealth
    from reconciler.engine.spec import check_bpffs_root, link_changes
    from reconciler.gitops.loop import Engine, Watcher, WatchOptions
    from reconciler.gitops.repo import Follower

    ensure_logging()  # (PATH arguments were refused by main: only --validate takes them)
    from reconciler.gitops.triggers import split_addr

    # Before anything starts: a listener that cannot bind is a usage error.
    for flag, addr in (("--wake-addr", args.wake_addr), ("--metrics-addr", args.metrics_addr)):
        try:
            if addr:
                split_addr(addr)
        except ValueError as exc:
            print(f"error: {flag} {exc}", file=sys.stderr)
            return EXIT_ERROR
    target = _target(args)  # NetnsError for a --netns that does not exist, before any thread
    follower = Follower.of(args.repo, args.ref, args.allow_rewind) if args.repo else None
    options = WatchOptions(
        interval=float(args.interval),
        poll_interval=float(args.poll_interval),
        detect_only=args.detect_only,
        use_cache=not args.no_cache,
        config=args.config,
        follower=follower,
        keyring=keyring_of(args),
        policy=kind_policy(args),
        wake_addr=args.wake_addr,
    )
    check_bpffs_root(target.bpffs_root)  # UnsafeRoot: before the watcher starts
    # One watcher per node, for its life (released when the process ends).
    held = contextlib.ExitStack()
    try:
        held.enter_context(watch_lock(target.bpffs_root, target.netns))
    except LockHeld as exc:
        print(f"error: {exc}; a node follows one source: stop that watcher first",
              file=sys.stderr)  # fmt: skip
        return EXIT_ERROR
    except UnsafeLockDir as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR

    def on_plan(plan: Plan) -> None:
        if not args.json and not (plan.empty and not plan.warnings):
            sys.stdout.write(render.render_plan(plan))
            sys.stdout.flush()

    from reconciler.gitops.listeners import Listeners
    from reconciler.gitops.metrics import Metrics
    from reconciler.gitops.probes import Probes

    # Served on --metrics-addr, and where FelixConfiguration asks (follow_agent).
    metrics, probes = Metrics(target), Probes(options.interval)
    listeners = Listeners(args.netns, metrics.app(), probes)
    if args.metrics_addr:
        metrics.serve(args.metrics_addr, probes)
        log.info("metrics on http://%s/metrics, probes at /liveness and /readiness",
                 args.metrics_addr)  # fmt: skip

    def report(record: Any, plan: Plan | None) -> None:
        metrics.observe_pass(record)
        probes.observe_pass(
            record.result, record.held or record.source, bool(record.held), record.error
        )
        if watcher.health is not None:
            metrics.observe_health(watcher.health.report())
        if args.json:
            line = {
                "kind": WATCH_KIND,
                "format_version": WATCH_FORMAT_VERSION,
                "version": version(),
                **record.as_json(),
            }
            if plan is not None:
                line["plan"] = [c.as_json() for c in plan.changes]
            sys.stdout.write(json.dumps(line, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
        message = f"pass done in {record.duration_s:.3f}s: {record.result}"
        if record.result == "drift":
            message += f" ({len(record.drift)} object(s) differ: " + ", ".join(record.drift) + ")"
        if record.held:  # (the error itself: the watcher's "pass failed" warning just said it)
            message += f"; the node is held at {record.held}"
        log.info(message)

    # One set of caches for the watcher's life: a pass reacts to a push, and
    # the state it compiled is written once idle.
    caches = Caches(defer_writes=True)
    watcher = Watcher(
        target,
        options,
        Engine(caches, not args.no_cache, on_plan, explain_invalid, args.allow_empty),
        report,
        caches.flush,
        functools.partial(link_changes, args.netns),
        None if args.detect_only else ServiceHealth(args.netns),
        functools.partial(follow_agent, args, metrics=metrics, listeners=listeners),
        metrics.observe_fetch,
    )
    source = f"repo {args.repo} @ {args.ref}" if args.repo else args.config
    what = "reporting drift only" if args.detect_only else "converging"
    log.info(
        "watching %s and the interfaces (%s); drift check every %gs",
        source,
        what,
        options.interval,
    )
    try:
        return watcher.run()
    finally:
        listeners.close()
        held.close()


def follow_agent(
    args: argparse.Namespace, agent: Any, *, metrics: Any, listeners: Any
) -> list[dict[str, Any]]:
    """What FelixConfiguration says of the agent (reconciler.compile.agent),
    once a pass compiled it: the endpoints it serves, the process and
    runtime metrics it exports, and (unless -v or --log-level said) its
    log level. Returns what listens (Listeners.report)."""
    from reconciler.gitops.listeners import wanted

    if agent is not None:
        listeners.sync(wanted(agent, bool(args.metrics_addr)))
        metrics.export_runtime(agent.process_metrics, agent.runtime_metrics)
        if not args.log_level and not args.verbose:
            from reconciler.cli.log_output import set_level

            set_level(logging.getLevelName(agent.log_level))
    return [*listeners.report(), *served_by_options(args)]


def served_by_options(args: argparse.Namespace) -> list[dict[str, Any]]:
    """What the watcher serves because its options say so: bound before its
    first pass (a port that cannot be bound ends it), so listening."""
    served = []
    if args.metrics_addr:
        what = "metrics (/metrics) and probes (/liveness, /readiness), from --metrics-addr"
        served.append({"serves": what, "address": args.metrics_addr, "listening": True})
    if args.wake_addr:
        what = "wake-ups from the post-receive hook (POST /wake), from --wake-addr"
        served.append({"serves": what, "address": args.wake_addr, "listening": True})
    return served
