"""Which options each mode takes, in one table, and the help for each mode.

An option given to a mode it does not apply to is a usage error (exit 1),
never silently ignored. To add an option: add it in main.parser() and one
line here."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

MODES = (
    "validate", "plan", "apply", "status", "watch", "explain", "install_hooks", "snapshot",
)  # fmt: skip
SOURCE = frozenset({"validate", "plan", "apply", "watch", "explain"})
KERNEL = frozenset({"plan", "apply", "status", "watch", "snapshot"})
CHANGING = frozenset({"plan", "apply", "watch"})
ALL = frozenset(MODES)

# option dest -> the modes it applies to
OPTION_MODES: dict[str, frozenset[str]] = {
    "config": SOURCE,
    "repo": SOURCE,
    "ref": SOURCE,
    "skip_kinds": SOURCE,
    "ignore_paths": SOURCE,
    "strict_kinds": SOURCE,
    "no_cache": SOURCE,
    "format": frozenset({"validate"}),
    "jobs": frozenset({"validate", "explain"}),
    "paths": frozenset({"validate"}),
    "node": KERNEL | {"explain"},
    "bpffs_root": KERNEL | {"explain"},
    "cgroup": KERNEL,
    "state_dir": KERNEL,
    "netns": KERNEL | {"explain"},
    "allow_empty": CHANGING | {"validate", "install_hooks"},  # hooks: accept an empty push
    "detail": CHANGING,
    "out": frozenset({"plan"}),
    "plan_file": frozenset({"apply"}),
    "interval": frozenset({"watch"}),
    "src": frozenset({"explain"}),
    "dst": frozenset({"explain"}),
    "kernel": frozenset({"explain"}),
    "allow_rewind": frozenset({"plan", "apply", "watch"}),
    "poll_interval": frozenset({"watch"}),
    "detect_only": frozenset({"watch"}),
    "wake_addr": frozenset({"watch"}),
    "metrics_addr": frozenset({"watch"}),
    "node_url": frozenset({"install_hooks"}),
    "verify_signatures": SOURCE | {"install_hooks"},
    "keyring": SOURCE | {"install_hooks"},
    "observed": frozenset({"plan"}),
    "json": ALL - {"explain", "install_hooks"},  # they print text only
    "no_color": ALL,
    "log_level": ALL,
    "verbose": ALL,
}

def flag(mode: str) -> str:
    """A mode's option as written: install_hooks -> --install-hooks."""
    return "--" + mode.replace("_", "-")


MODE_HELP: Mapping[str, tuple[str, str]] = {
    "validate": (
        "Check the configuration: JSON Schema and Calico's semantic rules. No root, no "
        "kernel. Exit 0 valid, 1 invalid.",
        "  reconcile --validate examples/cluster-config\n"
        "  reconcile --validate --format github .        # annotations in GitHub Actions\n"
        "  reconcile --validate --repo . --ref origin/main\n"
        "  kustomize build overlays/prod | reconcile --validate -   # standard input",
    ),
    "plan": (
        "Show what --apply would change on this node. Exit 0 no changes, 2 changes, 1 error.",
        "  reconcile --plan --config /etc/calico-config\n"
        "  reconcile --plan --repo https://git.example/cfg.git --ref main --out plan.json\n"
        "  reconcile --plan --detail                     # every map entry, not a summary",
    ),
    "apply": (
        "Converge the kernel to the configuration, then verify. Exit 0 converged, 1 error.",
        "  reconcile --apply --config /etc/calico-config\n"
        "  reconcile --apply --plan-file plan.json       # exactly the saved plan\n"
        "  reconcile --apply --allow-empty --config empty/  # really remove everything",
    ),
    "status": (
        "What is applied now. Exit 0 in sync, 2 the kernel differs from the configuration, "
        "1 the last reconcile failed.",
        "  reconcile --status\n  reconcile --status --json",
    ),
    "explain": (
        "Which tier, policy and rule decide a flow for each local endpoint it crosses. Exit 0, "
        "or 2 when --kernel finds the loaded programs deciding otherwise.",
        "  reconcile --explain --from frontend-0 --to 10.65.0.20:8080/tcp\n"
        "  reconcile --explain --from 10.0.0.9 --to web-0:80/tcp --kernel",
    ),
    "watch": (
        "Apply on every config change, new commit, interface event and drift check.",
        "  reconcile --watch --config /etc/calico-config\n"
        "  reconcile --watch --repo https://git.example/cfg.git --ref main --interval 60",
    ),
    "install_hooks": (
        "Install pre-receive (validate every pushed ref, reject the push with every "
        "diagnostic; a tree with no configuration file only with --allow-empty) and "
        "post-receive (wake the nodes' watchers) into a bare repository. Run again to change "
        "them: a note names each check or node the new ones drop.",
        "  reconcile --install-hooks /srv/git/cluster-config.git --node-url http://node-1:9465",
    ),
    "snapshot": (
        "This node's observed state as JSON, for --plan --observed anywhere (no root there).",
        "  reconcile --snapshot > node-1.json\n"
        "  reconcile --plan --observed node-1.json --repo . --ref HEAD",
    ),
}


