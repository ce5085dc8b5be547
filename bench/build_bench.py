"""A node's first program build, side by side with a baseline commit.

What a node compiles and loads with bcc before its first apply can attach
anything: the tc datapath and the connect-time hooks, and the host endpoint
programs where the node has host endpoints. Each side is unpacked from git
(bench/layout_bench.py unpacked) and builds with its own loader into a private bpffs
directory, in a child process, alternating rounds. Figures: a node without
host endpoints and one with them, median wall seconds and the ratio.

Default baseline: 65defdd, whose one tc set held the host endpoint
programs too. `python -m bench.build_bench [--baseline REV] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import report, run_timed
from bench.layout_bench import unpacked

BASELINE = "65defdd"
ROUNDS = 3

# Run in the child, with the tree under test first on sys.path: build the
# sets that tree's compile gives a node with (argv[2] == "host") or without
# host endpoints, as its apply builds them (side by side first, where the
# tree does that; then each set in order), into a fresh pin directory.
BUILD = r"""
import sys, tempfile
sys.path.insert(0, sys.argv[1])
from reconciler.compile.programs import build_flags
from reconciler.config import felix
from reconciler.datapath import loader
from reconciler.datapath import programs as p

with_host = sys.argv[2] == "host"
sets = {"tc": p.TC_PROGRAMS, "connect": tuple(p.CONNECT_PROGRAMS.values())}
if with_host and hasattr(p, "HOST_PROGRAMS"):
    sets["host"] = p.HOST_PROGRAMS
with tempfile.TemporaryDirectory(dir=sys.argv[3]) as root:
    flags = build_flags(root, felix.effective_config([], "node"), loader.kernel_hz())
    try:  # as an apply does: side by side first where the tree can
        from reconciler.datapath.parallel_build import SetBuild, build_side_by_side
    except ImportError:
        pass
    else:
        build_side_by_side(root, flags, [SetBuild(name, "bench", tuple(functions),
                                                  p.PROG_TYPES[name])
                                         for name, functions in sets.items()])
    for name, functions in sets.items():
        loader.build(root, name, "bench", flags, functions, p.PROG_TYPES[name])
"""


def build_seconds(root: Path, pins: Path, node: str) -> float:
    wall, _cpu, _proc = run_timed([sys.executable, "-c", BUILD, str(root), node, str(pins)])
    return wall


def main(baseline: str = BASELINE, rounds: int = ROUNDS) -> dict[str, object]:
    pins = Path("/sys/fs/bpf")
    with tempfile.TemporaryDirectory() as tmp:
        old = unpacked(baseline, Path(tmp) / "baseline")
        new = unpacked("worktree", Path(tmp) / "ours")
        rows: list[tuple[str, object, str]] = []
        for node in ("workload", "host"):
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(rounds):
                times["old"].append(build_seconds(old, pins, node))
                times["new"].append(build_seconds(new, pins, node))
            o, n = statistics.median(times["old"]), statistics.median(times["new"])
            label = "without host endpoints" if node == "workload" else "with host endpoints"
            rows += [
                (f"first build, {label}: {baseline} s", o, f"median of {rounds}"),
                (f"first build, {label}: ours s", n, f"median of {rounds}"),
                (f"first build, {label}: ours / {baseline}", round(n / o, 2), ""),
            ]
    return report("program build: a node's first build of its program sets", rows)


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    main(args.baseline, args.rounds)


if __name__ == "__main__":
    cli()
