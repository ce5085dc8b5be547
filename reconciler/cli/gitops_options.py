"""The GitOps options: following a repository, the watcher, hooks, signed
commits, status history, snapshots and metrics. One function adds them all."""

from __future__ import annotations

import argparse
import math

DEFAULT_METRICS_ADDR = "127.0.0.1:9464"


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return value


def seconds(text: str) -> float:
    """Seconds, 0 or more (argparse type; 0 turns the thing off)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def positive_seconds(text: str) -> float:
    """Seconds, more than 0 (argparse type): a period that must not spin."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def add_gitops_options(p: argparse.ArgumentParser, mode: argparse._MutuallyExclusiveGroup) -> None:
    mode.add_argument(
        "--install-hooks",
        metavar="BARE_REPO",
        help="install the pre-receive (validate) and post-receive (wake nodes) hooks",
    )
    mode.add_argument(
        "--snapshot",
        action="store_true",
        help="print this node's observed state as JSON (for --plan --observed)",
    )
    g = p.add_argument_group("GitOps")
    g.add_argument(
        "--allow-rewind",
        action="store_true",
        help="--repo: accept a commit that does not contain the applied one (force push, rollback)",
    )
    g.add_argument(
        "--poll-interval",
        type=seconds,
        default=15.0,
        metavar="SECONDS",
        help="--watch --repo: fetch and check the ref this often (0: never; default 15)",
    )
    g.add_argument(
        "--detect-only",
        action="store_true",
        help="--watch: report drift and new commits, never change the kernel",
    )
    g.add_argument(
        "--wake-addr",
        metavar="HOST:PORT",
        help="--watch: listen for the post-receive hook's wake-up (POST /wake)",
    )
    g.add_argument(
        "--node-url",
        action="append",
        default=[],
        metavar="URL",
        help="--install-hooks: a watcher's --wake-addr as http://HOST:PORT (repeatable)",
    )
    g.add_argument(
        "--verify-signatures",
        action="store_true",
        help="refuse commits not signed by a key in --keyring",
    )
    g.add_argument(
        "--keyring",
        metavar="DIR",
        help="--verify-signatures: the trusted keys, a GnuPG home or a directory with an ssh "
        "allowed_signers file",
    )
    g.add_argument(
        "--observed",
        metavar="FILE",
        help="--plan against a --snapshot file instead of the kernel (no root needed)",
    )
    g.add_argument(
        "--metrics-addr",
        nargs="?",
        const=DEFAULT_METRICS_ADDR,
        metavar="HOST:PORT",
        help=f"--watch: serve Prometheus metrics (default {DEFAULT_METRICS_ADDR} when given bare)",
    )