def given(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, str]:
    """The options written on the command line (dest -> how it was written).
    Run after a successful parse: every token is known to be valid. Needs
    allow_abbrev=False (every option is written in full)."""
    by_string = parser._option_string_actions
    out: dict[str, str] = {}
    for token in argv:
        if token == "--":
            break
        name = token.split("=", 1)[0]
        if not name.startswith("--") and name.startswith("-") and len(name) > 2:
            name = name[:2]  # -vv
        action = by_string.get(name)
        if action is not None:
            out.setdefault(action.dest, name)
    return out


# what a saved plan records of its source (reconciler.engine.reconcile: its spec)
PLAN_SOURCE_OPTIONS = ("config", "repo", "ref", "skip_kinds", "ignore_paths", "strict_kinds")


def source_conflict(mode: str, written: Mapping[str, str], paths: bool) -> str | None:
    """Why the source options written contradict each other, or None: a
    working tree (--config, PATHs) and a repository (--repo) are two
    sources, and --ref or a signature check mean nothing without a
    repository. --install-hooks checks the commits pushed to it."""
    return _two_sources(mode, written, paths) or _keyring_alone(mode, written)


def _keyring_alone(mode: str, written: Mapping[str, str]) -> str | None:
    """--keyring without --verify-signatures would be ignored: nothing is checked."""
    if "keyring" not in written or "verify_signatures" in written:
        return None
    if mode not in OPTION_MODES["keyring"]:
        return None  # misplaced: the mode does not take it at all
    return f"{written['keyring']} needs --verify-signatures (without it nothing is checked)"


def _two_sources(mode: str, written: Mapping[str, str], paths: bool) -> str | None:
    if mode not in SOURCE:
        return None
    if "plan_file" in written:
        ignored = [written[d] for d in PLAN_SOURCE_OPTIONS if d in written]
        if ignored or paths:
            return (f"--plan-file applies the source its plan was made from: "
                    f"{', '.join(ignored) or 'PATHs'} would be ignored")  # fmt: skip
        return None
    if "repo" in written:
        if "config" in written:
            return "--config and --repo are two sources: give one"
        if paths:
            return "PATH arguments are a working tree and --repo a commit: give one"
        return None
    for dest in ("ref", "verify_signatures", "keyring"):
        if dest in written:
            return f"{written[dest]} needs --repo (it reads commits, not a working tree)"
    return None


def misplaced(mode: str, written: Mapping[str, str]) -> list[str]:
    """The options written that `mode` does not take, as written."""
    return sorted(
        spelling
        for dest, spelling in written.items()
        if dest in OPTION_MODES and mode not in OPTION_MODES[dest]
    )


def mode_parser(full: argparse.ArgumentParser, mode: str) -> argparse.ArgumentParser:
    """A parser whose help shows only what `mode` takes, with examples."""
    description, examples = MODE_HELP[mode]
    # the mode's own value, as in --install-hooks BARE_REPO
    value = next((a.metavar for a in full._actions if a.dest == mode and a.metavar), None)
    p = argparse.ArgumentParser(
        prog=f"{full.prog} {flag(mode)}" + (f" {value}" if value else ""),
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    for action in full._actions:
        if mode in OPTION_MODES.get(action.dest, frozenset()):
            p._add_action(action)
    return p
