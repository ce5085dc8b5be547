"""Two commits of the reconciler side by side in one run.

Each side is unpacked from git (`git archive`) and run through its own CLI;
"worktree" runs this tree's code as it is on disk. Every figure alternates
the two (ABAB...) so both see the same machine. Figures: cold validation of
10,000 resources (one process), re-validation after one file changed, a
no-op plan over 200 interfaces, and one changed service among 10,000
applied by a one-shot `--apply`. Target: ours within 10% of the baseline.
`--only instructions` counts, under valgrind's callgrind, the instructions
one cold validation of 3,000 resources executes on each side: a figure the
VM's timing noise does not move.

By default the baseline is the last flat-layout commit and ours is the
worktree; `--baseline REV --ours REV` measures any step against its parent,
e.g. `python -m bench.layout_bench --baseline 5132e62^ --ours 5132e62`.
`--only plan,apply` picks figures (validate, plan, apply)."""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from bench import plan_bench
from bench import services_gen as gen
from bench.common import report, run_timed
from bench.gen import generate
from sandbox.netns import Sandbox

BASELINE = "421939b"
OURS = "worktree"
REPO = Path(__file__).resolve().parents[1]
ROUNDS = 5
FIGURES = ("validate", "plan", "apply")
OPTIONAL = ("instructions",)  # slow (callgrind), and needs valgrind: asked for by name


def launcher(tree: Path) -> list[str]:
    """The reconcile command of the tree at `tree`, through its own CLI: the
    flat layout has `reconciler/cli.py`, the layered one `reconciler/cli/main.py`."""
    layered = (tree / "reconciler/cli/main.py").exists()
    module = "reconciler.cli.main" if layered else "reconciler.cli"
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        f"from {module} import entry; sys.exit(entry())"
    )
    return [sys.executable, "-c", code]


def unpacked(rev: str, dest: Path) -> Path:
    """The tree of commit `rev` (its reconciler, BPF sources and schemas)
    unpacked under `dest`; "worktree" is this tree as it is on disk."""
    if rev == "worktree":
        return REPO
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "reconciler", "bpf", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def unpack(rev: str, dest: Path) -> list[str]:
    """The reconcile command of commit `rev`, unpacked under `dest`."""
    return launcher(unpacked(rev, dest))


Measure = Callable[[list[str], str], tuple[float, float]]  # wall and CPU seconds


@dataclass(frozen=True, slots=True)
class Figure:
    label: str
    old: float  # median wall seconds
    new: float
    low: float  # the lowest and highest per-round wall ratio new / old
    high: float
    cpu: float  # median CPU seconds new / old: steadier when other work shares the cores


def alternate(measure: Measure, old: list[str], new: list[str]) -> Figure:
    """Medians of `measure(cmd, who)` for the baseline and ours, alternating,
    after one unmeasured round (bytecode written, page cache warm); with the
    spread of the per-round ratios."""
    measure(old, "old")
    measure(new, "new")
    before, after = [], []
    for _ in range(ROUNDS):
        before.append(measure(old, "old"))
        after.append(measure(new, "new"))
    ratios = [a[0] / b[0] for a, b in zip(after, before, strict=True)]
    cpu = statistics.median(a[1] for a in after) / statistics.median(b[1] for b in before)
    wall_old, wall_new = (statistics.median(w for w, _ in runs) for runs in (before, after))
    return Figure("", wall_old, wall_new, min(ratios), max(ratios), cpu)


def labelled(label: str, figure: Figure) -> Figure:
    return replace(figure, label=label)


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    wall, cpu, _ = run_timed(cmd, env=env)
    return wall, cpu


def validation(tmp: Path, old: list[str], new: list[str]) -> list[Figure]:
    repo = tmp / "repo"
    generate(repo, 10_000)
    files = sorted(repo.rglob("*.yaml"))

    def cold(cmd: list[str], who: str) -> tuple[float, float]:
        return timed([*cmd, "--validate", str(repo), "--no-cache", "--jobs", "1"])

    edits = iter(range(10 * (ROUNDS + 1)))

    def warm(cmd: list[str], who: str) -> tuple[float, float]:
        env = {"XDG_CACHE_HOME": str(tmp / f"cache-{who}")}
        run_timed([*cmd, "--validate", str(repo)], env=env)  # a warm cache of this tree
        victim = files[next(edits) * 37 % len(files)]
        victim.write_text(victim.read_text() + "\n")
        return timed([*cmd, "--validate", str(repo)], env=env)

    return [
        labelled("validate 10,000 resources cold, one process: s", alternate(cold, old, new)),
        labelled("validate after one file changed: s", alternate(warm, old, new)),
    ]


def instructions(tmp: Path, old: list[str], new: list[str]) -> list[Figure]:
    """Instructions of one cold validation of 3,000 resources, each side
    counted once under callgrind after a plain run (bytecode and compiled
    validators written). Figure.old/new hold counts, low/high the ratio."""
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt-get install valgrind); skipped")
        return []
    repo = tmp / "repo-3000"
    generate(repo, 3_000)
    counts = []
    for cmd in (old, new):
        args = [*cmd, "--validate", str(repo), "--no-cache", "--jobs", "1"]
        subprocess.run(args, capture_output=True, check=True)
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        found = re.search(r"Collected : (\d+)", out)
        if found is None:
            raise RuntimeError(f"callgrind printed no count:\n{out[-2000:]}")
        counts.append(float(found[1]))
    ratio = counts[1] / counts[0]
    label = "validate 3,000 resources cold: instructions (callgrind)"
    return [Figure(label, counts[0], counts[1], ratio, ratio, ratio)]


