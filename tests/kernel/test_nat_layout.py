"""bpf/lib/*_types.h and their Python mirrors agree: sizes and offsets as
compiled by bcc (clang for the BPF target), read back through a test run."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from tests.kernel.rcl_bcc import BPF_DIR, skip_unless_kernel
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel


def _c_layout(header: str, queries: list[str]) -> list[int]:
    """Evaluate sizeof/offsetof expressions as clang compiles them for BPF."""
    from bcc import BPF

    body = "\n".join(
        f"\t{{ __u32 k = {i}; __u64 v = {expr}; rcl_layout.update(&k, &v); }}"
        for i, expr in enumerate(queries)
    )
    text = (
        (BPF_DIR / "lib" / header).read_text()
        + f"\nBPF_ARRAY(rcl_layout, __u64, {len(queries)});\n"
        + "int rcl_layout_probe(struct __sk_buff *skb)\n{\n"
        + body
        + "\n\treturn 0;\n}\n"
    )
    b = BPF(text=text.encode())
    try:
        fn = b.load_func(b"rcl_layout_probe", BPF.SCHED_CLS)
        assert bpfsys.prog_test_run(fn.fd, bytes(64)).retval == 0
        got = {
            struct.unpack("=I", k)[0]: struct.unpack("=Q", v)[0]
            for k, v in bpfsys.map_items(b[b"rcl_layout"].map_fd)
            if isinstance(v, bytes)
        }
    finally:
        b.cleanup()
    return [got[i] for i in range(len(queries))]


def _compare(header: str, fields: dict[str, tuple[str, ...]], size, offsets) -> list[str]:
    rows = []
    for name, names in fields.items():
        rows.append((name, "", f"sizeof(struct {name})", size(name)))
        rows += [(name, f, f"offsetof(struct {name}, {f})", offsets(name)[f]) for f in names]
    got = _c_layout(header, [expr for _, _, expr, _ in rows])
    return [
        f"{name}.{field or 'sizeof'}: C {c} != Python {want}"
        for (name, field, _, want), c in zip(rows, got, strict=True)
        if c != want
    ]


def test_nat_layouts_match_c() -> None:
    skip_unless_kernel()
    mismatches = _compare("nat_types.h", nl.FIELDS, lambda n: nl.CODECS[n].size, nl.field_offsets)
    assert not mismatches, "\n".join(mismatches)


def test_interface_layouts_match_c() -> None:
    from reconciler.datapath.maps import iface_types as il

    skip_unless_kernel()
    fields = {name: names for name, (_, names) in il.LAYOUTS.items()}
    mismatches = _compare(
        "iface_types.h", fields, lambda n: il.LAYOUTS[n][0].size, il.field_offsets
    )
    assert not mismatches, "\n".join(mismatches)


def test_codecs_round_trip() -> None:
    ip = IPv4Address("10.96.0.10")
    cases = [
        nr.FrontendKey(ip, 80, nl.Proto.TCP),
        nr.Frontend(7, 3, 1, nl.FeFlag.AFFINITY | nl.FeFlag.ITP_LOCAL, 10800),
        nr.BackendKey(7, 2),
        nr.Backend(IPv4Address("10.0.0.5"), 8080),
        nr.AffinityKey(IPv4Address("192.168.1.1"), 7),
        nr.Affinity(123, IPv4Address("10.0.0.5"), 8080, 2),
        nr.CtKey(IPv4Address("1.2.3.4"), ip, 40000, 80, nl.Proto.UDP),
        nr.CtEntry(
            1,
            2,
            7,
            2,
            ip,
            IPv4Address("10.0.0.5"),
            80,
            8080,
            nl.CtType.FORWARD,
            nl.CtFlag.SYN | nl.CtFlag.EST,
        ),
        nr.NatGlobals(1, 2, 3, 4, 5, 6, nl.CtlbMode.ALL),
        nr.CtlbRevKey(2**40, IPv4Address("127.0.0.1"), 5353),
        nr.CtlbRev(9, ip, 53),
    ]
    for value in cases:
        assert type(value).decode(value.encode()) == value  # type: ignore[attr-defined]
    # network byte order on the wire, host order in Python
    assert nr.FrontendKey(ip, 80, nl.Proto.TCP).encode() == bytes([10, 96, 0, 10, 0, 80, 6, 0])
