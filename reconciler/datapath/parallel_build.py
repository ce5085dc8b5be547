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

`python -m reconciler.datapath.parallel_build JSON` is the child
(children.py); it dies with the process that started it, and builds its set
whole (the CPUs are taken by the other sets).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from reconciler import logsink
from reconciler.datapath import loader
from reconciler.datapath.children import Child
from reconciler.datapath.programs import LONG_BUILDS
from reconciler.procs import die_with_parent

log = logsink.get(__name__)

POLL_S = 0.05  # how often finished children are looked for


@dataclass(frozen=True)
class SetBuild:
    """One program set to build: loader.build's arguments beside the root and flags."""

    prog_set: str
    phash: str
    functions: tuple[str, ...]
    prog_type: str


def build_side_by_side(root: str, flags: Sequence[str], builds: Sequence[SetBuild]) -> list[str]:
    """Build the sets of `builds` not built yet, side by side; returns the
    names of those that failed (nothing is raised: loader.build, run in
    order afterwards, reports their errors). Nothing is done here without
    two CPUs. Two long builds or more: one child process per set, at most
    one per CPU. One long build and short ones: the long one here, in parts
    (loader.build), the short ones while it waits for its other part."""
    pending = [b for b in builds if not loader.is_built(root, b.prog_set, b.phash, b.functions)]
    long = [b for b in pending if b.prog_set in LONG_BUILDS]
    if loader.cpus() < 2 or not long:
        return []
    if len(long) == 1:
        short = [b for b in pending if b is not long[0]]
        return _with_short_builds(root, flags, long[0], short) if short else []
    started = time.monotonic()
    try:
        loader.build_shared_maps(root, flags)
    except Exception as exc:  # noqa: BLE001 - the in-order builds meet it again and report it
        log.warning("the shared maps could not be made (%s); building the sets in order", exc)
        return [b.prog_set for b in pending]
    queue = sorted(pending, key=lambda b: b.prog_set not in LONG_BUILDS)  # long ones first
    failed: list[str] = []
    running: list[tuple[SetBuild, Child]] = []
    try:
        while queue or running:
            while queue and len(running) < loader.cpus():
                build = queue.pop(0)
                spec = {"root": root, "flags": list(flags), **asdict(build)}
                running.append((build, Child.start(__name__, spec)))
            time.sleep(POLL_S)
            for build, child in [r for r in running if r[1].process.poll() is not None]:
                running.remove((build, child))
                if child.process.returncode != 0:
                    failed.append(build.prog_set)
                    log.warning("side-by-side build of %s failed (%s); building it in order",
                                build.prog_set, child.reason())  # fmt: skip
                child.close()
    finally:
        for _build, child in running:  # interrupted: no child outlives the apply
            child.kill()
            child.close()
    log.info("built %d program set(s) side by side in %.1fs", len(pending) - len(failed),
             time.monotonic() - started)  # fmt: skip
    return failed


def _with_short_builds(
    root: str, flags: Sequence[str], long: SetBuild, short: Sequence[SetBuild]
) -> list[str]:
    """Build `long` in parts and the `short` sets in the time its build
    waits for the part a child compiles (the longer one)."""
    started = time.monotonic()
    failed: list[str] = []

    def short_builds() -> None:
        for b in short:
            try:
                loader.build(root, b.prog_set, b.phash, flags, b.functions, b.prog_type)
            except Exception as exc:  # noqa: BLE001 - the in-order build meets it again
                log.warning("building %s beside %s failed (%s); building it in order",
                            b.prog_set, long.prog_set, exc)  # fmt: skip
                failed.append(b.prog_set)

    try:
        loader.build(root, long.prog_set, long.phash, flags, long.functions, long.prog_type,
                     meanwhile=short_builds)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the in-order build meets it again
        log.warning("building %s failed (%s); building it in order", long.prog_set, exc)
        failed.append(long.prog_set)
    log.info("built %s with %s meanwhile in %.1fs", long.prog_set,
             ", ".join(b.prog_set for b in short), time.monotonic() - started)  # fmt: skip
    return failed


def main(argv: Sequence[str]) -> int:
    spec = json.loads(argv[0])
    die_with_parent(spec["parent"])
    loader.build(spec["root"], spec["prog_set"], spec["phash"], spec["flags"],
                 spec["functions"], spec["prog_type"], split=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
