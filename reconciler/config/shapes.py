"""A document's values read loosely, by code that runs on input whose odd
shapes are reported elsewhere (the schema, or the caller's own findings):
the mapping or list the document has there, else an empty one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def items(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else ()
