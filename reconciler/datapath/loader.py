"""Build BPF program sets with bcc, once per source+flags hash, and pin them.

A set lives at <root>/progs/<set>-<hash>/<function>. When the directory is
complete, nothing is compiled: that is how an unchanged reconcile stays cheap.
Pins go to a temporary directory first and are renamed into place, so an
interrupted build never leaves a half set under the real name.

bcc compiles a source whole, on one CPU, and the tc datapath's entry
points are large: with a second CPU free, a set of BUILD_PARTS is compiled
in parts at once, the first here, the others by children (part_build.py),
each part leaving the others' functions out. Every map is made before the
parts compile (each part then opens the same ones), and the set's tail-call
table is filled once all parts are pinned.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from reconciler import logsink
from reconciler.assets import BPF_DIR
from reconciler.datapath import ct_handover
from reconciler.datapath.children import Child
from reconciler.datapath.maps import nat_types as nat
from reconciler.datapath.programs import (
    BUILD_PARTS,
    CT_PREV_PINS,
    CT_PREV_SETS,
    JUMP_TABLES,
    LOAD_ATTACH_TYPES,
    SOURCES,
)
from reconciler.datapath.sources import flatten
from reconciler.kernel import bpf as bpfsys

log = logsink.get(__name__)


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


def cpus() -> int:
    return len(os.sched_getaffinity(0))


def parts_of(prog_set: str, functions: Sequence[str]) -> list[tuple[str, ...]]:
    """How `functions` of `prog_set` are compiled: in BUILD_PARTS's parts
    when the set has them and a second CPU can take one, else whole. A
    function no part names goes with the first; an empty part is dropped."""
    if prog_set not in BUILD_PARTS or cpus() < 2:
        return [tuple(functions)]
    named = {name for part in BUILD_PARTS[prog_set] for name in part}
    first, *rest = [tuple(f for f in part if f in functions) for part in BUILD_PARTS[prog_set]]
    first += tuple(f for f in functions if f not in named)
    return [part for part in (first, *rest) if part]


def build(
    root: str,
    prog_set: str,
    phash: str,
    flags: Sequence[str],
    functions: Sequence[str],
    prog_type: str = "SCHED_CLS",
    prev_ct: int | None = None,
    split: bool = True,
    meanwhile: Callable[[], None] | None = None,
) -> Path:
    """Compile, load and pin one program set (no-op when already pinned).
    `prev_ct`: the conntrack table a resize replaces, which the set's
    programs reach until the handover ends (reconciler/datapath/ct_handover.py).
    `split`: compile the set in parts side by side where parts_of says so
    (a caller that builds other sets meanwhile has no CPU to spare).
    `meanwhile`: the caller's other work, run once this process's part is
    pinned, while the children compile theirs (every map is made by then);
    without parts, once the set is built."""
    target = set_dir(root, prog_set, phash)
    if is_built(root, prog_set, phash, functions):
        if meanwhile:
            meanwhile()
        return target
    parts = parts_of(prog_set, functions) if split else [tuple(functions)]
    started = time.monotonic()
    tmp = Path(root) / "progs" / f"tmp-{prog_set}-{phash}-{os.getpid()}"
    helpers: list[Child] = []
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        if prog_set in CT_PREV_SETS:
            ct_handover.stage(tmp, prev_ct)
        if len(parts) > 1:
            # The children start (Python, bcc) while every map is made, the
            # set's own in tmp: the parts, compiled at once, only open them.
            spec = {"root": root, "set_dir": str(tmp), "prog_set": prog_set,
                    "flags": list(flags), "functions": list(functions), "prog_type": prog_type}
            helpers = _start_parts(spec, parts[1:])
        if helpers:
            _make_maps(root, flags, tmp)
            for helper in helpers:
                helper.release()
        else:
            parts = [tuple(functions)]
        with _compiled(root, SOURCES[prog_set], flags, tmp, _others(functions, parts[0])) as bpf:
            _load(bpf, parts[0], prog_type, tmp)
            if meanwhile and helpers:
                meanwhile()
            for helper, part in zip(helpers, parts[1:], strict=True):
                if helper.wait() != 0:  # its error (if any) is raised here
                    log.warning("the compile of %s in a child failed (%s); compiling it here",
                                ", ".join(part), helper.reason())  # fmt: skip
                    for name in part:  # what it pinned before it failed
                        (tmp / name).unlink(missing_ok=True)
                    build_part(root, str(tmp), prog_set, flags, functions, part, prog_type)
            if prog_set in JUMP_TABLES:
                _fill_jumps(bpf[JUMP_TABLES[prog_set][0].encode()].map_fd, tmp,
                            *JUMP_TABLES[prog_set], functions)  # fmt: skip
            if prog_set in CT_PREV_SETS:
                ct_handover.bind(tmp, bpf[CT_PREV_PINS[1].encode()].map_fd, prev_ct)
    except BaseException:
        for helper in helpers:
            helper.kill()
        shutil.rmtree(tmp, ignore_errors=True)  # with the pins made so far
        raise
    finally:
        for helper in helpers:
            helper.close()
    if target.exists():  # a concurrent or interrupted build left one: replace it
        shutil.rmtree(target)
    os.rename(tmp, target)
    if len(parts) > 1:
        log.info("built the %s set in %d parts side by side in %.1fs", prog_set, len(parts),
                 time.monotonic() - started)  # fmt: skip
    elif meanwhile:
        meanwhile()
    return target


PART_CHILD = "reconciler.datapath.part_build"  # a part compiled in a child process


def _start_parts(spec: dict[str, Any], parts: Sequence[Sequence[str]]) -> list[Child]:
    """A child for each of `parts`, held until the maps are made; none if
    one could not be started (the build then compiles the set whole)."""
    started: list[Child] = []
    try:
        for part in parts:
            started.append(Child.start(PART_CHILD, {**spec, "part": list(part)}, held=True))
    except OSError as exc:
        log.warning("no child could be started (%s); compiling the set whole", exc)
        for child in started:
            child.kill()
            child.close()
        return []
    return started


def build_part(
    root: str,
    directory: str,
    prog_set: str,
    flags: Sequence[str],
    functions: Sequence[str],
    part: Sequence[str],
    prog_type: str,
) -> None:
    """Compile the `part` of a set's `functions`, load its programs and pin
    them in `directory`, the build's, whose maps (the set's own there) are
    made already."""
    skip = _others(functions, part)
    with _compiled(root, SOURCES[prog_set], flags, Path(directory), skip) as bpf:
        _load(bpf, part, prog_type, Path(directory))


def _others(functions: Sequence[str], part: Sequence[str]) -> tuple[str, ...]:
    return tuple(f for f in functions if f not in part)


def _load(bpf: Any, names: Sequence[str], prog_type: str, directory: Path) -> None:
    """Load (the verifier runs here) and pin each of `names`."""
    from bcc import BPF

    for name in names:
        kwargs = {}
        if name in LOAD_ATTACH_TYPES:  # sock_addr programs name their hook at load
            kwargs["attach_type"] = LOAD_ATTACH_TYPES[name]
        fn = bpf.load_func(name.encode(), getattr(BPF, prog_type), **kwargs)
        bpfsys.obj_pin(fn.fd, str(directory / name))


SHARED_MAPS_SOURCE = "maps.c"  # every pinned map the sets share, no program


def build_shared_maps(root: str, flags: Sequence[str]) -> None:
    """Create and pin, under <root>/maps, every map the program sets share
    (one that is pinned already is kept): compiled from bpf/maps.c, which
    holds no program. Sets compiled afterwards, side by side, only open them."""
    stage = Path(root) / "progs" / f"tmp-maps-{os.getpid()}"
    try:
        stage.mkdir(parents=True, exist_ok=True)
        ct_handover.stage(stage, None)
        _make_maps(root, flags, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _make_maps(root: str, flags: Sequence[str], directory: Path) -> None:
    """Every map of bpf/maps.c's headers made (or opened): the shared ones
    under <root>/maps, a set's own in `directory` (staged for a resize)."""
    with _compiled(root, SHARED_MAPS_SOURCE, flags, directory):
        pass


