"""`reconcile`: the command-line entry point. One function per mode."""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import socket
import sys
import traceback
from collections.abc import Sequence

from reconciler.cli import commands as modes
from reconciler.cli.exit_codes import EXIT_BUG, EXIT_ERROR, EXIT_INTERRUPTED
from reconciler.cli.gitops_options import add_gitops_options
from reconciler.config.source import SourceError
from reconciler.plan.plan import PlanFileError

DEFAULT_ROOT = "/sys/fs/bpf/calico-reconciler"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reconcile",
        description="Converge this node's Calico-style eBPF dataplane to a Git-tracked config.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--validate",
        action="store_true",
        help="validate the PATHs (files or directories; default --config); no root needed",
    )
    mode.add_argument("--plan", action="store_true", help="show what apply would change")
    mode.add_argument("--apply", action="store_true", help="converge the kernel, then verify")
    mode.add_argument("--status", action="store_true", help="what is applied now")
    mode.add_argument(
        "--watch", action="store_true", help="apply on config change, new commits and drift"
    )
    mode.add_argument("--explain", action="store_true", help="which policy rule decides a flow")
    why = p.add_argument_group("--explain")
    why.add_argument("--from", dest="src", metavar="SRC", help="an endpoint name or an IP")
    why.add_argument("--to", dest="dst", metavar="DST:PORT/PROTO", help="e.g. web-0:8080/tcp")
    why.add_argument("--kernel", action="store_true", help="also ask the loaded program")
    p.add_argument("--config", metavar="DIR", default=".", help="config working tree (default .)")
    p.add_argument("--repo", metavar="PATH_OR_URL", help="read a commit from this Git repository")
    p.add_argument("--ref", default="HEAD", help="commit, branch or tag with --repo (default HEAD)")
    p.add_argument(
        "--node", default=socket.gethostname(), help="this node's name (default hostname)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--format",
        choices=("text", "json", "junit", "sarif", "github"),
        help="--validate output format",
    )
    p.add_argument(
        "--skip-kinds",
        metavar="KIND,...",
        default="",
        help="kinds to pass over silently (adds to .reconcile.yaml's skipKinds)",
    )
    p.add_argument(
        "--ignore-paths",
        metavar="GLOB,...",
        default="",
        help="files to leave unread, as globs relative to the config root (adds to ignorePaths)",
    )
    p.add_argument(
        "--strict-kinds",
        action="store_true",
        help="--validate: a kind we have no schema for is an error, not a warning",
    )
    p.add_argument("--out", metavar="FILE", help="with --plan: save the plan")
    p.add_argument("--plan-file", metavar="FILE", help="with --apply: apply exactly this plan")
    p.add_argument("--bpffs-root", default=DEFAULT_ROOT, help=f"our pins (default {DEFAULT_ROOT})")
    p.add_argument(
        "--cgroup",
        metavar="DIR",
        help="cgroup v2 for connect-time load balancing (default: the cgroup2 mount)",
    )
    p.add_argument("--state-dir", metavar="DIR", help="lock and last-apply record")
    p.add_argument("--netns", metavar="NAME", help="operate on this named network namespace")
    p.add_argument("--interval", type=float, default=30.0, help="--watch drift check seconds")
    p.add_argument("--no-cache", action="store_true", help="do not use the validation cache")
    p.add_argument("--jobs", type=int, default=0, help="validation processes (default: all cores)")
    add_gitops_options(p, mode)
    p.add_argument("paths", nargs="*", metavar="PATH", help="with --validate: what to validate")
    return p


def entry() -> None:
    """The `reconcile` command: main(), then out without tearing the
    interpreter down: freeing the small objects of a 10,000-service state one
    by one is a large part of bench/nat_bench.py's one-change apply and warm
    no-op plan. Exit handlers still run and output is flushed."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (| head): nothing more can be said
        code = code or EXIT_ERROR
    atexit._run_exitfuncs()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    # Options and paths in any order: `--validate --no-cache DIR` as well as `DIR --validate`.
    args = p.parse_intermixed_args(argv)
    if args.paths and not args.validate:
        p.error("PATH arguments are only taken by --validate (use --config DIR or --repo)")
    # Plans build 100k+ small objects and nothing here makes reference cycles
    # worth chasing; collecting them shows in bench/nat_bench.py's one-change
    # apply and warm no-op plan. A one-shot run frees everything at exit;
    # --watch keeps the collector, run less eagerly.
    collecting = gc.isenabled()
    if args.watch:
        gc.set_threshold(50_000, 20, 20)
    else:
        gc.disable()
    try:
        return _run(args)
    finally:
        if collecting:  # callers embedding main() (tests) keep their collector
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (SourceError, PlanFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except PermissionError as exc:
        print(
            f"error: {exc}; --plan, --apply and --status read and change the kernel's BPF "
            "and network state and need root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); "
            "--validate does not",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        # The engine loads only for the modes that use it: --validate stays
        # light (bench/validate_bench.py's warm re-validation).
        from reconciler.engine.reconcile import ReconcileError
        from reconciler.engine.spec import NetnsError, UnsafeRoot

        if isinstance(exc, ReconcileError | UnsafeRoot):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, NetnsError):
            print(f"error: --netns: {exc.strerror}; nothing was changed", file=sys.stderr)
            return EXIT_ERROR
        traceback.print_exc()
        print(f"internal error (a bug, please report it): {exc}", file=sys.stderr)
        return EXIT_BUG


def _dispatch(args: argparse.Namespace) -> int:
    if args.validate:
        return modes.validate_mode(args)
    if args.install_hooks:  # writes into a Git repository: no kernel, no root needed
        from reconciler.cli.hooks_cmd import install_hooks_cmd

        return install_hooks_cmd(args)
    if args.plan and args.observed:  # against a snapshot: no kernel, no root needed
        from reconciler.cli.snapshot_cmd import plan_observed_cmd

        return plan_observed_cmd(args)
    from reconciler.engine.spec import require_privileges

    # Before anything is read or created: without them the kernel hides our
    # objects (a plan would be bogus) and a bpffs root would be the wrong user's.
    require_privileges()
    if args.snapshot:
        from reconciler.cli.snapshot_cmd import snapshot_cmd

        return snapshot_cmd(args)
    if args.plan:
        return modes.plan_mode(args)
    if args.apply:
        return modes.apply_mode(args)
    if args.status:
        return modes.status_mode(args)
    if args.explain:
        return modes.explain_mode(args)
    return modes.watch_mode(args)


if __name__ == "__main__":  # pragma: no cover
    entry()
