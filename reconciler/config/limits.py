"""Limits on input, enforced before work is spent on it.

The config tree is written by many people and read by an agent that runs as
root, so every dimension of a file is bounded and a file past a bound is an
error at `file:line`, never a long parse, a deep recursion or a blow-up in
memory. The bounds are far above anything Calico or Kubernetes would store:
the API server refuses objects over ~1.5 MB and annotations over 256 KiB.
"""

from __future__ import annotations

MAX_FILE_BYTES = 2 * 1024 * 1024  # one file as read from the tree
MAX_DEPTH = 64  # nested collections in one document
MAX_NODES_PER_FILE = 200_000  # values in one file, counting every alias expansion
MAX_LIST_ITEMS = 50_000  # items in one sequence or pairs in one mapping
MAX_SCALAR_BYTES = 256 * 1024  # one string (as Kubernetes caps annotations)
MAX_INT = 2**63 - 1  # YAML integers are int64 in Kubernetes and Calico
MIN_INT = -(2**63)
MAX_INT_DIGITS = 40  # a longer literal is refused before converting it
MAX_SELECTOR_DEPTH = 1_000  # nested parentheses in a selector (Calico parses 500)
MAX_FILES = 100_000  # YAML files in one source


def human_bytes(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"
