"""The installed version, for --version, plans and status records.

Every plan carries the version, so this is on the path of a no-op plan:
it reads the one METADATA file of our distribution from the sys.path
entries instead of importing importlib.metadata (which pulls in the email
and zipfile packages). importlib.metadata stays the fallback for any
install this does not recognise."""

from __future__ import annotations

import os
import sys
from functools import cache

DISTRIBUTION = "calico-gitops-reconciler"
SOURCE_TREE = "0+source"
_PREFIX = DISTRIBUTION.replace("-", "_") + "-"


def from_metadata_dir(entry: str) -> str | None:
    """The Version field of our `.dist-info` in the directory `entry`, if
    there is exactly one; None when there is none or it cannot be read."""
    try:
        names = [n for n in os.listdir(entry) if n.lower().startswith(_PREFIX)]
        names = [n for n in names if n.endswith(".dist-info")]
    except OSError:
        return None
    if len(names) != 1:
        return None
    try:
        with open(os.path.join(entry, names[0], "METADATA"), encoding="utf-8") as f:
            for line in f:
                if not line.strip():  # the end of the headers
                    return None
                key, _, value = line.partition(":")
                if key.strip().lower() == "version":
                    return value.strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    return None


@cache
def version() -> str:
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            found = from_metadata_dir(entry)
            if found is not None:
                return found
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        return SOURCE_TREE
