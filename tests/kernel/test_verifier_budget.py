"""The verifier's budget: every shipped program, built as the reconciler
builds it, must leave room below the kernel's 1,000,000-instruction limit.

A program that crosses the limit does not load at all, so growth here is
found by this test, not by a node that can no longer apply. The tc ingress
program is the big one (parse, NAT, conntrack, policy); unrolled loops over
conntrack ways are what made it grow before (bpf/lib/conntrack.h)."""

from __future__ import annotations

import re
import subprocess

import pytest

from reconciler.compile.programs import build_flags
from reconciler.config import felix
from reconciler.datapath import loader as build
from reconciler.datapath.programs import (
    CONNECT_PROGRAMS,
    HOST_PROGRAMS,
    PROG_TYPES,
    TC_PROGRAMS,
    XDP_PROGRAMS,
)
from reconciler.kernel import bpf as bpfsys
from tests.kernel.rcl_bcc import private_pin_dir, skip_unless_kernel

pytestmark = pytest.mark.kernel

VERIFIER_LIMIT = 1_000_000
# Half the limit: what a new feature in the datapath may still spend.
BUDGET = VERIFIER_LIMIT // 2

SETS = {
    "tc": TC_PROGRAMS,
    "host": HOST_PROGRAMS,
    "connect": tuple(CONNECT_PROGRAMS.values()),
    "xdp": XDP_PROGRAMS,
}


@pytest.mark.parametrize("prog_set", sorted(SETS))
def test_programs_stay_within_half_the_verifier_limit(prog_set: str) -> None:
    skip_unless_kernel()
    with private_pin_dir() as root:
        flags = build_flags(str(root), felix.effective_config([], "node"), build.kernel_hz())
        target = build.build(
            str(root), prog_set, "budget", flags, SETS[prog_set], PROG_TYPES[prog_set]
        )
        spent: dict[str, int] = {}
        for name in SETS[prog_set]:
            fd = bpfsys.obj_get(str(target / name))
            try:
                spent[name] = bpfsys.prog_info(fd).verified_insns
            finally:
                bpfsys.close(fd)
    assert all(n > 0 for n in spent.values()), spent  # the kernel reported a count
    over = {name: n for name, n in spent.items() if n > BUDGET}
    assert not over, f"verifier examined {over} instructions; budget {BUDGET:,} per program"


# The tc ingress program's stack: clang refuses a frame past 512 bytes, and
# the program inlines the whole NAT path, the policy step's start and the
# reverse-path check. Large buffers live in per-CPU scratch maps; this keeps
# room for the next feature (and for the bench's candidate layouts, which
# build this program with changes of their own).
STACK_ROOM = 464


def test_tc_ingress_keeps_room_on_its_stack() -> None:
    skip_unless_kernel()
    with private_pin_dir() as root:
        flags = build_flags(str(root), felix.effective_config([], "node"), build.kernel_hz())
        target = build.build(str(root), "tc", "stack", flags, TC_PROGRAMS, PROG_TYPES["tc"])
        xlated = subprocess.run(
            ["bpftool", "prog", "dump", "xlated", "pinned", str(target / "rcl_tc_ingress")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    # every stack slot is addressed from r10: (r10 -N) or rX += -N after rX = r10
    depths = [int(n) for n in re.findall(r"\(r10 -(\d+)\)|r\d+ \+= -(\d+)", xlated) for n in n if n]
    assert depths, xlated[:500]
    assert max(depths) <= STACK_ROOM, f"rcl_tc_ingress reaches {max(depths)} bytes into its stack"