@contextlib.contextmanager
def _compiled(
    root: str, source: str, flags: Sequence[str], directory: Path, skip: Sequence[str] = ()
) -> Iterator[Any]:
    """bcc's module of bpf/`source`, without the functions in `skip` (another
    part compiles them). Its shared maps are pinned under <root>/maps, its
    set's own (bpf/lib/set_maps.h) in `directory`, the build's: opened where
    a pin exists, else created and pinned. A source with the conntrack table
    also opens the map of maps for a resize's old table that the build
    staged there (ct_handover.stage; bpf/lib/conntrack.h rcl_ct_prev)."""
    from bcc import BPF

    (Path(root) / "maps").mkdir(parents=True, exist_ok=True)
    pins = [f'-DRCL_SET_DIR="{directory}"', f'-DRCL_CT_PREV_PIN="{directory / CT_PREV_PINS[0]}"']
    text = flatten(BPF_DIR / source)
    cflags = [*flags, f"-I{BPF_DIR}", *pins, *(f"-DRCL_SKIP_{name}" for name in skip)]
    bpf = BPF(text=text.encode(), cflags=cflags)
    try:
        yield bpf
    finally:
        bpf.cleanup()


def _fill_jumps(
    jumps_fd: int, directory: Path, table: str, targets: Sequence[str], built: Sequence[str]
) -> None:
    """Fill the set's tail-call table (pinned in `directory` beside the
    programs by its compile: a program array loses its entries when no file
    descriptor or pin holds it, so the pin keeps the jumps alive as long as
    the set) with the set's own programs, pinned there by whichever part
    compiled them."""
    for index, name in enumerate(targets):
        if name not in built:
            raise ValueError(f"{table}: tail-call target {name} is not built with the set")
        fd = bpfsys.obj_get(str(directory / name))
        try:
            bpfsys.map_update(jumps_fd, nat.U32.pack(index), nat.U32.pack(fd))
        finally:
            bpfsys.close(fd)


def remove(root: str, prog_set: str, phash: str) -> None:
    """Unpin a set; programs still attached somewhere stay alive until detached."""
    shutil.rmtree(set_dir(root, prog_set, phash), ignore_errors=True)
