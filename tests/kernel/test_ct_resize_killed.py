"""An apply killed (SIGKILL) at any step of a conntrack resize loses none of
the old table's entries: the next apply finishes the handover
(reconciler/datapath/ct_handover.py) and carries them into the new table.
The entries are masqueraded flows written straight into the table, as the
datapath writes them (their replies cannot be un-NATed without them); no
traffic touches them, so each must come through exactly as it was.

Each apply is killed at a named point of its own process (the driver below
wraps the function that marks the point and kills itself there), and the
next apply starts where it stopped, possibly to be killed at a later point
itself: one build of the new programs serves every point of a resize."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath import ct_handover
from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from tests.kernel.conftest import FELIX, PODS
from tests.kernel.test_reconcile import tc_filters
from tests.support import nat_records as nr

ROOT = str(Path(__file__).resolve().parents[2])

# Runs the CLI with argv[2:], killing itself with SIGKILL at the point
# argv[1] names: before or after a function of the apply runs, at the first
# call that matches (its arguments, or the function that calls it).
DRIVER = """
import os, signal, sys
from reconciler.apply import executor
from reconciler.cli.main import main
from reconciler.datapath import ct_handover, loader

def called_by(caller):
    return lambda *args: sys._getframe(2).f_code.co_name == caller

