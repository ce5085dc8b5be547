"""Conntrack's handover from the old table to the new one in a resize.

A resize builds programs with a new table, then switches the interfaces'
filters to them one at a time: meanwhile some interfaces run programs that
know only the old table. The new programs also reach the old one
(bpf/lib/conntrack.h rcl_ct_prev): a lookup that misses in the new table asks
the old, and every entry written to the new table is written to the old one
too. A flow whose first packet and reply meet programs of different tables
is found either way, in both directions, whatever the order of the switch.

This module gives a build that reference (`stage` before bcc compiles the
set, `bind` after) and ends it (`release`) once only the new programs are
attached: the entries the old table holds and the new one lacks are carried
over through the datapath's own claim (the set's rcl_ct_adopt_slot, run as a
test), then the reference is dropped, and the old table is freed with the
last program that held it. A carried entry takes a free way of its bucket,
or the place of one seen less recently than itself, never of a more recent
one: most of them are flows the old programs saw during the build, long
over, and a bucket they filled would evict the live flows' entries.

An apply may be killed at any step of this, and the next apply finishes
it: the old table stays reachable until its entries are carried. Between
leaving its pin in maps/ and the new programs' build it is pinned at
handover/rcl_ct (`retire`: one rename, so one of the two pins holds it at
every moment), where the next apply's build finds it (`retired`) if the
killed one never got that far; the built sets hold it in rcl_ct_prev; and
the last build of the old programs is unpinned only after `release` has
carried its entries (the executor calls it first), so a killed release
leaves that build for the next plan to remove, and the release runs again.
`release` drops the retired pin after the carry and before the sets'
references: whichever of them a kill leaves still reaches the old table.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from reconciler import logsink
from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nat
from reconciler.datapath.programs import CT_HANDOVER_SETS, CT_PREV_PINS
from reconciler.kernel import bpf as bpfsys

log = logsink.get(__name__)

PREV, PREV_N = CT_PREV_PINS  # the map of maps (slot 0: the old table); its bucket count
ADOPT_PROGRAM = "rcl_ct_adopt_slot"
TC_SET = CT_HANDOVER_SETS[0]  # the set that holds ADOPT_PROGRAM
_ARRAY, _ARRAY_OF_MAPS = 2, 12  # BPF_MAP_TYPE_*
_ZERO = nat.U32.pack(0)
RETIRED = ("handover", ct_table.MAP)  # under the bpffs root: a resize's old table


def retired_pin(root: str) -> Path:
    return Path(root, *RETIRED)


def retire(root: str) -> int:
    """Move the conntrack table from its pin in maps/ (where the new
    programs' build makes the new one) to the retired pin, in one rename, and
    return a descriptor of it: a kill at any moment leaves it pinned."""
    pin = retired_pin(root)
    pin.parent.mkdir(exist_ok=True)
    os.rename(Path(root, "maps", ct_table.MAP), pin)
    return bpfsys.obj_get(str(pin))


def retired(root: str) -> int | None:
    """A descriptor of the table a resize retired and no release has carried
    yet (an apply killed in the resize), or None."""
    try:
        return bpfsys.obj_get(str(retired_pin(root)))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return None


def stage(directory: Path, prev_fd: int | None) -> None:
    """Pin at directory/rcl_ct_prev the map of maps a build binds (the
    path it is compiled with: bpf/lib/conntrack.h RCL_CT_PREV_PIN): holding
    the old table `prev_fd`, or empty. Its inner maps must match the one it
    is created with in size, so it is created with the old table itself, or
    (empty) with a table of one bucket."""
    pin = directory / PREV
    pin.unlink(missing_ok=True)
    template = prev_fd
    if template is None:
        template = bpfsys.map_create(
            _ARRAY, "rcl_ct_none", 4, ct_table.BUCKET, 1, ct_table.MMAPABLE
        )
    try:
        outer = bpfsys.map_create(_ARRAY_OF_MAPS, PREV, 4, 4, 1, inner_map_fd=template)
    finally:
        if prev_fd is None:
            bpfsys.close(template)
    try:
        if prev_fd is not None:
            bpfsys.map_update(outer, _ZERO, nat.U32.pack(prev_fd))
        bpfsys.obj_pin(outer, str(pin))
    finally:
        bpfsys.close(outer)


def bind(set_dir: Path, count_fd: int, prev_fd: int | None) -> None:
    """After the build, which staged its map of maps in `set_dir`: the old
    table's bucket count (0: none) written into the set's rcl_ct_prev_n,
    pinned beside the programs and the map of maps (the programs hold both;
    the loader's compiles pin it there themselves, bpf/lib/set_maps.h)."""
    buckets = bpfsys.map_info(prev_fd).max_entries if prev_fd is not None else 0
    bpfsys.map_update(count_fd, _ZERO, nat.U32.pack(buckets))
    if not (set_dir / PREV_N).exists():
        bpfsys.obj_pin(count_fd, str(set_dir / PREV_N))


def pending(set_dir: Path) -> bool:
    """Do this set's programs still reach an old table?"""
    try:
        fd = bpfsys.obj_get(str(set_dir / PREV_N))
    except OSError:
        return False
    try:
        value = bpfsys.map_lookup(fd, _ZERO)
    finally:
        bpfsys.close(fd)
    return isinstance(value, bytes) and nat.U32.unpack(value)[0] != 0


def release(root: str, leaving: Path | None = None) -> int | None:
    """End the handover once one build of the tc datapath is left under root
    (one tc set, at most one host set: CT_HANDOVER_SETS), not counting the
    set directory `leaving` (one about to be unpinned: its programs are
    attached nowhere), and one of them still reaches an old table: carry
    what only the old table holds into the new one (through the tc set's
    adopt program), drop the retired pin, then every set's reference.
    Returns how many entries were carried, or None when there was nothing to
    end. While an older build is pinned too, its programs may still be
    attached and write only the old table: the handover goes on."""
    progs = Path(root, "progs")
    builds = {name: sorted(d for d in progs.glob(f"{name}-*") if d != leaving)
              for name in CT_HANDOVER_SETS}  # fmt: skip
    if len(builds[TC_SET]) != 1 or any(len(dirs) > 1 for dirs in builds.values()):
        return None
    reaching = [dirs[0] for dirs in builds.values() if dirs and pending(dirs[0])]
    if not reaching:
        _abandon_retired(root)
        return None
    fds: list[int] = []
    try:
        carried = 0
        inner = bpfsys.map_lookup(_opened(fds, bpfsys.obj_get(str(reaching[0] / PREV))), _ZERO)
        if isinstance(inner, bytes):
            old = _opened(fds, bpfsys.map_fd_by_id(nat.U32.unpack(inner)[0]))
            new = _opened(fds, bpfsys.obj_get(str(Path(root) / "maps" / ct_table.MAP)))
            adopt = _opened(fds, bpfsys.obj_get(str(builds[TC_SET][0] / ADOPT_PROGRAM)))
            carried = carry(old, new, adopt)
        forget(root)  # the sets still hold it
        for set_dir in reaching:
            _drop_reference(set_dir)
    finally:
        for fd in fds:
            bpfsys.close(fd)
    log.info("conntrack handover ended: %d entr(ies) carried from the old table", carried)
    return carried


def settle(root: str) -> None:
    """Before a resize retires the table: end what an earlier resize left
    (`release`). Where it cannot end (that resize was killed with programs of
    its old table still pinned, maybe attached), its old table is carried
    into the current one now, through the current programs that reach it,
    and its pin dropped (those sets hold it until they go): what those old
    programs record from now until their interfaces switch to this resize's
    programs is in that table alone, which no program of this resize
    reaches, and is lost."""
    release(root)
    old = retired(root)
    if old is None:
        return
    fds = [old]
    try:
        old_id = bpfsys.map_info(old).id
        carried = 0
        for set_dir in sorted(Path(root, "progs").glob(f"{TC_SET}-*")):
            if _reached_table(set_dir) == old_id:
                new = _opened(fds, bpfsys.obj_get(str(Path(root) / "maps" / ct_table.MAP)))
                adopt = _opened(fds, bpfsys.obj_get(str(set_dir / ADOPT_PROGRAM)))
                carried = carry(old, new, adopt)
                break
        log.warning(
            "conntrack: an earlier resize was interrupted before its old table's programs "
            "were all switched: %d entr(ies) of that table carried now; what those programs, "
            "if still attached, record until this apply switches their interfaces is lost",
            carried,
        )
        forget(root)
    finally:
        for fd in fds:
            bpfsys.close(fd)


def _reached_table(set_dir: Path) -> int | None:
    """The id of the old table the set's programs reach, or None."""
    if not pending(set_dir):
        return None
    fd = bpfsys.obj_get(str(set_dir / PREV))
    try:
        inner = bpfsys.map_lookup(fd, _ZERO)
    finally:
        bpfsys.close(fd)
    return nat.U32.unpack(inner)[0] if isinstance(inner, bytes) else None


def _abandon_retired(root: str) -> None:
    """A retired table that no set left reaches has no program to carry it
    (its resize never built one that does): say how much goes with it."""
    old = retired(root)
    if old is None:
        return
    try:
        count = sum(1 for _ in ct_table.live(ct_table.table(old)))
    finally:
        bpfsys.close(old)
    log.warning("conntrack: the old table of an interrupted resize is reached by no "
                "program set left: its %d entr(ies) are dropped", count)  # fmt: skip
    forget(root)


def forget(root: str) -> None:
    """Unpin the retired table (carried, or its conntrack table removed),
    and its directory with it."""
    pin = retired_pin(root)
    pin.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        pin.parent.rmdir()


def _drop_reference(set_dir: Path) -> None:
    """The set's programs no longer reach the old table: its bucket count
    zeroed first (they stop asking), then the map of maps emptied."""
    fds: list[int] = []
    try:
        outer = _opened(fds, bpfsys.obj_get(str(set_dir / PREV)))
        count = _opened(fds, bpfsys.obj_get(str(set_dir / PREV_N)))
        bpfsys.map_update(count, _ZERO, _ZERO)
        with contextlib.suppress(OSError):
            bpfsys.map_delete(outer, _ZERO)
    finally:
        for fd in fds:
            bpfsys.close(fd)


def carry(old_fd: int, new_fd: int, adopt_fd: int) -> int:
    """Carry every entry of the table `old_fd` that the table `new_fd` needs
    (`needs_carry`) through the adopt program, where its bucket has room for
    it (rcl_ct_adopt_request). Returns how many were carried."""
    have = {key: value for key, (_i, _v, value) in ct_table.entries(new_fd).items()}
    carried = 0
    for index, ver, key, value in ct_table.live(ct_table.table(old_fd)):
        if needs_carry(value, have.get(key)) and adopt(adopt_fd, index, ver):
            carried += 1
    return carried


def needs_carry(old: bytes, new: bytes | None) -> bool:
    """Does the new table need the old table's entry for a key (`new`: what
    it holds for that key, if anything)? When it lacks the key, or holds it
    only as seen less recently (an earlier flow of the same addresses and
    ports), or holds the same flow (created at the same time) without state
    the old programs recorded since the copy: the first reply's
    established mark, a FIN or RST, a policy side's approval."""
    if new is None:
        return True
    seen, created = nat.CT_VAL_LAST_SEEN, nat.CT_VAL_CREATED
    if seen.unpack_from(new)[0] < seen.unpack_from(old)[0]:
        return True
    flags = nat.CT_FLAGS_OFFSET
    same_flow = created.unpack_from(new)[0] == created.unpack_from(old)[0]
    return same_flow and bool(old[flags] & ~new[flags])


def adopt(prog_fd: int, index: int, ver: int) -> bool:
    """Carry the old table's entry at `index` (if still at version `ver`):
    copied, or its state flags added to the same flow's entry here."""
    return bpfsys.prog_test_run(prog_fd, ct_table.kill_request(index, ver)).retval in (1, 3)


def _opened(fds: list[int], fd: int) -> int:
    fds.append(fd)
    return fd
