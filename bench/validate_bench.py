"""--validate throughput (cold, all cores) and warm re-validation."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.common import RECONCILE, report, run_timed
from bench.gen import generate

KUBECONFORM_PER_CORE = 1900  # published: ~7,500/s with 8 workers on a 4-core laptop


def naive_rate(root: Path, sample: int = 300) -> float:
    """The obvious implementation, side by side: ruamel round-trip loader + jsonschema."""
    import jsonschema
    from ruamel.yaml import YAML

    from reconciler.config.schema import schema_for

    yaml = YAML()  # round-trip: keeps line numbers, pure Python
    validators: dict[str, jsonschema.Draft7Validator] = {}
    done = 0
    start = time.perf_counter()
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text()):
            kind = doc["kind"]
            v = validators.setdefault(kind, jsonschema.Draft7Validator(schema_for(kind)))
            list(v.iter_errors(doc))
            done += 1
        if done >= sample:
            break
    return done / (time.perf_counter() - start)


def main(count: int = 10_000) -> dict[str, object]:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="rcl-bench-") as tmp:
        repo, cache = Path(tmp) / "repo", Path(tmp) / "cache"
        generate(repo, count)
        cmd = [RECONCILE, "--validate", str(repo)]
        wall1, _, _ = run_timed([*cmd, "--no-cache", "--jobs", "1"])
        wall, cpu, proc = run_timed([*cmd, "--no-cache"])
        assert "valid" in proc.stderr, proc.stderr
        env = {"XDG_CACHE_HOME": str(cache)}
        run_timed(cmd, env=env)  # fill the cache
        victim = sorted(repo.rglob("*.yaml"))[len(list(repo.rglob("*.yaml"))) // 2]
        victim.write_text(victim.read_text().replace("order: ", "order: 1", 1))
        warm, _, _ = run_timed(cmd, env=env)
        unchanged, _, _ = run_timed(cmd, env=env)
        naive = naive_rate(repo)
    rate = count / wall
    return report(
        "validate: 10,000 resources",
        [
            ("resources", count, ""),
            (
                "cold, all cores: resources/s",
                rate,
                f"{wall:.2f}s wall, {cpu / wall:.2f} cores busy",
            ),
            ("cold, all cores: resources/s per core", rate / cores, "target >= 2,000"),
            ("cold, one process: resources/s", count / wall1, f"{wall1:.2f}s"),
            ("parallel speed-up vs one process", wall1 / wall, f"{cores} cores"),
            ("naive ruamel round-trip + jsonschema: resources/s", naive, "side by side, 300 docs"),
            ("ratio ours (per core) / naive (one core)", (rate / cores) / naive, ""),
            (
                "ratio ours per core / kubeconform published per core",
                rate / cores / KUBECONFORM_PER_CORE,
                "kubeconform not runnable here",
            ),
            ("warm, one file changed: seconds", warm, "target < 0.5 s"),
            ("warm, nothing changed: seconds", unchanged, ""),
        ],
    )


if __name__ == "__main__":
    main()
