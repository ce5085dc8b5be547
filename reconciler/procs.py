"""Forked helpers die with the process that forked them.

A pool worker or a prefetching child whose parent was killed (kill -9, OOM)
would otherwise live on: waiting on a queue nobody feeds, holding memory,
and, before the lock was made close-on-fork, holding the apply lock.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a freshly forked child: be killed when `parent` dies, and leave at
    once if it already has (it may have died before the request was made)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)
