"""pyroute2 handles, optionally inside a named network namespace."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def open_route(netns: str | None = None) -> Any:
    """A pyroute2 handle in `netns` (None: this namespace); the caller closes it."""
    # pyroute2 loads only when links are changed or followed, though every
    # run imports this module: bench/plan_bench.py's no-op plan needs none.
    from pyroute2 import IPRoute, NetNS

    if not netns:
        return IPRoute()
    try:
        return NetNS(netns, flags=0)  # pyroute2 creates a missing namespace unless told not to
    except FileNotFoundError:
        from reconciler.kernel.rtnetlink import missing_netns

        raise missing_netns(netns) from None


@contextmanager
def route(netns: str | None = None) -> Iterator[Any]:
    ipr = open_route(netns)
    try:
        yield ipr
    finally:
        ipr.close()


LINK_EVENTS = frozenset({"RTM_NEWLINK", "RTM_DELLINK", "RTM_NEWADDR", "RTM_DELADDR"})


def link_changes(netns: str | None = None) -> Iterator[frozenset[str]]:
    """Yields once per batch of netlink messages that add, remove or
    re-address a link: the names of the links the batch's RTM_NEWLINK
    messages announce (new, or changed); blocks in the kernel in between."""
    with route(netns) as ipr:
        ipr.bind()
        while True:
            msgs = [m for m in ipr.get() if m.get("event") in LINK_EVENTS]
            if msgs:
                yield frozenset(
                    str(name)
                    for m in msgs
                    if m.get("event") == "RTM_NEWLINK" and (name := m.get_attr("IFLA_IFNAME"))
                )
