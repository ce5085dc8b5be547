"""Where the data files the code needs live: the JSON schemas and the BPF sources.

In a source tree they are the repository's top-level `schemas/` and `bpf/`;
an installed package carries them beside its modules (`reconciler/_assets/`).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    installed = _PACKAGE / "_assets" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name


SCHEMA_DIR = _find("schemas")
BPF_DIR = _find("bpf")
