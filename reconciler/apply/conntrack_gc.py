"""Conntrack hygiene when backends leave.

The datapath trusts a conntrack entry for the life of its flow (so flows to
surviving backends never move when ordinals shift). When the reconciler
removes backends, it therefore removes the conntrack and affinity entries that
still point at a backend no service has any more, the way Calico's conntrack
scanner does; new packets of those flows are then balanced afresh.

Connected UDP sockets balanced at connect time talk to the backend directly
and never pass a NAT lookup again: those pointing at a departed backend are
destroyed (SOCK_DESTROY, via `ss -K`), so the application sees an error and
reconnects through the load balancer instead of sending into the void.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nat
from reconciler.kernel import bpf as bpfsys

Backend = tuple[int, bytes, bytes]  # svc_id, ip (network order), port (network order)


def live_backends(
    table: Iterable[tuple[bytes, bytes]], services: set[int] | None = None
) -> set[Backend]:
    """Backends in a backend table (the map's items, or the applied desired
    table), optionally only those of some services."""
    live = set()
    for key, value in table:
        svc_id, _ordinal = nat.BE_KEY.unpack(key)
        if services is None or svc_id in services:
            ip, port, _flags = nat.BE_VAL.unpack(value)
            live.add((svc_id, ip, port))
    return live


def backends_of(table: Mapping[bytes, bytes], services: Iterable[int]) -> list[tuple[bytes, bytes]]:
    """The entries of some services in a desired backend table, found by key
    rather than by a scan of 100,000 entries: a service's ordinals run from 0
    without gaps (reconciler.compile.services numbers its list with enumerate)."""
    found = []
    for svc_id in services:
        ordinal = 0
        while (value := table.get(key := nat.BE_KEY.pack(svc_id, ordinal))) is not None:
            found.append((key, value))
            ordinal += 1
    return found


def clean_conntrack(
    ct_fd: int,
    kill_fd: int,
    live: set[Backend],
    aff_fd: int | None = None,
    services: set[int] | None = None,
) -> int:
    """Remove conntrack (and affinity) entries whose backend is not live; with
    `services`, only entries of those services are judged. `kill_fd` is the
    datapath's rcl_ct_kill_slot program: an entry is removed only if its slot
    still holds what was read (reconciler/datapath/conntrack.py). Returns how many
    conntrack entries were removed."""
    removed = 0
    for index, ver, _key, value in ct_table.live(ct_table.table(ct_fd), services):
        fields = nat.CT_VAL.unpack(value)
        if fields[8] not in (1, 2):  # RCL_CT_FORWARD, RCL_CT_REVERSE
            continue  # a policy entry: no backend of ours
        svc_id, be_ip, be_port = fields[2], fields[5], fields[7]
        if (svc_id, be_ip, be_port) not in live and ct_table.kill(kill_fd, index, ver):
            removed += 1
    if aff_fd is not None:
        for key, value in bpfsys.map_entries(aff_fd):
            _client, svc_id = nat.AFF_KEY.unpack(key)
            if services is not None and svc_id not in services:
                continue
            _ts, ip, port, _ordinal = nat.AFF_VAL.unpack(value)
            if (svc_id, ip, port) not in live:
                bpfsys.map_delete(aff_fd, key)
    return removed


def cgroup_netns(cgroup: str) -> set[str]:
    """Network namespaces (as /proc/<pid>/ns/net paths) of processes in a cgroup tree."""
    found: dict[tuple[int, int], str] = {}
    for procs in Path(cgroup).rglob("cgroup.procs"):
        try:
            pids = procs.read_text().split()
        except OSError:
            continue
        for pid in pids:
            path = f"/proc/{pid}/ns/net"
            try:
                st = os.stat(path)
            except OSError:
                continue
            found.setdefault((st.st_dev, st.st_ino), path)
    return set(found.values())


# Departed backends one `ss -K` asks about: its filter ORs them, so a big
# change costs a few processes per namespace, not one per backend.
SS_BATCH = 256


def ss_filter(targets: Sequence[tuple[str, int]]) -> list[str]:
    """An ss filter, as argv words, matching sockets connected to any of `targets`."""
    words: list[str] = []
    for ip, port in targets:
        words += [*(["or"] if words else []), "(", "dst", ip, "and", "dport", "=", str(port), ")"]
    return words


def destroy_udp_sockets(namespaces: Iterable[str], backends: Iterable[tuple[str, int]]) -> int:
    """Destroy UDP sockets connected to departed backends in each network
    namespace (a path nsenter takes): those of processes under the
    connect-time-LB cgroup (cgroup_netns), or the node's own alone."""
    targets = sorted({(str(ipaddress.IPv4Address(ip)), int(port)) for ip, port in backends})
    if not targets:
        return 0
    destroyed = 0
    for netns in sorted(set(namespaces)):
        for start in range(0, len(targets), SS_BATCH):
            # argv, never a shell: addresses come from the (untrusted) config repo,
            # and were parsed as addresses above.
            proc = subprocess.run(
                ["nsenter", f"--net={netns}", "ss", "-K", "-u", "-n",
                 *ss_filter(targets[start : start + SS_BATCH])],
                capture_output=True,
                text=True,
                timeout=30,
            )  # fmt: skip
            destroyed += max(0, len(proc.stdout.strip().splitlines()) - 1)
    return destroyed
