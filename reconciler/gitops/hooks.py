"""Server-side hooks for a config repository, installed by
`reconcile --install-hooks BARE_REPO`:

- pre-receive validates the tree of every pushed ref (and, with a keyring,
  the signature of every new commit) and rejects the whole push, printing
  every diagnostic, when any fails;
- post-receive wakes each node's watcher (`--watch --wake-addr`) with an
  HTTP POST to /wake, so a push converges at once instead of at the next poll.

pre-receive is a small shell script that runs this package's hook entry
point (reconciler.cli.hooks_cmd) with the interpreter and package that
installed it. post-receive is shell alone: the pusher waits for it, so it
POSTs with curl and starts Python (the same entry point) only where curl is
missing. A hook file we did not write is never overwritten.

They go where git runs the repository's hooks: its `hooks` directory, or
the one its own `core.hooksPath` names (relative to the repository, where
git runs a bare repository's hooks). A `core.hooksPath` from git's global
or system configuration is refused: it serves every repository of the
server, not only this one.
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
# What a node not woken does: the hook cannot know whether it polls.
CATCH_UP = (
    "a watcher that polls the repository takes the push at its next poll; one that does not "
    "(--poll-interval 0) waits for the next push it is woken for"
)


class HookError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class HookSet:
    repo: Path
    node_urls: tuple[str, ...] = ()
    keyring: str | None = None  # verify pushed commits' signatures against it
    allow_empty: bool = False  # accept a pushed tree with no configuration file

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
        empty = ("--allow-empty",) if self.allow_empty else ()
        urls = [a for url in self.node_urls for a in ("--node-url", url)]
        return {
            "pre-receive": script("pre-receive", *keyring, *empty),
            "post-receive": post_receive_script(self.node_urls, script("post-receive", *urls)),
        }


def wake_urls(node_urls: Sequence[str]) -> list[str]:
    """Each node's /wake, once (a URL given twice wakes its node once)."""
    return list(dict.fromkeys(url.rstrip("/") + "/wake" for url in node_urls))


def post_receive_script(node_urls: Sequence[str], python_hook: str) -> str:
    """post-receive: POST git's `old new ref` lines to every URL's /wake with
    curl, all at once (the pusher waits at most one timeout, however many
    nodes hang), reporting as `wake` does; without curl, the Python hook
    (`python_hook`, a whole script) runs instead."""
    if not node_urls:
        return f"#!/bin/sh\n{MARKER}; run it again to change them.\nexit 0  # no --node-url\n"
    fallback = python_hook.split("\n", 2)[2]  # its lines after the shebang and marker
    urls = " ".join(shlex.quote(url) for url in wake_urls(node_urls))
    return f"""#!/bin/sh
{MARKER}; run it again to change them.
if ! command -v curl >/dev/null 2>&1; then
{fallback}fi
lines=$(cat)
answers=$(
    for url in {urls}; do
        (
            code=$(printf '%s\\n' "$lines" | curl -s -o /dev/null -w '%{{http_code}}' \\
                -m {WAKE_TIMEOUT_S:g} -X POST -H 'Content-Type: text/plain' \\
                --data-binary @- "$url")
            echo "$code $url"
        ) &
    done
    wait
)
woke=0
while read -r code url; do
    case $code in
        2??) woke=$((woke + 1)) ;;
        000) echo "reconcile: could not wake $url: no answer; {CATCH_UP}" >&2 ;;
        *) echo "reconcile: could not wake $url: HTTP $code; {CATCH_UP}" >&2 ;;
    esac
done <<ANSWERS
$answers
ANSWERS
echo "reconcile: woke $woke node(s)" >&2
exit 0
"""


def git_dir(repo: str) -> Path:
    """The repository's git directory: a bare repo itself, or its .git."""
    path = Path(repo)
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    if (path / ".git" / "HEAD").is_file():
        return path / ".git"
    raise HookError(f"{repo}: not a Git repository")


def hooks_dir(repo: str) -> Path:
    """Where git runs `repo`'s hooks (a bare repository's): HookError when
    that is a directory git's global or system configuration names for
    every repository."""
    import subprocess

    gd = git_dir(repo)

    def ask(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(gd), *args], capture_output=True, text=True,
                              check=False)  # fmt: skip
        return done.stdout.strip() if done.returncode == 0 else ""

    where = Path(ask("rev-parse", "--git-path", "hooks") or "hooks")
    where = where if where.is_absolute() else gd / where
    scope, _, origin = ask("config", "--show-scope", "--show-origin", "--get",
                           "core.hooksPath").partition("\t")  # fmt: skip
    if scope and scope not in ("local", "worktree"):
        origin = origin.partition("\t")[0].removeprefix("file:")
        raise HookError(
            f"{repo}: git runs its hooks from {where}, which core.hooksPath in git's {scope} "
            f"configuration ({origin}) names for every repository; hooks installed there would "
            f"run for all of them. Set core.hooksPath in {repo}'s own configuration "
            f"(git -C {shlex.quote(repo)} config core.hooksPath hooks) or install the hooks "
            "there by hand; nothing was changed"
        )
    return where


