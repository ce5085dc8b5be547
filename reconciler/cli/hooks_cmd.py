"""`reconcile --install-hooks BARE_REPO`, and what the installed hooks run:

    python -m reconciler.cli.hooks_cmd pre-receive [--keyring DIR] [--allow-empty]
    python -m reconciler.cli.hooks_cmd post-receive [--node-url URL ...]

Both read git's `old new ref` lines on stdin. pre-receive exits 1 (git then
refuses every ref of the push) when any pushed tree is invalid, holds no
configuration file (unless --allow-empty), or any new commit's signature is
refused, after printing every reason."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.cli.exit_codes import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from reconciler.gitops.signatures import Keyring

ZERO = "0" * 40


def _keyring(args: argparse.Namespace) -> str | None:
    """The keyring the hooks verify with (None: no check); SourceError
    when it is missing or holds no key, before anything is written."""
    from reconciler.config.source import SourceError
    from reconciler.gitops.signatures import Keyring

    if not args.verify_signatures:
        return None
    if not args.keyring:
        raise SourceError("--verify-signatures needs --keyring DIR")
    return str(Keyring.at(args.keyring).path)


def install_hooks_cmd(args: argparse.Namespace) -> int:
    from reconciler.config.source import SourceError
    from reconciler.gitops.hooks import HookError, HookSet, dropped, install, installed

    try:
        keyring = _keyring(args)
        hooks = HookSet(Path(args.install_hooks), tuple(args.node_url), keyring, args.allow_empty)
        before = installed(args.install_hooks)
        written = install(hooks)
    except (HookError, SourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for path in written:
        print(f"installed {path}")
    for note in dropped(before, hooks) if before is not None else []:
        print(f"note: {note}")
    if not args.node_url:
        print("note: no --node-url: watchers learn of pushes by polling (--poll-interval)")
    return EXIT_OK


def _pushed(lines: Sequence[str]) -> list[tuple[str, str, str]]:
    return [tuple(line.split()[:3]) for line in lines if len(line.split()) >= 3]  # type: ignore[misc]


def _open_keyring(keyring_dir: str | None) -> Keyring | None:
    from reconciler.gitops.signatures import Keyring

    return Keyring.at(keyring_dir) if keyring_dir else None


def pre_receive(
    lines: Sequence[str], git_dir: str, keyring_dir: str | None, allow_empty: bool = False
) -> int:
    # Only what validation needs is imported: a push waits for this process.
    from reconciler.config.diagnostics import empty_source
    from reconciler.config.repo_config import for_commit
    from reconciler.config.source import SourceError, default_cache_dir, from_git
    from reconciler.config.validate import validate_source

    try:
        keyring = _open_keyring(keyring_dir)
    except SourceError as exc:  # every commit would be refused: say why once
        print(f"error: {exc}", file=sys.stderr)
        print("reconcile: push rejected", file=sys.stderr)
        return EXIT_ERROR
    refused = []
    for old, new, ref in _pushed(lines):
        if new == ZERO:
            continue  # a deleted ref has no tree to check
        print(f"reconcile: validating {ref} at {new[:12]}", file=sys.stderr)
        try:
            # validated as a node reads it: under the commit's .reconcile.yaml
            src = for_commit(from_git(git_dir, new, default_cache_dir()))
            result = validate_source(
                src, default_cache_dir(), with_resources=False, every_node=True
            )
            if keyring is not None:
                from reconciler.gitops.repo import git

                # the commits this push brings: reachable from new, from no existing ref
                since = [] if old == ZERO else [f"^{old}"]
                commits = git(git_dir, "rev-list", new, *since, "--not", "--all").split()
                keyring.verify(git_dir, commits or [new])
        except SourceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            refused.append(ref)
            continue
        diags = sorted(result.diagnostics, key=lambda d: (d.file, d.line, d.path))
        errors = [d for d in diags if d.severity.value == "error"]
        if result.files == 0 and not allow_empty:  # as --validate and every node refuse it
            errors.append(
                empty_source(f"{ref} at {new[:12]}", "install the hooks with --allow-empty")
            )
        if errors:
            from reconciler.cli import render

            sys.stderr.write(render.render_diagnostics(errors))
            print(f"{ref}: {len(errors)} error(s) in the configuration", file=sys.stderr)
            refused.append(ref)
    for ref in refused:
        print(f"reconcile: push to {ref} rejected", file=sys.stderr)
    return EXIT_ERROR if refused else EXIT_OK


def post_receive(lines: Sequence[str], node_urls: Sequence[str]) -> int:
    from reconciler.gitops.hooks import CATCH_UP, wake

    body = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    woke, failures = wake(node_urls, body)
    for failure in failures:
        print(f"reconcile: could not wake {failure}; {CATCH_UP}", file=sys.stderr)
    if node_urls:
        print(f"reconcile: woke {woke} node(s)", file=sys.stderr)
    return EXIT_OK  # a push that git accepted stays accepted


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reconcile-hook")
    p.add_argument("hook", choices=("pre-receive", "post-receive"))
    p.add_argument("--keyring", metavar="DIR")
    p.add_argument("--node-url", action="append", default=[])
    p.add_argument("--allow-empty", action="store_true")
    args = p.parse_args(argv)
    lines = sys.stdin.read().splitlines()
    git_dir = os.environ.get("GIT_DIR", ".")
    if args.hook == "pre-receive":
        return pre_receive(lines, git_dir, args.keyring, args.allow_empty)
    return post_receive(lines, args.node_url)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
