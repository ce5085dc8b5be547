"""The installed version, for --version, plans and status records."""

from __future__ import annotations

from functools import cache
from importlib import metadata

DISTRIBUTION = "calico-gitops-reconciler"


@cache
def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "0+source"
