"""A tiny read-only rtnetlink dump client, standard library only.

Why this exists: observe() only needs four dumps (links, IPv4 addresses,
qdiscs, tc filters), but importing pyroute2 costs 0.18-0.28 s per process
because its package __init__ pulls in everything, asyncio included. On a
one-shot `reconcile --plan` that was the largest single cost. pyroute2 stays
for writes (drivers.py) and --watch events (watch.py); reads come from here.

The parsers are pure functions (bytes in, frozen records out) so they can be
tested without root; `Rtnl` only adds the socket, the namespace switch and
the dump loop.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

# linux/netlink.h
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER

# linux/rtnetlink.h: requests and the message type of their dump replies
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWQDISC, RTM_GETQDISC = 36, 38
RTM_NEWTFILTER, RTM_GETTFILTER = 44, 46

IFLA_IFNAME = 3
IFLA_XDP = 43
IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID = 2, 4  # inside IFLA_XDP
XDP_ATTACHED_MODES = {1: "native", 2: "generic", 3: "offload", 4: "multi"}
IFA_ADDRESS, IFA_LOCAL = 1, 2
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_CLASSID, TCA_BPF_NAME = 3, 7
# What each parser reads of a message's attributes
_LINK_ATTRS = frozenset({IFLA_IFNAME, IFLA_XDP})
_XDP_ATTRS = frozenset({IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID})
_QDISC_ATTRS = frozenset({TCA_KIND})
_FILTER_ATTRS = frozenset({TCA_KIND, TCA_OPTIONS})
_BPF_ATTRS = frozenset({TCA_BPF_CLASSID, TCA_BPF_NAME})
# A link dump without the ~400 bytes of counters per link: observe reads none
IFLA_EXT_MASK = 29
RTEXT_FILTER_SKIP_STATS = 1 << 3

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLATTR = struct.Struct("=HH")  # len, type
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
NLMSGERR = struct.Struct("=i")

RECV_BUF = 1 << 20  # the kernel sends at most ~32 KiB per datagram; never truncate
DUMP_RETRIES = 5  # a dump that raced a change (NLM_F_DUMP_INTR) is simply re-run


@dataclass(frozen=True, slots=True)
class Message:
    type: int
    flags: int
    seq: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class LinkMsg:
    ifindex: int
    ifname: str
    xdp_prog_id: int = 0  # the XDP program attached, 0: none
    xdp_mode: str = ""  # "native", "generic", ...


@dataclass(frozen=True, slots=True)
class AddrMsg:
    ifindex: int
    address: str


@dataclass(frozen=True, slots=True)
class QdiscMsg:
    ifindex: int
    kind: str


@dataclass(frozen=True, slots=True)
class FilterMsg:
    ifindex: int
    kind: str
    prio: int
    name: str | None  # TCA_BPF_NAME, only for kind "bpf"
    classid: int = 0  # TCA_BPF_CLASSID, only for kind "bpf"; 0: none


R = TypeVar("R")


class NetnsError(OSError):
    """The network namespace to observe is missing or cannot be entered."""


class DumpInterrupted(OSError):
    """The kernel flagged a dump as inconsistent (the table changed mid-dump)."""


# -- pure parsing -------------------------------------------------------------


def split_messages(data: bytes) -> Iterator[Message]:
    """The netlink messages packed in one datagram."""
    off, end, size = 0, len(data), NLMSGHDR.size
    unpack = NLMSGHDR.unpack_from
    while off + size <= end:
        length, mtype, flags, seq, _pid = unpack(data, off)
        if length < size or off + length > end:
            raise ValueError(f"malformed netlink message at offset {off} (length {length})")
        yield Message(mtype, flags, seq, bytes(data[off + size : off + length]))
        off += (length + 3) & ~3  # NLMSG_ALIGN


def parse_attrs(
    data: bytes, wanted: frozenset[int] | None = None, start: int = 0
) -> dict[int, bytes]:
    """Attribute type -> payload, from offset `start`; the first of duplicate
    types wins (as pyroute2's get_attr). With `wanted`, only those types are
    kept and the scan stops once all are found: a link message carries ~50
    attributes and observe needs two. The loop is written for speed: observe
    runs it over every attribute of ~400 links on a 200-workload node."""
    attrs: dict[int, bytes] = {}
    off, end = start, len(data)
    unpack = NLATTR.unpack_from
    remaining = -1 if wanted is None else len(wanted)
    while off + 4 <= end:  # 4: NLATTR.size
        length, atype = unpack(data, off)
        if length < 4 or off + length > end:
            break  # truncated tail: keep what parsed cleanly
        atype &= NLA_TYPE_MASK
        if (wanted is None or atype in wanted) and atype not in attrs:
            attrs[atype] = data[off + 4 : off + length]
            remaining -= 1
            if not remaining:
                break
        off += (length + 3) & ~3  # NLA_ALIGN
    return attrs


def cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def check_error(msg: Message) -> None:
    """NLMSG_ERROR (and a dump's NLMSG_DONE) carry a negative errno on failure."""
    if len(msg.payload) < NLMSGERR.size:
        return
    (err,) = NLMSGERR.unpack_from(msg.payload)
    if err < 0:
        raise OSError(-err, os.strerror(-err))


def collect(chunks: Iterable[bytes], seq: int) -> list[Message]:
    """Reply messages for request `seq`, read from datagrams until NLMSG_DONE.

    Raises OSError for a kernel error and DumpInterrupted when any part was
    flagged inconsistent (after the whole reply is drained, so the socket stays usable).
    """
    out: list[Message] = []
    interrupted = False
    for chunk in chunks:
        for msg in split_messages(chunk):
            if msg.seq != seq:
                continue  # a leftover of an earlier, abandoned request
            interrupted |= bool(msg.flags & NLM_F_DUMP_INTR)
            if msg.type == NLMSG_ERROR:
                check_error(msg)
                return out  # error 0 is a plain ack: nothing more follows
            if msg.type == NLMSG_DONE:
                check_error(msg)
                if interrupted:
                    raise DumpInterrupted(errno.EINTR, "netlink dump interrupted")
                return out
            out.append(msg)
    raise OSError(errno.EPIPE, "netlink reply ended without NLMSG_DONE")


def parse_link(payload: bytes) -> LinkMsg | None:
    _family, _type, index, _flags, _change = IFINFOMSG.unpack_from(payload)
    attrs = parse_attrs(payload, _LINK_ATTRS, IFINFOMSG.size)
    name = attrs.get(IFLA_IFNAME)
    if name is None:
        return None
    xdp = parse_attrs(attrs.get(IFLA_XDP, b""), _XDP_ATTRS)
    attached = xdp.get(IFLA_XDP_ATTACHED, b"\0")[0]
    prog_id = xdp.get(IFLA_XDP_PROG_ID)
    if not attached or prog_id is None or len(prog_id) != 4:
        return LinkMsg(index, cstr(name))
    mode = XDP_ATTACHED_MODES.get(attached, str(attached))
    return LinkMsg(index, cstr(name), int.from_bytes(prog_id, sys.byteorder), mode)


def parse_addr(payload: bytes) -> AddrMsg | None:
    family, _plen, _flags, _scope, index = IFADDRMSG.unpack_from(payload)
    if family != socket.AF_INET:
        return None
    attrs = parse_attrs(payload[IFADDRMSG.size :])
    # IFA_ADDRESS is what observe has always reported; IFA_LOCAL only as a fallback.
    raw = attrs.get(IFA_ADDRESS, attrs.get(IFA_LOCAL))
    return None if raw is None or len(raw) != 4 else AddrMsg(index, socket.inet_ntoa(raw))


def parse_qdisc(payload: bytes) -> QdiscMsg | None:
    _family, index, _handle, _parent, _info = TCMSG.unpack_from(payload)
    kind = parse_attrs(payload, _QDISC_ATTRS, TCMSG.size).get(TCA_KIND)
    return None if kind is None else QdiscMsg(index, cstr(kind))


def parse_filter(payload: bytes) -> FilterMsg | None:
    """One tc filter, or None for the per-priority header entry (it has no TCA_OPTIONS)."""
    _family, index, _handle, _parent, info = TCMSG.unpack_from(payload)
    attrs = parse_attrs(payload, _FILTER_ATTRS, TCMSG.size)
    options = attrs.get(TCA_OPTIONS)
    if options is None:
        return None
    kind = cstr(attrs.get(TCA_KIND, b""))
    name, classid = None, 0
    if kind == "bpf":
        bpf_attrs = parse_attrs(options, _BPF_ATTRS)
        raw = bpf_attrs.get(TCA_BPF_NAME)
        name = None if raw is None else cstr(raw)
        raw = bpf_attrs.get(TCA_BPF_CLASSID)
        classid = 0 if raw is None or len(raw) != 4 else int.from_bytes(raw, sys.byteorder)
    return FilterMsg(index, kind, info >> 16, name, classid)


def _records(msgs: Iterable[Message], mtype: int, parse: Callable[[bytes], R | None]) -> list[R]:
    return [r for m in msgs if m.type == mtype and (r := parse(m.payload)) is not None]


# -- namespaces and the socket ------------------------------------------------


def netns_path(netns: str) -> str:
    """A bare name lives under /run/netns (as `ip netns` and pyroute2 have it)."""
    return netns if os.path.dirname(netns) else os.path.join(NETNS_RUN_DIR, netns)


def missing_netns(netns: str) -> NetnsError:
    path = netns_path(netns)
    return NetnsError(errno.ENOENT, f"network namespace {netns!r} does not exist ({path})")


def check_netns(netns: str | None) -> None:
    """NetnsError unless `netns` (None: this namespace) exists. Nothing here
    ever creates one: a mistyped name must not become an empty namespace
    that a node then converges into."""
    if netns and not os.path.exists(netns_path(netns)):
        raise missing_netns(netns)


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:  # os.setns is 3.12+
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextmanager
def entered(netns: str) -> Iterator[None]:
    """This thread inside `netns` for the block, and back home after it,
    also on error."""
    path = netns_path(netns)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise missing_netns(netns) from None
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except OSError as exc:
                raise NetnsError(
                    exc.errno, f"cannot enter network namespace {path}: {exc}"
                ) from None
            try:
                yield
            finally:
                _setns(home)  # never leave this thread in the target namespace
        finally:
            os.close(home)
    finally:
        os.close(target)


def inside(netns: str | None) -> AbstractContextManager[None]:
    """entered(netns), or this namespace as it is when `netns` is None."""
    return entered(netns) if netns else nullcontext()


SO_NETNS_COOKIE = 71  # Linux 5.14+; not in Python's socket module


def netns_cookie(netns: str | None = None) -> int | None:
    """The kernel's cookie of `netns` (None: this namespace), as BPF's
    bpf_get_netns_cookie sees it; None where the kernel has no such option."""
    with inside(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    with sock:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
        except OSError:
            return None
    return int.from_bytes(raw, sys.byteorder)


class Rtnl:
    """Read-only netlink dumps, optionally inside a network namespace:
    rtnetlink's, or another family's (`protocol`, e.g. nfnetlink's)."""

    def __init__(self, netns: str | None = None, protocol: int = socket.NETLINK_ROUTE) -> None:
        with inside(netns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        self.sock.bind((0, 0))  # the kernel picks our port id
        self.seq = 0
        self._buf = bytearray(RECV_BUF)

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _chunks(self) -> Iterator[bytes]:
        while True:
            n = self.sock.recv_into(self._buf)
            yield bytes(self._buf[:n])

    def dump(self, mtype: int, header: bytes) -> list[Message]:
        """Every message of one NLM_F_DUMP request, re-run if the kernel says it raced."""
        attempts = 0
        while True:
            self.seq += 1
            request = NLMSGHDR.pack(
                NLMSGHDR.size + len(header), mtype, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0
            )
            self.sock.send(request + header)
            try:
                return collect(self._chunks(), self.seq)
            except DumpInterrupted:
                attempts += 1
                if attempts >= DUMP_RETRIES:
                    raise

    def links(self) -> list[LinkMsg]:
        skip_stats = NLATTR.pack(NLATTR.size + 4, IFLA_EXT_MASK) + struct.pack(
            "=I", RTEXT_FILTER_SKIP_STATS
        )
        msgs = self.dump(RTM_GETLINK, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + skip_stats)
        return _records(msgs, RTM_NEWLINK, parse_link)

    def addresses(self) -> list[AddrMsg]:
        """IPv4 addresses only."""
        msgs = self.dump(RTM_GETADDR, IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0))
        return _records(msgs, RTM_NEWADDR, parse_addr)

    def qdiscs(self) -> list[QdiscMsg]:
        msgs = self.dump(RTM_GETQDISC, TCMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        return _records(msgs, RTM_NEWQDISC, parse_qdisc)

    def filters(self, ifindex: int, parent: int) -> list[FilterMsg]:
        """Filters under one parent of one link.

        A vanished link gives an empty dump on current kernels; OSError ENODEV
        or EINVAL is possible too, and callers treat both alike.
        """
        msgs = self.dump(RTM_GETTFILTER, TCMSG.pack(socket.AF_UNSPEC, ifindex, 0, parent, 0))
        return _records(msgs, RTM_NEWTFILTER, parse_filter)
