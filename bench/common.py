"""Shared bench helpers: timing child processes and reporting."""

from __future__ import annotations

import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RECONCILE = str(Path(sys.executable).parent / "reconcile")
OUT = Path(__file__).resolve().parent / "out"


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the reconcile CLI runs in: as installed, with bytecode
    caching on (a developer's PYTHONDONTWRITEBYTECODE would add ~70 ms of
    compiling to every command)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **(extra or {})}


def received_ctx(ifindex: int = 1) -> bytes:
    """The start of a struct __sk_buff for BPF_PROG_TEST_RUN whose packet
    arrived on `ifindex` (its ingress_ifindex, offset 36; 1: the loopback, a
    test run's device), as a forwarded pod-to-pod packet has. A test run's
    packet otherwise has none, as one the host sends itself."""
    return struct.pack("=10I", *([0] * 9), ifindex)


def run_timed(
    cmd: Sequence[str], env: dict[str, str] | None = None, ok: Sequence[int] = (0,)
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds and CPU seconds (user+sys of the child and its workers)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=cli_env(env))
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc


def median_wall(cmd: Sequence[str], runs: int, ok: Sequence[int] = (0,)) -> float:
    return statistics.median(run_timed(cmd, ok=ok)[0] for _ in range(runs))


def report(name: str, rows: list[tuple[str, Any, str]]) -> dict[str, Any]:
    print(f"\n## {name}")
    for label, value, note in rows:
        shown = (
            f"{value:,.3f}"
            if isinstance(value, float)
            else f"{value:,}"
            if isinstance(value, int)
            else str(value)
        )
        print(f"  {label:<58} {shown:>14}  {note}")
    OUT.mkdir(exist_ok=True)
    data = {label: value for label, value, _ in rows}
    (OUT / f"{name.split(':')[0].strip().replace(' ', '_')}.json").write_text(
        json.dumps(data, indent=2, default=str)
    )
    return data
