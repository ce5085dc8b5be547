"""A `reconcile --watch --json` process for kernel tests, its pass records
read as they come, and the hand edits a watcher must notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

RECONCILE = str(Path(sys.executable).parent / "reconcile")
ROOT = Path(__file__).resolve().parents[2]
# The `reconcile` script imports the package this checkout holds.
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Watch:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.records: list[dict] = []
        self.stderr: list[str] = []
        self._out = threading.Thread(target=self._read_out, daemon=True)
        self._err = threading.Thread(target=self._read_err, daemon=True)
        self._out.start()
        self._err.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.records.append(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    @property
    def log(self) -> str:
        return "".join(self.stderr)

    def wait_record(self, match: Callable[[dict], bool], timeout: float = 90.0) -> dict:
        """The first pass record (from the start) that matches. (The first
        pass builds the programs: on a loaded machine that takes a while.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for r in list(self.records):
                if match(r):
                    return r
            if self.proc.poll() is not None:
                raise AssertionError(f"watcher exited {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"no matching pass in {timeout}s: {self.records}\n{self.log}")

    def mark(self) -> int:
        return len(self.records)

    def wait_quiet(self, quiet: float = 1.0, timeout: float = 30.0) -> None:
        """Until the watcher has printed nothing (no record, no log line) for
        `quiet` seconds: events queued by earlier passes have run their pass,
        so the next event the test causes is the next one the watcher sees."""
        deadline = time.monotonic() + timeout
        seen, since = (-1, -1), time.monotonic()
        while time.monotonic() < deadline:
            now = (len(self.records), len(self.stderr))
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"watcher exited {self.proc.returncode}:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"watcher not quiet for {quiet}s within {timeout}s:\n{self.log}")

    def wait_after(self, mark: int, match: Callable[[dict], bool], timeout: float = 20.0) -> dict:
        return self.wait_record(lambda r: self.records.index(r) >= mark and match(r), timeout)

    def stop(self, timeout: float = 20.0) -> int:
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._out.join(5)
        self._err.join(5)
        return rc


@contextmanager
def watch(args: list[str], env: dict[str, str] | None = None) -> Iterator[Watch]:
    proc = subprocess.Popen(
        [RECONCILE, "--watch", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, **(env or {})},
    )
    w = Watch(proc)
    try:
        yield w
    finally:
        if proc.poll() is None:
            w.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def delete_filter(node, iface: str, direction: str) -> None:
    subprocess.run(
        ["tc", "-n", node.sandbox.node, "filter", "del", "dev", iface, direction], check=True
    )


def scribble_ifstate(node, iface: str) -> None:
    """Rewrite an interface's rcl_ifstate flags by hand (on every CPU)."""
    from reconciler.datapath.maps import iface_types as il
    from reconciler.kernel import bpf as bpfsys
    from tests.kernel.test_reconcile import ifindex, ifslots

    index = ifindex(node, iface)
    fd = bpfsys.obj_get(str(Path(node.sandbox.bpffs_root) / "maps" / "rcl_ifstate"))
    try:
        slot = il.U32.pack(ifslots(node)[index][0])
        per_cpu = bpfsys.map_lookup(fd, slot)
        assert isinstance(per_cpu, list)
        bpfsys.map_update(fd, slot, [il.IFSTATE.pack(4, index, 0, 0, 0, 0, 0, 0)] * len(per_cpu))
    finally:
        bpfsys.close(fd)


def ifstate_flags(node, iface: str) -> int | None:
    from tests.kernel.test_reconcile import ifindex, ifstate

    return ifstate(node).get(ifindex(node, iface))
