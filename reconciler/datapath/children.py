"""Child processes that build BPF programs beside the process that started
them (whole sets: parallel_build.py; one part of a set: part_build.py).

A child runs `python -m MODULE SPEC` with this package importable from
where the parent imported it (it may not be installed), its standard error
in a file (a pipe nobody reads while it runs could fill and stall it), and
is killed with its parent (`reconciler.procs.die_with_parent`, called by the
child). A child started `held` waits for a line on its standard input
before it starts its work: its start-up overlaps what the parent must do
first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@dataclass
class Child:
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]

    @classmethod
    def start(cls, module: str, spec: dict[str, Any], held: bool = False) -> Child:
        package_parent = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned and closed by the Child
        process = subprocess.Popen(
            [sys.executable, "-m", module, json.dumps({**spec, "parent": os.getpid()})],
            stdin=subprocess.PIPE if held else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=stderr,
            env={**os.environ, "PYTHONPATH": path},
        )  # fmt: skip
        return cls(process, stderr)

    def release(self) -> None:
        """Let a held child start its work."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b"go\n")
            self.process.stdin.close()
        except BrokenPipeError:
            pass  # it died already: wait() reports it

    def wait(self) -> int:
        return self.process.wait()

    def reason(self) -> str:
        """The last line the child wrote to standard error, or its exit status."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.process.returncode}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        self.stderr.close()


def held_until_released() -> bool:
    """In a child started `held`: wait for the parent's word. False if the
    parent closed the pipe without it (it gave up the build)."""
    return bool(sys.stdin.readline())