def kill_at(owner, name, when, matches=lambda *a: True):
    inner = getattr(owner, name)
    def wrapped(*args, **kwargs):
        if when == "before" and matches(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        out = inner(*args, **kwargs)
        if when == "after" and matches(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(owner, name, wrapped)

POINTS = {
    "table-retired": (executor.Executor, "run", "after",
                      lambda self, change: change.address == "map/rcl_ct"),
    "set-built": (loader, "build", "after", lambda root, prog_set, *_: prog_set == "tc"),
    "one-switched": (executor.Executor, "run", "after",
                     lambda self, change: change.address.startswith("tc/")),
    "before-carry": (ct_handover, "carry", "before", called_by("release")),
    "after-carry": (ct_handover, "carry", "after", called_by("release")),
    "after-settling": (ct_handover, "carry", "after", called_by("settle")),
}
kill_at(*POINTS[sys.argv[1]])
sys.exit(main(sys.argv[2:]))
"""

SIZES = (1400, 2800, 2100)  # 200, 400 and 300 buckets
CLIENT = IPv4Address("198.51.100.7")
NODE_IP, BACKEND = IPv4Address("192.168.50.1"), IPv4Address("10.65.1.20")
FLOWS = 16
UNFINISHED = "conntrack: a resize was interrupted while programs of its old table"


def felix(node, size: int) -> None:
    sizes = f"  bpfMapSizeConntrack: {size}\n  bpfMapSizeConntrackScaling: Disabled\n"
    node.write("felix.yaml", FELIX.format(enabled="true", pattern="^eth") + sizes)


def _table(node) -> int:
    return bpfsys.obj_get(str(Path(node.sandbox.bpffs_root) / "maps" / ct_table.MAP))


def _table_of(program: Path) -> int:
    """The conntrack table a pinned program was built with, as bpftool
    (not our code) finds it among the program's maps."""
    shown = subprocess.run(["bpftool", "-j", "prog", "show", "pinned", str(program)],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    for map_id in json.loads(shown)["map_ids"]:
        fd = bpfsys.map_fd_by_id(map_id)
        if bpfsys.map_info(fd).name == ct_table.MAP:
            return fd
        bpfsys.close(fd)
    raise AssertionError(f"{program} holds no {ct_table.MAP}")


def plant_masqueraded_flows(fd: int, first: int) -> dict[bytes, bytes]:
    """FLOWS external clients' flows (from the `first` one on) through a
    NodePort to a backend on another node, masqueraded: each one's forward
    and reverse entry, written into free ways of the table `fd`. Returns
    key -> value of each."""
    now = time.monotonic_ns()  # bpf_ktime_get_ns's clock
    planted: dict[bytes, bytes] = {}
    buckets = bpfsys.map_info(fd).max_entries
    for i in range(first, first + FLOWS):
        flow = nr.CtEntry(now, now, 77, 0, NODE_IP, BACKEND, 30080, 8080,
                          nl.CtType.FORWARD, nl.CtFlag.EST | nl.CtFlag.MASQ)  # fmt: skip
        fwd = nr.CtKey(CLIENT, NODE_IP, 20000 + i, 30080, nl.Proto.TCP)
        rev = nr.CtKey(BACKEND, NODE_IP, 8080, 61000 + i, nl.Proto.TCP)  # its masquerade port
        for key, entry in ((fwd, flow), (rev, replace(flow, type=nl.CtType.REVERSE))):
            _write_free_way(fd, buckets, key.encode(), entry.encode())
            planted[key.encode()] = entry.encode()
    return planted


def _write_free_way(fd: int, buckets: int, key: bytes, value: bytes) -> None:
    index = nl.U32.pack(ct_table.bucket(key, buckets))
    raw = bpfsys.map_lookup(fd, index)
    assert isinstance(raw, bytes)
    state = 5  # rcl_ct_way.state's offset in its header word
    way = next(w for w in range(ct_table.WAYS) if not raw[w * nl.CT_WAY.size + state])
    bpfsys.map_update(fd, index, ct_table.with_entry(raw, way, 2, key, value))


def held(node) -> dict[bytes, bytes]:
    """key -> value of every live entry of the node's table."""
    fd = _table(node)
    try:
        return {key: value for key, (_, _, value) in ct_table.entries(fd).items()}
    finally:
        bpfsys.close(fd)


def apply_killed_at(node, point: str) -> bool:
    """An apply killed at `point`: False if it ended without reaching it."""
    args = [sys.executable, "-c", DRIVER, point, "--apply", *node.args()]
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, -signal.SIGKILL), (point, done.stdout, done.stderr)
    return done.returncode == -signal.SIGKILL


def handover_over(node) -> bool:
    """One build left, reaching no old table, and no retired table pinned."""
    root = Path(node.sandbox.bpffs_root)
    sets = [d for name in ("tc", "host") for d in root.glob(f"progs/{name}-*")]
    retired = root / "handover"
    return len(sets) == 1 and not ct_handover.pending(sets[0]) and not retired.exists()


def old_programs_attached(node, old_set: Path) -> bool:
    """Does a filter of the node still run the old build's programs?"""
    ref = old_set.name.replace("-", "@", 1)
    return any(ref in tc_filters(node, iface, direction)
               for iface in ("eth0", *(f"cali-{pod.name}" for pod in PODS))
               for direction in ("ingress", "egress"))  # fmt: skip


def resize_killed_at(
    node, steps: tuple[tuple[int, str], ...], size: int, first: int
) -> tuple[int, list[str]]:
    """Plant flows, then for each (size, point) of `steps` an apply to that
    size killed at that point, then an apply to `size` to the end: every
    flow planted before, and in the old table after each kill while its
    programs are still attached (flows they record during the handover), is
    in the new table as it was planted, nothing of the handover is left,
    and the next plan has nothing to do. Returns the next flow number free,
    and what the plan before each killed apply said on stderr."""
    (old_set,) = Path(node.sandbox.bpffs_root).glob("progs/tc-*")
    fd = _table(node)
    try:
        planted = plant_masqueraded_flows(fd, first)
    finally:
        bpfsys.close(fd)
    first += FLOWS
    missed, said = [], []
    for step_size, point in steps:
        felix(node, step_size)
        said.append(node.run("--plan")[2])
        if not apply_killed_at(node, point):
            missed.append(point)
        if old_programs_attached(node, old_set):
            fd = _table_of(old_set / "rcl_tc_ingress")
            try:
                planted |= plant_masqueraded_flows(fd, first)
            finally:
                bpfsys.close(fd)
            first += FLOWS
    felix(node, size)
    rc, out, err = node.run("--apply")
    assert rc == 0 and "Verified" in out, out + err
    kept = held(node)
    lost = [nr.CtKey.decode(k) for k, v in planted.items() if kept.get(k) != v]
    assert lost == [], f"killed at {steps}: {len(lost)} of {len(planted)} entries lost"
    assert missed == [], f"no apply reached {missed}"
    assert handover_over(node)
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
    return first, said


def test_a_resize_killed_at_every_step_keeps_the_tables_entries(node):
    small, large, middle = SIZES
    felix(node, small)
    for pod in PODS:
        node.wep(pod)
    rc, out, err = node.run("--apply")
    assert rc == 0, out + err
    # killed once the old table left its pin, once the first interface
    # switched, and once before the carry
    steps = ((large, "table-retired"), (large, "one-switched"), (large, "before-carry"))
    first, said = resize_killed_at(node, steps, large, 0)
    # old programs pinned, maybe attached: a plan that resized again now
    # would carry only what they recorded until then
    assert [UNFINISHED in err for err in said] == [False, False, True], said
    # killed once the new programs were built (none switched), then resized
    # again on top of that (the plan warns that what the old programs record
    # from the start of that apply until their switch is not carried:
    # nothing here), killed once the old table was carried into the current
    # one, then once the current one was carried into the new
    steps = ((small, "set-built"), (middle, "after-settling"), (middle, "after-carry"))
    _, said = resize_killed_at(node, steps, middle, first)
    assert [UNFINISHED in err for err in said] == [False, True, True], said

