"""Where the data files the code needs live: the JSON schemas and the BPF sources.

In a source tree they are the repository's top-level `schemas/` and `bpf/`;
an installed package carries them beside its modules (`reconciler/_assets/`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    installed = _PACKAGE / "_assets" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


SCHEMA_DIR = _find("schemas")
BPF_DIR = _find("bpf")


def python_files(root: Path) -> list[str]:
    """Every module under `root`, bytecode caches left unvisited: os.walk, as
    pathlib's rglob is the dearer walk and a plan names the engine's code
    version on every run."""
    import os

    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if d != "__pycache__"]
        found += [os.path.join(directory, f) for f in files if f.endswith(".py")]
    return found


def code_signature(paths: Iterable[str | Path]) -> str:
    """A short hash naming one version of these files, from their names,
    sizes and modification times: the test Python's own bytecode cache
    makes of a module's source, and no read of their bytes (the engine's
    105 modules are hashed on every plan)."""
    import hashlib
    import os

    h = hashlib.sha256()
    for path in sorted(map(str, paths)):
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
