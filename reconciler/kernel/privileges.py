"""Plan, apply and status read and change BPF and network state: they need
the capabilities for it, checked before anything is read or created (an
unprivileged plan sees none of our objects and would print a bogus plan,
and would create the bpffs root as the wrong user)."""

from __future__ import annotations

import errno
import os

CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF = 12, 21, 39


def effective_caps(status: str = "/proc/self/status") -> int:
    try:
        with open(status) as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def missing(caps: int) -> list[str]:
    out = []
    if not caps & (1 << CAP_NET_ADMIN):
        out.append("CAP_NET_ADMIN")
    if not caps & (1 << CAP_SYS_ADMIN):  # bpffs pins, cgroup links, namespaces
        out.append("CAP_SYS_ADMIN")
    return out


def require_privileges() -> None:
    """PermissionError (reported as 'need root') unless we hold them."""
    lacking = missing(effective_caps())
    if lacking:
        raise PermissionError(errno.EPERM, f"uid {os.geteuid()} lacks {', '.join(lacking)}")
