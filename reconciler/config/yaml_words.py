"""Values as a YAML file writes them, for messages about that file: it says
null, true and {a: 1}, where Python's repr says None, True and {'a': 1}."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

# A mapping key that YAML reads back as the same string when written bare.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
# Bare words YAML (1.1 or 1.2) reads as something other than a string.
_NOT_STRINGS = {"null", "true", "false", "yes", "no", "on", "off", "y", "n"}
# A compound value is cut to about this many characters: a message names it,
# it does not reprint the document.
WIDTH = 60


def scalar(value: Any) -> str:
    """One scalar in YAML's words; a string is quoted as YAML quotes it (single
    quotes, or double quotes with escapes when it holds unprintable characters)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        return json.dumps(value, ensure_ascii=False)
    return repr(value)  # nothing YAML loads; said as Python says it


def _key(key: Any) -> str:
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) and key.lower() not in _NOT_STRINGS:
        return key
    return scalar(key)


def _joined(items: Iterable[str], width: int) -> str:
    """Items joined by ", " until the next would pass `width`; "..." stands for the rest."""
    out: list[str] = []
    length = 0
    for item in items:
        if out and length + len(item) > width:
            out.append("...")
            break
        out.append(item)
        length += len(item) + 2
    return ", ".join(out)


def flow(value: Any, width: int = WIDTH) -> str:
    """A value in YAML's flow style ({a: 1, b: [x]}), long ones cut with "..."."""
    if isinstance(value, Mapping):
        pairs = (f"{_key(k)}: {flow(v, width)}" for k, v in value.items())
        return "{" + _joined(pairs, width) + "}"
    if isinstance(value, list | tuple):
        return "[" + _joined((flow(v, width) for v in value), width) + "]"
    return scalar(value)
