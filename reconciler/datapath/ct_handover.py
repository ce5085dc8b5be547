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
"""

from __future__ import annotations

import contextlib
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


def release(root: str) -> int | None:
    """End the handover once one build of the tc datapath is left under root
    (one tc set, at most one host set: CT_HANDOVER_SETS) and one of them
    still reaches an old table: carry what only the old table holds into
    the new one (through the tc set's adopt program), then drop every set's
    reference. Returns how many entries were carried, or None when there was
    nothing to end. While an older build is pinned too, its programs may
    still be attached and write only the old table: the handover goes on."""
    builds = {name: sorted(Path(root, "progs").glob(f"{name}-*")) for name in CT_HANDOVER_SETS}
    if len(builds[TC_SET]) != 1 or any(len(dirs) > 1 for dirs in builds.values()):
        return None
    reaching = [dirs[0] for dirs in builds.values() if dirs and pending(dirs[0])]
    if not reaching:
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
        for set_dir in reaching:
            _drop_reference(set_dir)
    finally:
        for fd in fds:
            bpfsys.close(fd)
    log.info("conntrack handover ended: %d entr(ies) carried from the old table", carried)
    return carried


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
