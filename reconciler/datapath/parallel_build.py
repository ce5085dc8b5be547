"""Program sets built side by side, one child process each.

Compiling a set with bcc is single-threaded, and a node with host
endpoints builds two large sets (tc and host) on its first apply and on
every upgrade. The maps the sets share are made first, by one small
compile (loader.build_shared_maps), so no two children race to create and
pin the same map; then each set is compiled, loaded and pinned by a child
running loader.build, at most one child per CPU at a time. A child's build
is atomic (pinned under a temporary name, renamed into place), so a failed
or killed child leaves nothing half built: the caller builds every set again
in order, which is then a no-op for the sets built here and reports the
error of a set that failed.

`python -m reconciler.datapath.parallel_build JSON` is the child; it dies
with the process that started it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from reconciler import logsink
from reconciler.datapath import loader
from reconciler.datapath.programs import LONG_BUILDS

log = logsink.get(__name__)

POLL_S = 0.05  # how often finished children are looked for


@dataclass(frozen=True)
class SetBuild:
    """One program set to build: loader.build's arguments beside the root and flags."""

    prog_set: str
    phash: str
    functions: tuple[str, ...]
    prog_type: str


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def build_side_by_side(root: str, flags: Sequence[str], builds: Sequence[SetBuild]) -> list[str]:
    """Build the sets of `builds` not built yet, side by side; returns the
    names of those that failed (nothing is raised: loader.build, run in
    order afterwards, reports their errors). Nothing is done here unless two
    of them are long builds and there are two CPUs."""
    pending = [b for b in builds if not loader.is_built(root, b.prog_set, b.phash, b.functions)]
    if sum(b.prog_set in LONG_BUILDS for b in pending) < 2 or cpus() < 2:
        return []  # the shared maps' compile would cost what running side by side saves
    started = time.monotonic()
    try:
        loader.build_shared_maps(root, flags)
    except Exception as exc:  # noqa: BLE001 - the in-order builds meet it again and report it
        log.warning("the shared maps could not be made (%s); building the sets in order", exc)
        return [b.prog_set for b in pending]
    queue = sorted(pending, key=lambda b: b.prog_set not in LONG_BUILDS)  # long ones first
    failed: list[str] = []
    running: list[_Child] = []
    try:
        while queue or running:
            while queue and len(running) < cpus():
                running.append(_Child.start(root, flags, queue.pop(0)))
            time.sleep(POLL_S)
            for child in [c for c in running if c.process.poll() is not None]:
                running.remove(child)
                if child.process.returncode != 0:
                    failed.append(child.build.prog_set)
                    log.warning("side-by-side build of %s failed (%s); building it in order",
                                child.build.prog_set, child.reason())  # fmt: skip
                child.close()
    finally:
        for child in running:  # interrupted: no child outlives the apply
            child.process.kill()
            child.process.wait()
            child.close()
    log.info("built %d program set(s) side by side in %.1fs", len(pending) - len(failed),
             time.monotonic() - started)  # fmt: skip
    return failed


@dataclass
class _Child:
    """A child process building one set, its standard error in a file (a
    pipe nobody reads while it runs could fill and stall it)."""

    build: SetBuild
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]

    @classmethod
    def start(cls, root: str, flags: Sequence[str], build: SetBuild) -> _Child:
        """Import this package from where the parent did (it may not be installed)."""
        package_parent = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        spec = json.dumps(
            {"root": root, "flags": list(flags), "parent": os.getpid(), **asdict(build)}
        )
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned and closed by the _Child
        process = subprocess.Popen(
            [sys.executable, "-m", __name__, spec], stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
        return cls(build, process, stderr)

    def reason(self) -> str:
        """The last line the child wrote to standard error, or its exit status."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.process.returncode}"

    def close(self) -> None:
        self.stderr.close()


def die_with_parent(parent: int) -> None:
    """Be killed when the process that started this one ends (an apply
    killed outright runs no cleanup of its own): PR_SET_PDEATHSIG, then a
    check that the parent had not already gone before it was set."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


PR_SET_PDEATHSIG = 1


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    die_with_parent(spec["parent"])
    loader.build(spec["root"], spec["prog_set"], spec["phash"], spec["flags"],
                 spec["functions"], spec["prog_type"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
