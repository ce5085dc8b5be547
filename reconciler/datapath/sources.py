"""BPF C sources as bcc must see them.

bcc 0.26 rewrites map calls (`m.lookup(&k)`) only in the main source file, not
in `#include`d headers, so local includes are inlined once, with `#line`
markers so compiler errors still name the real file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def flatten(path: Path, seen: set[Path] | None = None, text: str | None = None) -> str:
    """Source text with every local `#include "x.h"` inlined once.

    `text` stands in for the file's content (for a test's own entry program
    whose includes resolve relative to `path`'s directory)."""
    seen = set() if seen is None else seen
    out: list[str] = [f'#line 1 "{path}"']
    lines = (path.read_text() if text is None else text).splitlines()
    for n, line in enumerate(lines, start=1):
        m = _INCLUDE.match(line)
        inc = (path.parent / m.group(1)).resolve() if m else None
        if inc is None or not inc.exists():
            out.append(line)
            continue
        if inc not in seen:
            seen.add(inc)
            out.append(flatten(inc, seen))
        out.append(f'#line {n + 1} "{path}"')
    return "\n".join(out)
