"""rtnl's parsers on hand-built netlink messages: no root, no kernel."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from reconciler.kernel import rtnetlink as rtnl
from reconciler.kernel.rtnetlink import AddrMsg, FilterMsg, LinkMsg, Message, QdiscMsg

INGRESS = 0xFFFFFFF2


def attr(atype: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes as the kernel does (length excludes the padding)."""
    raw = struct.pack("=HH", 4 + len(payload), atype) + payload
    return raw + b"\0" * (-len(raw) % 4)


def nlmsg(mtype: int, payload: bytes, seq: int = 1, flags: int = 2) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(payload), mtype, flags, seq, 4242) + payload
    return raw + b"\0" * (-len(raw) % 4)


def ifinfomsg(index: int, *attrs: bytes) -> bytes:
    return struct.pack("=BxHiII", 0, 1, index, 0x1043, 0) + b"".join(attrs)


def ifaddrmsg(index: int, family: int, *attrs: bytes) -> bytes:
    return struct.pack("=BBBBI", family, 24, 0x80, 0, index) + b"".join(attrs)


def tcmsg(index: int, info: int, *attrs: bytes, parent: int = INGRESS) -> bytes:
    return struct.pack("=BxxxiIII", 0, index, 1, parent, info) + b"".join(attrs)


def bpf_filter(index: int, prio: int, name: bytes | None, classid: int | None = None) -> bytes:
    nested = attr(rtnl.TCA_BPF_NAME, name) if name is not None else b""
    if classid is not None:
        nested += attr(rtnl.TCA_BPF_CLASSID, struct.pack("=I", classid))
    # NLA_F_NESTED (0x8000) on the options attribute must not hide its type.
    options = attr(rtnl.TCA_OPTIONS | 0x8000, attr(6, struct.pack("=I", 9)) + nested)
    return tcmsg(index, prio << 16 | 0x0300, attr(rtnl.TCA_KIND, b"bpf\0"), options)


def done(seq: int = 1, error: int = 0) -> bytes:
    return nlmsg(rtnl.NLMSG_DONE, struct.pack("=i", error), seq=seq)


def test_attribute_padding_and_first_duplicate_wins():
    data = attr(3, b"eth10\0") + attr(7, b"\x01") + attr(3, b"later\0") + attr(9, b"")
    # "eth10\0" is 6 bytes: 2 bytes of padding follow, then the next header.
    assert len(attr(3, b"eth10\0")) == 12
    assert rtnl.parse_attrs(data) == {3: b"eth10\0", 7: b"\x01", 9: b""}


def test_truncated_attribute_tail_is_ignored():
    data = attr(3, b"lo\0") + struct.pack("=HH", 40, 5) + b"short"
    assert rtnl.parse_attrs(data) == {3: b"lo\0"}


def test_link_message():
    payload = ifinfomsg(7, attr(4, struct.pack("=I", 1500)), attr(rtnl.IFLA_IFNAME, b"cali-a1\0"))
    assert rtnl.parse_link(payload) == LinkMsg(7, "cali-a1")
    assert rtnl.parse_link(ifinfomsg(8)) is None  # no name: not a usable link record


def test_address_message_prefers_ifa_address_then_local():
    both = ifaddrmsg(
        3,
        socket.AF_INET,
        attr(rtnl.IFA_LOCAL, bytes([10, 0, 0, 9])),
        attr(rtnl.IFA_ADDRESS, bytes([192, 168, 50, 1])),
    )
    assert rtnl.parse_addr(both) == AddrMsg(3, "192.168.50.1")
    local_only = ifaddrmsg(4, socket.AF_INET, attr(rtnl.IFA_LOCAL, bytes([10, 0, 0, 9])))
    assert rtnl.parse_addr(local_only) == AddrMsg(4, "10.0.0.9")
    v6 = ifaddrmsg(4, socket.AF_INET6, attr(rtnl.IFA_ADDRESS, bytes(16)))
    assert rtnl.parse_addr(v6) is None


def test_qdisc_message():
    payload = tcmsg(5, 1, attr(rtnl.TCA_KIND, b"clsact\0"), parent=0xFFFFFFF1)
    assert rtnl.parse_qdisc(payload) == QdiscMsg(5, "clsact")


def test_bpf_filter_name_from_nested_options():
    parsed = rtnl.parse_filter(bpf_filter(5, 0x7A00, b"rcl:tc@abc123\0"))
    assert parsed == FilterMsg(5, "bpf", 0x7A00, "rcl:tc@abc123")


def test_bpf_filter_classid():
    parsed = rtnl.parse_filter(bpf_filter(5, 0x7A00, b"rcl:tc@abc123\0", classid=0x0102))
    assert parsed == FilterMsg(5, "bpf", 0x7A00, "rcl:tc@abc123", 0x0102)


