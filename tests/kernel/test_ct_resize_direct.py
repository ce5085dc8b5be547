"""During a resize, a flow straight to a backend retires the reverse entry
of a flow through a service that the client port had to that backend
(bpf/lib/nat.h), whichever table holds it: the old programs wrote that flow
into the old table alone. Else the backend's replies to the direct flow are
rewritten to the service's address. UDP has no SYN-ACK to catch them (the
rule TCP has). Run with BPF_PROG_TEST_RUN against a real pair of tables."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from tests.kernel.test_ct_adopt import Tables, open_tables
from tests.kernel.test_nat_prog import CLIENT, DNAT, PASS, UDP, VIP, packet, parse
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def tables() -> Iterator[Tables]:
    with open_tables() as t:
        yield t


def _forget_here(t: Tables, key: nr.CtKey) -> None:
    """Free key's way in the new table only (as if the old programs alone
    had written it): a bucket write, nothing runs meanwhile."""
    index, _, _ = ct_table.entries(t.new)[key.encode()]
    bucket, way = divmod(index, ct_table.WAYS)
    raw = bpfsys.map_lookup(t.new, nl.U32.pack(bucket))
    assert isinstance(raw, bytes)
    raw = ct_table.with_entry(raw, way, 0, bytes(16), bytes(nl.CT_VAL.size))
    bpfsys.map_update(t.new, nl.U32.pack(bucket), raw)


def test_a_direct_udp_flow_retires_the_old_tables_reverse_entry(tables: Tables) -> None:
    sport = 33000
    out = bpfsys.prog_test_run(tables.nat, packet(CLIENT, VIP, sport, 53, UDP))
    assert out.retval == DNAT
    backend = parse(out.data_out)
    fwd = nr.CtKey(CLIENT, VIP, sport, 53, UDP)
    rev = nr.CtKey(backend.dst, CLIENT, backend.dport, sport, UDP)
    for key in (fwd, rev):
        assert key.encode() in ct_table.entries(tables.old)  # mirrored there
        _forget_here(tables, key)
    assert rev.encode() not in ct_table.entries(tables.new)

    # the client port now talks to the backend straight
    direct = packet(CLIENT, backend.dst, sport, backend.dport, UDP)
    assert bpfsys.prog_test_run(tables.nat, direct).retval == PASS
    assert rev.encode() not in ct_table.entries(tables.old)
    reply = bpfsys.prog_test_run(tables.nat, packet(backend.dst, CLIENT, backend.dport, sport, UDP))
    assert reply.retval == PASS
    assert parse(reply.data_out).src == backend.dst  # not rewritten to the VIP
