"""The package layout against the code before it, side by side in one run.

The code before the layered packages (commit BASELINE, the flat `reconciler/`)
is unpacked from git and run through its own CLI; ours through ours. Every
figure alternates the two (ABAB...) so both see the same machine. Figures:
cold validation of 10,000 resources (one process), re-validation after one
file changed, a no-op plan over 200 interfaces, and one changed service among
10,000 applied by a one-shot `--apply`. Target: ours within 10% of before."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import plan_bench
from bench import services_gen as gen
from bench.common import RECONCILE, report, run_timed
from bench.gen import generate
from sandbox.netns import Sandbox

BASELINE = "421939b"
REPO = Path(__file__).resolve().parents[1]
ROUNDS = 5


def unpack_baseline(dest: Path) -> list[str]:
    """The baseline's reconcile command, run from an unpacked tree."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BASELINE, "reconciler", "bpf", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    code = (
        f"import sys; sys.path.insert(0, {str(dest)!r}); "
        "from reconciler.cli import entry; entry()"
    )
    return [sys.executable, "-c", code]


def alternate(measure: Callable[[list[str], str], float], old: list[str]) -> tuple[float, float]:
    """Median seconds of `measure(cmd, who)` for the baseline and for ours, alternating."""
    before, after = [], []
    for _ in range(ROUNDS):
        before.append(measure(old, "old"))
        after.append(measure([RECONCILE], "new"))
    return statistics.median(before), statistics.median(after)


def validation(tmp: Path, old: list[str]) -> list[tuple[str, float, float]]:
    repo = tmp / "repo"
    generate(repo, 10_000)
    files = sorted(repo.rglob("*.yaml"))

    def cold(cmd: list[str], who: str) -> float:
        return run_timed([*cmd, "--validate", str(repo), "--no-cache", "--jobs", "1"])[0]

    edits = iter(range(10 * ROUNDS))

    def warm(cmd: list[str], who: str) -> float:
        env = {"XDG_CACHE_HOME": str(tmp / f"cache-{who}")}
        run_timed([*cmd, "--validate", str(repo)], env=env)  # a warm cache of this tree
        victim = files[next(edits) * 37 % len(files)]
        victim.write_text(victim.read_text() + "\n")
        return run_timed([*cmd, "--validate", str(repo)], env=env)[0]

    return [
        ("validate 10,000 resources cold, one process: s", *alternate(cold, old)),
        ("validate after one file changed: s", *alternate(warm, old)),
    ]


def noop_plan(tmp: Path, old: list[str]) -> list[tuple[str, float, float]]:
    """Two sandbox nodes of 200 interfaces, one converged by each code."""
    nodes: dict[str, tuple[Sandbox, list[str]]] = {}
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
            run_timed([*(old if who == "old" else [RECONCILE]), "--apply", *args])
            nodes[who] = (sb, args)

        def plan(cmd: list[str], who: str) -> float:
            return run_timed([*cmd, "--plan", *nodes[who][1]])[0]

        return [("no-op --plan, 200 interfaces: s", *alternate(plan, old))]
    finally:
        for sb, _ in nodes.values():
            sb.down()


def one_service(tmp: Path, old: list[str]) -> list[tuple[str, float, float]]:
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
            cmd = old if who == "old" else [RECONCILE]
            run_timed([*cmd, "--apply", *args, "--no-cache"], env=env)
            run_timed([*cmd, "--apply", *args], env=env)  # records the applied state
            nodes[who] = (sb, config, args, env)
        picks = iter(range(0, 10_000, 97))

        def apply(cmd: list[str], who: str) -> float:
            _, config, args, env = nodes[who]
            i = next(picks)
            path = gen.service_path(config, i)
            old_ip, new_ip = gen.endpoint_ip(i, 9), gen.endpoint_ip(i, 10)
            path.write_text(path.read_text().replace(f"[{old_ip}]", f"[{new_ip}]"))
            return run_timed([*cmd, "--apply", *args], env=env)[0]

        return [("one changed service among 10,000, one-shot --apply: s", *alternate(apply, old))]
    finally:
        for sb, *_ in nodes.values():
            sb.down()


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="rcl-bench-layout-") as tmp_name:
        tmp = Path(tmp_name)
        old = unpack_baseline(tmp / "baseline")
        figures = [*validation(tmp, old), *noop_plan(tmp, old), *one_service(tmp, old)]
    rows: list[tuple[str, object, str]] = []
    for label, before, after in figures:
        ratio = f"ours / {BASELINE}: {after / before:.2f} (target <= 1.10)"
        rows.append((label, f"{before:.3f} -> {after:.3f}", ratio))
    return report("layout: ours beside the flat layout", rows)


if __name__ == "__main__":
    main()
