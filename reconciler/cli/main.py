"""`reconcile`: the command-line entry point. One function per mode."""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import NoReturn

from reconciler.cli import commands as modes
from reconciler.cli.exit_codes import EXIT_BUG, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from reconciler.cli.gitops_options import add_gitops_options, positive_seconds
from reconciler.config.source import SourceError

DEFAULT_ROOT = "/sys/fs/bpf/calico-reconciler"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1: 2 means "changes present"."""

    def error(self, message: str) -> NoReturn:
        # the message and where help is; the whole usage (every option of
        # every mode) would bury it
        where = "" if f"(see {self.prog} " in message else f"(see {self.prog} --help)\n"
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n{where}")


def unknown_option(p: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The first option in `argv` the parser does not know, with the known
    one it most resembles: argparse, missing a mode, would report only that
    no mode was given (`--plna`)."""
    import difflib

    known = list(p._option_string_actions)
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if name.startswith("--") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            return f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else "")
    return None


def _count(text: str) -> int:
    """A whole number, 0 or more (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    """Every option, in groups. Which modes take which option is
    reconciler.cli.options.OPTION_MODES."""
    from reconciler.version import version

    p = Parser(
        prog="reconcile",
        description="Converge this node's Calico-style eBPF dataplane to a Git-tracked config.",
        epilog="Help for one mode, with examples: reconcile --plan --help (or --validate, ...).\n"
        "Exit codes: 0 ok or no changes, 1 error (also usage), 2 changes present or drift, "
        "70 internal error, 130 interrupted.",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"reconcile {version()}")
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
    why.add_argument(
        "--to", dest="dst", metavar="DST:PORT/PROTO",
        help="e.g. web-0:8080/tcp, or a service: 10.96.0.10:53/udp; for ICMP the type in "
        "place of the port (web-0:8/icmp: an echo request, what ping sends)",
    )  # fmt: skip
    why.add_argument("--kernel", action="store_true", help="also ask the loaded program")

    src = p.add_argument_group("source")
    src.add_argument("--config", metavar="DIR", default=".", help="config working tree (default .)")
    src.add_argument("--repo", metavar="PATH_OR_URL", help="read a commit from this Git repository")
    src.add_argument(
        "--ref", default="HEAD", help="commit, branch or tag with --repo (default HEAD)"
    )
    src.add_argument(
        "--skip-kinds",
        metavar="KIND,...",
        default="",
        help="kinds to pass over silently (adds to .reconcile.yaml's skipKinds)",
    )
    src.add_argument(
        "--ignore-paths",
        metavar="GLOB,...",
        default="",
        help="files to leave unread, as globs relative to the config root (adds to ignorePaths)",
    )
    src.add_argument(
        "--strict-kinds",
        action="store_true",
        help="a kind we have no schema for is an error, not a warning",
    )
    src.add_argument("--no-cache", action="store_true", help="do not use the validation cache")

    val = p.add_argument_group("--validate")
    val.add_argument(
        "--format",
        choices=("text", "json", "junit", "sarif", "github"),
        help="output format (default text; --json is --format json)",
    )
    val.add_argument(
        "--jobs", type=_count, default=0, help="validation processes (default 0: all cores)"
    )
    val.add_argument(
        "paths", nargs="*", metavar="PATH", help="files and directories to validate (-: stdin)"
    )

    node = p.add_argument_group("node")
    node.add_argument(
        "--node",
        help="this node's name (default: $NODENAME, then Calico's nodename file, then the "
        "hostname)",
    )
    node.add_argument(
        "--bpffs-root", default=DEFAULT_ROOT, help=f"our pins (default {DEFAULT_ROOT})"
    )
    node.add_argument(
        "--cgroup",
        metavar="DIR",
        help="cgroup v2 for connect-time load balancing (default: the cgroup2 mount)",
    )
    node.add_argument(
        "--state-dir",
        metavar="DIR",
        help="the last apply's record, the history and the watcher's state (default: "
        "/var/lib/calico-reconciler/<hash of --bpffs-root>)",
    )
    node.add_argument(
        "--netns", metavar="NAME", help="operate on this named network namespace (it must exist)"
    )

    chg = p.add_argument_group("--plan, --apply, --watch (--allow-empty: --validate too)")
    chg.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a source with no resources, or a plan that removes everything we own",
    )
    chg.add_argument(
        "--detail", action="store_true", help="list every map entry (default: a summary per map)"
    )
    chg.add_argument("--out", metavar="FILE", help="--plan: save the plan")
    chg.add_argument("--plan-file", metavar="FILE", help="--apply: apply exactly this plan")
    chg.add_argument(
        "--interval", type=positive_seconds, default=30.0, help="--watch drift check seconds"
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output (each document's kind and format_version: "
        "docs/json-output.md in the source)",
    )
    out.add_argument("--no-color", action="store_true", help="no colour even on a terminal")
    out.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log detail (-v info, -vv debug)"
    )
    out.add_argument(
        "--log-level",
        choices=("error", "warning", "info", "debug"),
        help="log level on stderr (default warning)",
    )
    add_gitops_options(p, mode)
    return p


def entry() -> None:
    """The `reconcile` command: main(), then out without tearing the
    interpreter down: freeing the small objects of a 10,000-service state one
    by one is a large part of bench/nat_bench.py's one-change apply and warm
    no-op plan. Exit handlers still run and output is flushed."""
    code = main(exiting=True)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (| head): nothing more can be said
        code = code or EXIT_ERROR
    atexit._run_exitfuncs()
    os._exit(code)


def main(argv: Sequence[str] | None = None, exiting: bool = False) -> int:
    """`exiting`: the process ends right after (entry), so the collector
    is left off: turned back on, its first pass would walk every object the
    run made (at 10,000 services, ~140,000 for a one-change apply). Such a
    process runs nothing else, so it may fork to read a big tree ahead
    (commands.start_read_ahead); embedding callers (tests) are not forked."""
    from reconciler.cli import options

    argv = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    asked = [m for m in options.MODES if options.flag(m) in argv]
    if len(asked) == 1 and ("-h" in argv or "--help" in argv):
        options.mode_parser(p, asked[0]).print_help()
        return EXIT_OK
    unknown = unknown_option(p, argv)
    if unknown:
        p.error(unknown)
    # Options and paths in any order: `--validate --no-cache DIR` as well as `DIR --validate`.
    args = p.parse_intermixed_args(argv)
    mode = next(m for m in options.MODES if getattr(args, m, False))
    if args.paths and not args.validate:
        p.error("PATH arguments are only taken by --validate (use --config DIR or --repo)")
    written = options.given(p, argv)
    # an option the mode does not take at all first: a conflict between
    # sources is only worth explaining among options the mode takes
    wrong = options.misplaced(mode, written)
    if wrong:
        chosen = options.flag(mode)
        p.error(f"{chosen} does not take {', '.join(wrong)} (see reconcile {chosen} --help)")
    source_error = options.source_conflict(mode, written, bool(args.paths))
    if source_error:
        p.error(source_error)
    if "json" in written and "format" in written:
        p.error("--json and --format are two output formats: give one (--json is --format json)")
    if mode == "explain" and not (args.src and args.dst):
        p.error("--explain needs --from SRC and --to DST:PORT/PROTO (e.g. --to web-0:8080/tcp)")
    # Before the engine is imported, while this process is single-threaded:
    # a big working tree is read by a child in the meantime.
    args.sources = modes.start_read_ahead(args) if exiting else None
    from reconciler.cli import logs
    from reconciler.cli.nodename import resolve_node

    logs.setup(args)
    if mode != "validate":
        args.node, args.node_source = resolve_node(args.node)
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
        if collecting and not exiting:  # callers embedding main() (tests) keep theirs
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    from reconciler.cli import logs
    try:
        try:
            return _dispatch(args)
        finally:
            logs.finish()  # the progress line goes before anything else is said
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be said, and what
        # is still buffered must not fail again at exit.
        with suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except PermissionError as exc:
        from reconciler.cli.options import MODES, flag

        chosen = next((m for m in MODES if getattr(args, m, False)), "plan")
        with_kernel = " --kernel" if chosen == "explain" else ""
        print(
            f"error: {exc.strerror or exc}; {flag(chosen)}{with_kernel} reads the kernel's BPF "
            "and network state and needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); "
            "--validate, --explain without --kernel and --plan --observed do not",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        # The engine loads only for the modes that use it: --validate stays
        # light (bench/validate_bench.py's warm re-validation).
        from reconciler.engine.reconcile import ReconcileError
        from reconciler.engine.spec import BpffsError, CgroupError, NetnsError, UnsafeRoot
        from reconciler.plan.plan import PlanFileError

        if isinstance(exc, PlanFileError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, BpffsError):
            print(
                f"error: {exc.strerror}: {os.strerror(exc.errno or 0)}; run as root, or mount "
                "it first (mount -t bpf bpf /sys/fs/bpf); nothing was changed",
                file=sys.stderr,
            )
            return EXIT_ERROR
        if isinstance(exc, ReconcileError | UnsafeRoot | CgroupError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, NetnsError):
            print(f"error: --netns: {exc.strerror}; nothing was changed", file=sys.stderr)
            return EXIT_ERROR
        import traceback  # a bug: the only path that needs it

        traceback.print_exc()
        print(f"internal error (a bug, please report it): {exc}", file=sys.stderr)
        return EXIT_BUG


def _dispatch(args: argparse.Namespace) -> int:
    if args.validate:
        return modes.validate_mode(args)
    if args.install_hooks:  # writes into a Git repository: no kernel, no root needed
        from reconciler.cli.hooks_cmd import install_hooks_cmd

        return install_hooks_cmd(args)
    if args.plan and args.out is not None:  # before a plan is made that could not be kept
        from reconciler.plan.plan import save_problem

        problem = save_problem(args.out)
        if problem:
            shown = args.out or "''"
            print(f"error: --out {shown}: {problem}; nothing was planned", file=sys.stderr)
            return EXIT_ERROR
    if args.plan and args.observed:  # against a snapshot: no kernel, no root needed
        from reconciler.cli.snapshot_cmd import plan_observed_cmd

        return plan_observed_cmd(args)
    if args.explain and not args.kernel:  # the compiled state alone: no root needed
        return modes.explain_mode(args)
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
