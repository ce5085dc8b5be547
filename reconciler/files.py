"""Files written whole or not at all."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_atomically(path: Path, text: str, durable: bool = False) -> None:
    """`path` replaced by `text`: written into a temporary file beside it,
    then renamed over it, so a reader never sees half of it; the temporary
    file is removed if that fails (OSError). `durable`: the file and the
    rename are on disk before this returns (fsync)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
