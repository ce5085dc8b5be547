"""pyroute2 handles, optionally inside a named network namespace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def route(netns: str | None = None) -> Iterator[Any]:
    # pyroute2 loads only when links are changed or followed, though every
    # run imports this module: bench/plan_bench.py's no-op plan needs none.
    from pyroute2 import IPRoute, NetNS

    ipr = NetNS(netns) if netns else IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


LINK_EVENTS = frozenset({"RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWADDR", "RTM_DELADDR"})


def link_changes(netns: str | None = None) -> Iterator[None]:
    """Yields once per batch of netlink messages that add, remove or
    re-address a link; blocks in the kernel in between."""
    with route(netns) as ipr:
        ipr.bind()
        while True:
            if any(msg.get("event") in LINK_EVENTS for msg in ipr.get()):
                yield None
