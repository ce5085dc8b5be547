"""Netfilter's chains in a network namespace, read and rewritten, and which
of them kube-proxy left.

Chains of nftables (iptables-nft's tables and native nft tables alike) are
listed over netlink (pyroute2); iptables-legacy's tables are named in
/proc/net and listed with iptables-legacy-save. Rewrites go through the
iptables *-restore tools (`--noflush`: only the lines given change) and,
for a native nft table, a netlink delete.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.kernel.rtnetlink import Rtnl, cstr, inside, parse_attrs

# nfgen families: what iptables calls iptables and ip6tables
FAMILIES = {2: "ip", 10: "ip6"}
_LEGACY_NAMES = {"ip": "ip_tables_names", "ip6": "ip6_tables_names"}
_TOOLS = {"ip": "iptables", "ip6": "ip6tables"}


@dataclass(frozen=True, slots=True, order=True)
class Chain:
    backend: str  # "nft" (iptables-nft or native nftables) or "legacy" (iptables-legacy)
    family: str  # "ip" or "ip6"
    table: str  # nat, filter, ... or a native nft table's name
    name: str


# kube-proxy's chains in iptables mode (its entry points, per-service and
# per-endpoint chains, masquerade marking). Not kubelet's: KUBE-FIREWALL,
# KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, KUBE-MARK-DROP stay.
KUBE_PROXY_CHAIN = re.compile(
    r"KUBE-(SERVICES|EXTERNAL-SERVICES|NODEPORTS|FORWARD|POSTROUTING|MARK-MASQ"
    r"|PROXY-FIREWALL|PROXY-CANARY|(SVC|SEP|EXT|FW|SVL|XLB)-[A-Z0-9]+)"
)
IPTABLES_TABLES = frozenset({"nat", "filter", "mangle", "raw"})
KUBE_PROXY_TABLE = "kube-proxy"  # its nftables mode's own table, in ip and ip6


def kube_proxys(chain: Chain) -> bool:
    """Is `chain` one kube-proxy made (iptables or nftables mode)?"""
    if chain.backend == "nft" and chain.table == KUBE_PROXY_TABLE:
        return True
    return chain.table in IPTABLES_TABLES and KUBE_PROXY_CHAIN.fullmatch(chain.name) is not None


_TARGET = re.compile(r"\s-[jg]\s+(\S+)")


def cleanup_script(saved: str) -> str | None:
    """An iptables-restore script (for `--noflush`) that takes kube-proxy's
    chains out of the table `saved` (iptables-save's text of one table)
    holds: the rules of other chains that jump to them deleted, then the
    chains flushed and deleted; None when it holds none."""
    table, ours, jumps = "", [], []
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            name = line[1:].split()[0]
            if KUBE_PROXY_CHAIN.fullmatch(name):
                ours.append(name)
    if not table or not ours:
        return None
    kube = set(ours)
    for line in saved.splitlines():
        if line.startswith("-A "):
            chain = line.split()[1]
            target = _TARGET.search(line)
            if chain not in kube and target is not None and target.group(1) in kube:
                jumps.append("-D " + line[3:])
    lines = [f"*{table}", *jumps, *(f":{name} - [0:0]" for name in ours)]
    lines += [f"-X {name}" for name in ours]
    return "\n".join([*lines, "COMMIT", ""])


class NetfilterError(OSError):
    """A netfilter tool failed."""


NETLINK_NETFILTER = 12
NFT_MSG_GETCHAIN = (10 << 8) | 4  # NFNL_SUBSYS_NFTABLES, NFT_MSG_GETCHAIN
NFT_MSG_NEWCHAIN = (10 << 8) | 3
NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big endian)
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
_CHAIN_ATTRS = frozenset({NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME})


def parse_chain(payload: bytes) -> tuple[int, str, str] | None:
    """(family, table, chain) of an NFT_MSG_NEWCHAIN payload."""
    if len(payload) < NFGENMSG.size:
        return None
    family = payload[0]
    attrs = parse_attrs(payload, _CHAIN_ATTRS, NFGENMSG.size)
    if NFTA_CHAIN_TABLE not in attrs or NFTA_CHAIN_NAME not in attrs:
        return None
    return family, cstr(attrs[NFTA_CHAIN_TABLE]), cstr(attrs[NFTA_CHAIN_NAME])


def nft_chains(netns: str | None) -> list[Chain]:
    """Every nftables chain of IPv4 and IPv6 tables, in one netlink dump
    (pyroute2's nftables module costs more to import than a plan takes);
    [] where the kernel has no nf_tables to ask."""
    try:
        with Rtnl(netns, NETLINK_NETFILTER) as nl:
            msgs = nl.dump(NFT_MSG_GETCHAIN, NFGENMSG.pack(socket.AF_UNSPEC, 0, 0))
    except OSError:  # (no nf_tables: EOPNOTSUPP and the like)
        return []
    out = []
    for msg in msgs:
        found = parse_chain(msg.payload) if msg.type == NFT_MSG_NEWCHAIN else None
        if found is not None and found[0] in FAMILIES:
            out.append(Chain("nft", FAMILIES[found[0]], found[1], found[2]))
    return out


def legacy_tables(netns: str | None) -> list[tuple[str, str]]:
    """(family, table) of every iptables-legacy table the namespace has."""
    found = []
    with inside(netns):
        for family, name in _LEGACY_NAMES.items():
            try:
                with open(f"/proc/thread-self/net/{name}") as names:
                    found += [(family, line.strip()) for line in names if line.strip()]
            except FileNotFoundError:  # (its module is not loaded: no table)
                continue
    return found


def save(netns: str | None, backend: str, family: str, table: str) -> str:
    """`<tool>-<backend>-save -t table`: the table's rules, in restore syntax."""
    return _run(netns, [f"{_TOOLS[family]}-{backend}-save", "-t", table]).stdout


def legacy_chains(netns: str | None) -> list[Chain]:
    out = []
    for family, table in legacy_tables(netns):
        for line in save(netns, "legacy", family, table).splitlines():
            if line.startswith(":"):
                out.append(Chain("legacy", family, table, line[1:].split()[0]))
    return out


def kube_proxy_chains(netns: str | None, nft: list[Chain] | None = None) -> list[Chain]:
    """kube-proxy's chains in the namespace (nftables, and iptables-legacy
    where its tools are there to read it); `nft`: nft_chains already read."""
    found = [c for c in (nft_chains(netns) if nft is None else nft) if kube_proxys(c)]
    if legacy_tables(netns):
        # (without iptables-legacy's tools nothing of it can be read or cleaned)
        with contextlib.suppress(NetfilterError):
            found += [c for c in legacy_chains(netns) if kube_proxys(c)]
    return found


def restore(netns: str | None, backend: str, family: str, script: str) -> None:
    """Apply a restore script, changing nothing it does not name."""
    _run(netns, [f"{_TOOLS[family]}-{backend}-restore", "--noflush"], script)


def delete_nft_table(netns: str | None, family: str, table: str) -> None:
    from pyroute2.nftables.main import NFTables

    number = {name: n for n, name in FAMILIES.items()}[family]
    with inside(netns):
        nft = NFTables(nfgen_family=number)
    try:
        nft.table("del", name=table)
    finally:
        nft.close()


def _run(netns: str | None, argv: Sequence[str], stdin: str | None = None) -> Any:
    command = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetfilterError(f"{argv[0]}: {exc}") from None
    if done.returncode != 0:
        raise NetfilterError(f"{argv[0]} failed: {done.stderr.strip() or done.returncode}")
    return done