def noop_plan(tmp: Path, old: list[str], new: list[str]) -> list[Figure]:
    """Two sandbox nodes of 200 interfaces, one converged by each code."""
    nodes: dict[str, tuple[Sandbox, list[str]]] = {}
    envs: dict[str, dict[str, str]] = {}
    try:
        for who in ("old", "new"):
            sb = Sandbox(prefix=f"rclbenchpl{who}")
            sb.down()
            sb.up()
            nodes[who] = (sb, [])
            plan_bench.build_links(sb, 200)
            config = tmp / f"plan-config-{who}"
            config.mkdir()
            (config / "felix.yaml").write_text(plan_bench.FELIX)
            (config / "weps.yaml").write_text(
                "".join(plan_bench.WEP.format(i=i, hi=i // 256, lo=i % 256) for i in range(200))
            )
            args = ["--config", str(config), *sb.target_args(f"{tmp}/plan-state-{who}")]
            # A cache of its own: each code drops the cache directories of
            # other code versions, so with a shared one every plan compiles.
            envs[who] = {"XDG_CACHE_HOME": str(tmp / f"plan-cache-{who}")}
            run_timed([*(old if who == "old" else new), "--apply", *args], env=envs[who])
            nodes[who] = (sb, args)

        def plan(cmd: list[str], who: str) -> tuple[float, float]:
            return timed([*cmd, "--plan", *nodes[who][1]], env=envs[who])

        return [labelled("no-op --plan, 200 interfaces: s", alternate(plan, old, new))]
    finally:
        for sb, _ in nodes.values():
            sb.down()


def one_service(tmp: Path, old: list[str], new: list[str]) -> list[Figure]:
    """Two sandbox nodes of 10,000 services, one converged by each code."""
    nodes: dict[str, tuple[Sandbox, Path, list[str], dict[str, str]]] = {}
    try:
        for who in ("old", "new"):
            sb = Sandbox(prefix=f"rclbench{who}")
            sb.down()
            sb.up()
            config = tmp / f"svc-{who}"
            gen.write_node(config, ("cli", gen.CLIENT_IP), ("srv", 11))
            gen.write_services(config, 10_000, 10)
            args = ["--config", str(config), "--node", gen.NODE,
                    *sb.target_args(str(tmp / f"svc-state-{who}"))[2:]]  # fmt: skip
            env = {"XDG_CACHE_HOME": str(tmp / f"svc-cache-{who}")}
            cmd = old if who == "old" else new
            run_timed([*cmd, "--apply", *args, "--no-cache"], env=env)
            run_timed([*cmd, "--apply", *args], env=env)  # records the applied state
            nodes[who] = (sb, config, args, env)
        picks = iter(range(0, 10_000, 97))

        def apply(cmd: list[str], who: str) -> tuple[float, float]:
            _, config, args, env = nodes[who]
            i = next(picks)
            path = gen.service_path(config, i)
            old_ip, new_ip = gen.endpoint_ip(i, 9), gen.endpoint_ip(i, 10)
            path.write_text(path.read_text().replace(f"[{old_ip}]", f"[{new_ip}]"))
            return timed([*cmd, "--apply", *args], env=env)

        label = "one changed service among 10,000, one-shot --apply: s"
        return [labelled(label, alternate(apply, old, new))]
    finally:
        for sb, *_ in nodes.values():
            sb.down()


def main(
    baseline: str = BASELINE, ours: str = OURS, only: tuple[str, ...] = FIGURES
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="rcl-bench-layout-") as tmp_name:
        tmp = Path(tmp_name)
        old = unpack(baseline, tmp / "baseline")
        new = unpack(ours, tmp / "ours")
        runs = {
            "validate": validation,
            "plan": noop_plan,
            "apply": one_service,
            "instructions": instructions,
        }
        figures = [
            f for name in (*FIGURES, *OPTIONAL) if name in only for f in runs[name](tmp, old, new)
        ]
    rows: list[tuple[str, object, str]] = []
    for f in figures:
        if "instructions" in f.label:
            counts = f"{f.old / 1e9:.3f} G -> {f.new / 1e9:.3f} G"
            rows.append((f.label, counts, f"{ours} / {baseline}: {f.new / f.old:.3f}"))
            continue
        ratio = (
            f"{ours} / {baseline}: {f.new / f.old:.2f} [{f.low:.2f}-{f.high:.2f}], "
            f"CPU {f.cpu:.2f} (target <= 1.10)"
        )
        rows.append((f.label, f"{f.old:.3f} -> {f.new:.3f}", ratio))
    return report(f"layout: {ours} beside {baseline}", rows)


def cli(argv: list[str] | None = None) -> None:
    global ROUNDS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=BASELINE, help=f"commit (default {BASELINE})")
    p.add_argument("--ours", default=OURS, help="commit, or worktree (the default)")
    p.add_argument(
        "--only", default=",".join(FIGURES), help="figures: validate,plan,apply,instructions"
    )
    p.add_argument("--rounds", type=int, default=ROUNDS, help=f"pairs per figure ({ROUNDS})")
    args = p.parse_args(argv)
    only = tuple(args.only.split(","))
    unknown = set(only) - set(FIGURES) - set(OPTIONAL)
    if unknown:
        p.error(f"unknown figures: {', '.join(sorted(unknown))}")
    ROUNDS = args.rounds
    main(args.baseline, args.ours, only)


if __name__ == "__main__":
    cli()
