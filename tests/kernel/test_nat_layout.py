"""bpf/lib/nat_types.h and reconciler/nat_layout.py agree: sizes and offsets as
compiled by bcc (clang for the BPF target), read back through a test run."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from reconciler import bpfsys
from reconciler import nat_layout as nl
from tests.kernel.rcl_bcc import BPF_DIR, skip_unless_kernel

pytestmark = pytest.mark.kernel


def _queries() -> list[tuple[str, str, str]]:
    """(struct, field or '' for sizeof, C expression)."""
    out: list[tuple[str, str, str]] = []
    for name, fields in nl.FIELDS.items():
        out.append((name, "", f"sizeof(struct {name})"))
        out.extend((name, f, f"offsetof(struct {name}, {f})") for f in fields)
    return out


def test_layouts_match_c() -> None:
    skip_unless_kernel()
    from bcc import BPF

    queries = _queries()
    body = "\n".join(
        f"\t{{ __u32 k = {i}; __u64 v = {expr}; rcl_layout.update(&k, &v); }}"
        for i, (_, _, expr) in enumerate(queries)
    )
    text = (
        (BPF_DIR / "lib" / "nat_types.h").read_text()
        + f"\nBPF_ARRAY(rcl_layout, __u64, {len(queries)});\n"
        + "int rcl_layout_probe(struct __sk_buff *skb)\n{\n" + body + "\n\treturn 0;\n}\n"
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
    mismatches = []
    for i, (name, field, _) in enumerate(queries):
        want = nl.CODECS[name].size if not field else nl.field_offsets(name)[field]
        if got[i] != want:
            mismatches.append(f"{name}.{field or 'sizeof'}: C {got[i]} != Python {want}")
    assert not mismatches, "\n".join(mismatches)


def test_codecs_round_trip() -> None:
    ip = IPv4Address("10.96.0.10")
    cases = [
        nl.FrontendKey(ip, 80, nl.Proto.TCP),
        nl.Frontend(7, 3, 1, nl.FeFlag.AFFINITY | nl.FeFlag.ITP_LOCAL, 10800),
        nl.BackendKey(7, 2),
        nl.Backend(IPv4Address("10.0.0.5"), 8080),
        nl.AffinityKey(IPv4Address("192.168.1.1"), 7),
        nl.Affinity(123, IPv4Address("10.0.0.5"), 8080, 2),
        nl.CtKey(IPv4Address("1.2.3.4"), ip, 40000, 80, nl.Proto.UDP),
        nl.CtEntry(1, 2, 7, 2, ip, IPv4Address("10.0.0.5"), 80, 8080, nl.CtType.FORWARD,
                   nl.CtFlag.SYN | nl.CtFlag.EST),
        nl.NatGlobals(1, 2, 3, 4, 5, 6, nl.CtlbMode.ALL),
        nl.CtlbRevKey(2**40, IPv4Address("127.0.0.1"), 5353),
        nl.CtlbRev(9, ip, 53),
    ]
    for value in cases:
        assert type(value).decode(value.encode()) == value  # type: ignore[attr-defined]
    # network byte order on the wire, host order in Python
    assert nl.FrontendKey(ip, 80, nl.Proto.TCP).encode() == bytes([10, 96, 0, 10, 0, 80, 6, 0])
