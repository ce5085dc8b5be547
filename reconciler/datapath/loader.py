"""Build BPF program sets with bcc, once per source+flags hash, and pin them.

A set lives at <root>/progs/<set>-<hash>/<function>. When the directory is
complete, nothing is compiled: that is how an unchanged reconcile stays cheap.
Pins go to a temporary directory first and are renamed into place, so an
interrupted build never leaves a half set under the real name.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from reconciler.assets import BPF_DIR
from reconciler.datapath import ct_handover
from reconciler.datapath.programs import (
    CT_PREV_PINS,
    CT_PREV_SETS,
    JUMP_TABLES,
    LOAD_ATTACH_TYPES,
    SOURCES,
)
from reconciler.datapath.sources import flatten
from reconciler.kernel import bpf as bpfsys


def source_digest() -> str:
    """Hash of every file under bpf/: any change means a new program set."""
    digest = hashlib.sha256()
    for path in sorted(BPF_DIR.rglob("*")):
        if path.is_file() and path.suffix in (".c", ".h"):
            digest.update(str(path.relative_to(BPF_DIR)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


KERNEL_CONFIGS = ("/proc/config.gz", f"/boot/config-{os.uname().release}")


@functools.cache
def kernel_hz(paths: Sequence[str] = KERNEL_CONFIGS) -> int | None:
    """The running kernel's CONFIG_HZ, from its config (the first of `paths`
    that can be read), or None. Debian's headers, which bcc compiles against,
    may not be this kernel's, so their CONFIG_HZ is not trusted."""
    for path in paths:
        try:
            with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as lines:
                for line in lines:
                    if line.startswith("CONFIG_HZ="):
                        value = line.partition("=")[2].strip()
                        return int(value) if value.isdigit() and int(value) > 0 else None
        except (OSError, EOFError, ValueError):
            continue
    return None


def set_dir(root: str, prog_set: str, phash: str) -> Path:
    return Path(root) / "progs" / f"{prog_set}-{phash}"


def is_built(root: str, prog_set: str, phash: str, functions: Sequence[str]) -> bool:
    d = set_dir(root, prog_set, phash)
    jumps = [JUMP_TABLES[prog_set][0]] if prog_set in JUMP_TABLES else []
    prev = CT_PREV_PINS if prog_set in CT_PREV_SETS else ()
    return all((d / name).exists() for name in (*functions, *jumps, *prev))


def build(
    root: str,
    prog_set: str,
    phash: str,
    flags: Sequence[str],
    functions: Sequence[str],
    prog_type: str = "SCHED_CLS",
    prev_ct: int | None = None,
) -> Path:
    """Compile, load and pin one program set (no-op when already pinned).
    `prev_ct`: the conntrack table a resize replaces, which the set's
    programs reach until the handover ends (reconciler/datapath/ct_handover.py)."""
    target = set_dir(root, prog_set, phash)
    if is_built(root, prog_set, phash, functions):
        return target
    # bcc loads only when something must be compiled: in bench/plan_bench.py's
    # no-op plan and bench/nat_bench.py's one-change apply nothing is.
    from bcc import BPF

    tmp = Path(root) / "progs" / f"tmp-{prog_set}-{phash}-{os.getpid()}"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        stage = tmp if prog_set in CT_PREV_SETS else None
        with _compiled(root, SOURCES[prog_set], flags, stage, prev_ct) as bpf:
            fds: dict[str, int] = {}
            for name in functions:
                kwargs = {}
                if name in LOAD_ATTACH_TYPES:  # sock_addr programs name their hook at load
                    kwargs["attach_type"] = LOAD_ATTACH_TYPES[name]
                fn = bpf.load_func(name.encode(), getattr(BPF, prog_type), **kwargs)
                bpfsys.obj_pin(fn.fd, str(tmp / name))
                fds[name] = fn.fd
            if prog_set in JUMP_TABLES:
                _fill_jumps(bpf, tmp, *JUMP_TABLES[prog_set], fds)
            if prog_set in CT_PREV_SETS:
                count = bpf[CT_PREV_PINS[1].encode()]
                ct_handover.bind(tmp, count.map_fd, prev_ct)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # with the pins made so far
        raise
    if target.exists():  # a concurrent or interrupted build left one: replace it
        shutil.rmtree(target)
    os.rename(tmp, target)
    return target


SHARED_MAPS_SOURCE = "maps.c"  # every pinned map the sets share, no program


def build_shared_maps(root: str, flags: Sequence[str]) -> None:
    """Create and pin, under <root>/maps, every map the program sets share
    (one that is pinned already is kept): compiled from bpf/maps.c, which
    holds no program. Sets compiled afterwards, side by side, only open them."""
    stage = Path(root) / "progs" / f"tmp-maps-{os.getpid()}"
    try:
        stage.mkdir(parents=True, exist_ok=True)
        with _compiled(root, SHARED_MAPS_SOURCE, flags, stage, None):
            pass
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def _compiled(
    root: str, source: str, flags: Sequence[str], stage: Path | None, prev_ct: int | None
) -> Iterator[Any]:
    """bcc's module of bpf/`source`, its shared maps pinned under
    <root>/maps (opened where a pin exists, else created and pinned). A
    source with the conntrack table also needs its map of maps for a
    resize's old table (bpf/lib/conntrack.h rcl_ct_prev), holding `prev_ct`
    or nothing: staged in `stage`, a directory of this build's own, so
    builds side by side never share one."""
    from bcc import BPF

    (Path(root) / "maps").mkdir(parents=True, exist_ok=True)
    prev = []
    if stage is not None:
        ct_handover.stage(stage, prev_ct)
        prev = [f'-DRCL_CT_PREV_PIN="{stage / CT_PREV_PINS[0]}"']
    text = flatten(BPF_DIR / source)
    bpf = BPF(text=text.encode(), cflags=[*flags, f"-I{BPF_DIR}", *prev])
    try:
        yield bpf
    finally:
        bpf.cleanup()


def _fill_jumps(
    bpf: object, target: Path, table: str, targets: Sequence[str], fds: dict[str, int]
) -> None:
    """Fill the set's tail-call table with its own programs and pin it beside
    them: a program array loses its entries when no file descriptor or pin
    holds it, so the pin keeps the jumps alive as long as the set."""
    import ctypes

    jumps = bpf[table.encode()]  # type: ignore[index]
    for index, name in enumerate(targets):
        if name not in fds:
            raise ValueError(f"{table}: tail-call target {name} is not built with the set")
        jumps[ctypes.c_int(index)] = ctypes.c_int(fds[name])
    bpfsys.obj_pin(jumps.map_fd, str(target / table))


def remove(root: str, prog_set: str, phash: str) -> None:
    """Unpin a set; programs still attached somewhere stay alive until detached."""
    shutil.rmtree(set_dir(root, prog_set, phash), ignore_errors=True)