def test_bpf_filter_without_name_and_other_kinds():
    assert rtnl.parse_filter(bpf_filter(5, 1, None)) == FilterMsg(5, "bpf", 1, None)
    # A non-bpf kind never reports a name, even if attribute 7 happens to exist there.
    u32 = tcmsg(5, 100 << 16, attr(rtnl.TCA_KIND, b"u32\0"), attr(rtnl.TCA_OPTIONS, attr(7, b"x")))
    assert rtnl.parse_filter(u32) == FilterMsg(5, "u32", 100, None)


def test_filter_header_entry_without_options_is_skipped():
    header = tcmsg(5, 0x7A00 << 16 | 0x0300, attr(rtnl.TCA_KIND, b"bpf\0"))
    assert rtnl.parse_filter(header) is None


def test_multi_message_buffer_across_datagrams():
    first = nlmsg(rtnl.RTM_NEWTFILTER, tcmsg(5, 0x7A00 << 16, attr(rtnl.TCA_KIND, b"bpf\0")))
    first += nlmsg(rtnl.RTM_NEWTFILTER, bpf_filter(5, 0x7A00, b"rcl:a@1\0"))
    second = nlmsg(rtnl.RTM_NEWTFILTER, bpf_filter(5, 0x100, b"other\0")) + done()
    msgs = rtnl.collect([first, second], seq=1)
    assert [m.type for m in msgs] == [rtnl.RTM_NEWTFILTER] * 3
    records = rtnl._records(msgs, rtnl.RTM_NEWTFILTER, rtnl.parse_filter)
    assert records == [FilterMsg(5, "bpf", 0x7A00, "rcl:a@1"), FilterMsg(5, "bpf", 0x100, "other")]


def test_split_messages_reads_header_fields():
    data = nlmsg(rtnl.RTM_NEWLINK, ifinfomsg(1, attr(3, b"lo\0")), seq=9, flags=2) + done(seq=9)
    msgs = list(rtnl.split_messages(data))
    assert [(m.type, m.flags, m.seq) for m in msgs] == [(16, 2, 9), (rtnl.NLMSG_DONE, 2, 9)]
    assert msgs[0].payload == ifinfomsg(1, attr(3, b"lo\0"))


def test_malformed_message_length_raises():
    data = struct.pack("=IHHII", 400, 16, 2, 1, 0) + b"\0" * 16
    with pytest.raises(ValueError, match="malformed"):
        list(rtnl.split_messages(data))


def test_stale_sequence_numbers_are_ignored():
    stale = nlmsg(rtnl.RTM_NEWLINK, ifinfomsg(1, attr(3, b"old\0")), seq=3) + done(seq=3)
    fresh = nlmsg(rtnl.RTM_NEWLINK, ifinfomsg(2, attr(3, b"new\0")), seq=4) + done(seq=4)
    msgs = rtnl.collect([stale + fresh], seq=4)
    assert rtnl._records(msgs, rtnl.RTM_NEWLINK, rtnl.parse_link) == [LinkMsg(2, "new")]


def test_nlmsg_error_enodev_raises():
    request = struct.pack("=IHHII", 36, rtnl.RTM_GETTFILTER, 0x301, 1, 0)
    error = nlmsg(rtnl.NLMSG_ERROR, struct.pack("=i", -errno.ENODEV) + request, flags=0)
    with pytest.raises(OSError) as info:
        rtnl.collect([error], seq=1)
    assert info.value.errno == errno.ENODEV


def test_error_in_done_raises():
    with pytest.raises(OSError) as info:
        rtnl.collect([done(error=-errno.EINVAL)], seq=1)
    assert info.value.errno == errno.EINVAL


def test_ack_ends_reply_without_error():
    ack = nlmsg(rtnl.NLMSG_ERROR, struct.pack("=i", 0) + bytes(16), flags=0)
    assert rtnl.collect([ack], seq=1) == []


def test_interrupted_dump_raises_after_draining():
    part = nlmsg(rtnl.RTM_NEWLINK, ifinfomsg(1, attr(3, b"lo\0")), flags=2 | rtnl.NLM_F_DUMP_INTR)
    with pytest.raises(rtnl.DumpInterrupted):
        rtnl.collect([part, done()], seq=1)


def test_reply_without_done_raises():
    with pytest.raises(OSError) as info:
        rtnl.collect([nlmsg(rtnl.RTM_NEWLINK, ifinfomsg(1))], seq=1)
    assert info.value.errno == errno.EPIPE


def test_netns_path():
    assert rtnl.netns_path("rclab12cd-node") == "/run/netns/rclab12cd-node"
    assert rtnl.netns_path("/proc/1/ns/net") == "/proc/1/ns/net"


def test_message_is_frozen():
    msg = Message(1, 2, 3, b"")
    with pytest.raises(AttributeError):
        msg.seq = 4  # type: ignore[misc]