def require_bare(repo: str) -> None:
    """HookError unless `repo` is a bare repository: a push to the branch a
    working clone has checked out is refused by git, and the hooks belong
    where the nodes fetch from (the server's bare repository)."""
    import subprocess

    gd = git_dir(repo)
    done = subprocess.run(
        ["git", "--git-dir", str(gd), "rev-parse", "--is-bare-repository"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HookError(f"{repo}: {done.stderr.strip()}; nothing was changed")
    if done.stdout.strip() != "true":
        raise HookError(
            f"{repo}: not a bare repository; hooks belong on the server's bare repository "
            "(the one pushed to and fetched from), nothing was changed"
        )


def _hook_options(text: str) -> list[str]:
    """The options of the `exec ... reconciler.cli.hooks_cmd HOOK ...` line
    of a hook we wrote (empty when it has none)."""
    for line in text.splitlines():
        if not line.strip().startswith("exec "):
            continue
        try:
            words = shlex.split(line)
        except ValueError:  # edited by hand past reading: nothing to compare
            continue
        if "reconciler.cli.hooks_cmd" in words:
            return words[words.index("reconciler.cli.hooks_cmd") + 2 :]
    return []


def _values(options: Sequence[str], name: str) -> list[str]:
    return [options[i + 1] for i, o in enumerate(options[:-1]) if o == name]


def installed(repo: str) -> HookSet | None:
    """The settings of the hooks an earlier --install-hooks wrote into
    `repo`, read from their command lines; None when there are none of ours."""
    hooks = hooks_dir(repo)
    texts = {}
    for name in ("pre-receive", "post-receive"):
        path = hooks / name
        text = path.read_text(errors="replace") if path.is_file() else ""
        texts[name] = _hook_options(text) if MARKER in text else None
    if all(t is None for t in texts.values()):
        return None
    pre, post = texts["pre-receive"] or [], texts["post-receive"] or []
    keyring = next(iter(_values(pre, "--keyring")), None)
    return HookSet(Path(repo), tuple(_values(post, "--node-url")), keyring, "--allow-empty" in pre)


def dropped(old: HookSet, new: HookSet) -> list[str]:
    """What the hooks in place do that `new` will not, one line each: a
    re-install replaces them whole, and a check or a node must not go
    unnoticed."""
    notes = []
    if old.keyring and not new.keyring:
        notes.append(f"the hooks verified signatures (keyring {old.keyring}); the new ones do not")
    elif old.keyring and new.keyring != old.keyring:
        notes.append(
            f"the hooks verified signatures with keyring {old.keyring}; "
            f"the new ones use keyring {new.keyring}"
        )
    notes += [
        f"the hooks woke {url}; the new ones do not"
        for url in old.node_urls
        if url not in new.node_urls
    ]
    return notes


def node_url_problem(url: str) -> str | None:
    """Why `url` cannot reach a watcher's --wake-addr, or None: the hook
    POSTs to URL/wake, and a URL curl cannot use would fail on every push,
    far from where it was typed."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 bracket
        return f"--node-url {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--node-url {url!r}: expected http://HOST:PORT (a watcher's --wake-addr)"
    try:
        port = parts.port  # None: the scheme's own
    except ValueError:
        port = 0
    if port == 0:
        return f"--node-url {url!r}: the port is not a number from 1 to 65535"
    return None


def install(hooks: HookSet, python: str | None = None) -> list[Path]:
    """Write the hooks (executable); returns their paths."""
    import reconciler

    for url in hooks.node_urls:
        problem = node_url_problem(url)
        if problem is not None:
            raise HookError(f"{problem}; nothing was changed")
    require_bare(str(hooks.repo))
    where = hooks_dir(str(hooks.repo))
    parent = str(Path(reconciler.__file__).resolve().parents[1])
    written = []
    scripts = hooks.scripts(python or sys.executable, parent)
    for name in scripts:
        path = where / name
        if path.exists() and MARKER not in path.read_text(errors="replace"):
            raise HookError(
                f"{path} exists and was not installed by reconcile; move it away first "
                "(nothing was changed)"
            )
    where.mkdir(parents=True, exist_ok=True)
    for name, text in scripts.items():
        path = where / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(path)
        written.append(path)
    return written


def wake(urls: Sequence[str], body: str) -> tuple[int, list[str]]:
    """POST the pushed refs to every watcher's /wake, all at once; how many
    answered, and the failures as messages (CATCH_UP says what a node not
    woken does)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(target: str) -> str:
        request = urllib.request.Request(target, data=body.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WAKE_TIMEOUT_S) as response:
                response.read()
        except OSError as exc:
            return f"{target}: {exc}"
        return ""

    targets = wake_urls(urls)
    if not targets:
        return 0, []
    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        answers = list(pool.map(one, targets))
    failures = [a for a in answers if a]
    return len(targets) - len(failures), failures
