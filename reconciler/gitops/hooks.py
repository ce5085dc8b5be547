"""Server-side hooks for a config repository, installed by
`reconcile --install-hooks BARE_REPO`:

- pre-receive validates the tree of every pushed ref (and, with a keyring,
  the signature of every new commit) and rejects the whole push, printing
  every diagnostic, when any fails;
- post-receive wakes each node's watcher (`--watch --wake-addr`) with an
  HTTP POST to /wake, so a push converges at once instead of at the next poll.

The hooks are small shell scripts that run this package's hook entry point
(reconciler.cli.hooks_cmd) with the interpreter and package that installed
them. A hook file we did not write is never overwritten.
"""

from __future__ import annotations

import shlex
import sys
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = "# installed by reconcile --install-hooks"
WAKE_TIMEOUT_S = 2.0


class HookError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class HookSet:
    repo: Path
    node_urls: tuple[str, ...] = ()
    keyring: str | None = None  # verify pushed commits' signatures against it

    def scripts(self, python: str, package_parent: str) -> dict[str, str]:
        def script(name: str, *extra: str) -> str:
            command = shlex.join([python, "-m", "reconciler.cli.hooks_cmd", name, *extra])
            return (
                "#!/bin/sh\n"
                f"{MARKER}; run it again to change them.\n"
                f"PYTHONPATH={shlex.quote(package_parent)}${{PYTHONPATH:+:$PYTHONPATH}}\n"
                "export PYTHONPATH\n"
                f"exec {command}\n"
            )

        keyring = ("--keyring", self.keyring) if self.keyring else ()
        urls = [a for url in self.node_urls for a in ("--node-url", url)]
        return {
            "pre-receive": script("pre-receive", *keyring),
            "post-receive": script("post-receive", *urls),
        }


def git_dir(repo: str) -> Path:
    """The repository's git directory: a bare repo itself, or its .git."""
    path = Path(repo)
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    if (path / ".git" / "HEAD").is_file():
        return path / ".git"
    raise HookError(f"{repo}: not a Git repository")


def install(hooks: HookSet, python: str | None = None) -> list[Path]:
    """Write the hooks (executable); returns their paths."""
    import reconciler

    gd = git_dir(str(hooks.repo))
    parent = str(Path(reconciler.__file__).resolve().parents[1])
    written = []
    (gd / "hooks").mkdir(exist_ok=True)
    scripts = hooks.scripts(python or sys.executable, parent)
    for name in scripts:
        path = gd / "hooks" / name
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            raise HookError(
                f"{path} exists and was not installed by reconcile; move it away first "
                "(nothing was changed)"
            )
    for name, text in scripts.items():
        path = gd / "hooks" / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)
        written.append(path)
    return written


def wake(urls: Sequence[str], body: str) -> list[str]:
    """POST the pushed refs to each watcher's /wake; the failures, as messages
    (a node that is down catches up by polling)."""
    failures = []
    for url in urls:
        target = url.rstrip("/") + "/wake"
        request = urllib.request.Request(target, data=body.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WAKE_TIMEOUT_S) as response:
                response.read()
        except OSError as exc:
            failures.append(f"{target}: {exc}")
    return failures
