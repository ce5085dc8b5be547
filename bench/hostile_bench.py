"""--validate on the largest inputs of the hostile corpus
(tests/unit/test_hostile_corpus.py): wall time and peak memory of each, as a
separate process (the issue's bound: under 2 s and 200 MB per input up to 1 MB)."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import report

BIGGEST = 5
# small files that expand or backtrack: what used to take seconds or gigabytes
COSTLY = ("bomb-10x9", "addresses-quadratic", "list-49999", "nest-flow-seq-1000", "docs-5000")


def main() -> dict[str, object]:
    from tests.unit.test_hostile_corpus import CASES

    largest = sorted(CASES, key=lambda case: len(case[1]), reverse=True)[:BIGGEST]
    largest += [case for case in CASES if case[0] in COSTLY and case not in largest]
    rows: list[tuple[str, object, str]] = []
    with tempfile.TemporaryDirectory(prefix="rcl-hostile-") as tmp:
        for name, data in largest:
            path = Path(tmp) / f"{name}.yaml"
            path.write_bytes(data)
            script = (
                "import resource, sys\nfrom reconciler.cli.main import main\n"
                f"code = main(['--validate', {str(path)!r}, '--no-cache'])\n"
                # its own peak (VmHWM): ru_maxrss survives exec, so it would report ours
                "print(next(int(l.split()[1]) for l in open('/proc/self/status')"
                " if l.startswith('VmHWM:')), file=sys.stderr)\n"
                "sys.exit(code)\n"
            )
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
            )
            wall = time.perf_counter() - start
            peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
            size = f"{len(data) / 1024:,.0f} KiB"
            rows.append((f"{name} ({size}): seconds", wall, f"exit {done.returncode}"))
            rows.append((f"{name}: peak MB", peak_mb, "bound: 200"))
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >= 0
    return report("hostile: validate on the largest corpus inputs", rows)


if __name__ == "__main__":
    main()
