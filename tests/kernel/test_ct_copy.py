"""Copies between the two tables of a resize (bpf/lib/conntrack.h
rcl_ct_reserve_copy_in, through rcl_ct_fill and rcl_ct_pull) never put a
second entry for a key in a bucket: a lookup finds the first, an update may
change the other. Run with BPF_PROG_TEST_RUN against a real pair of tables
(the fixture of test_ct_adopt)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from reconciler.datapath import conntrack as ct_table
from reconciler.kernel import bpf as bpfsys
from tests.kernel.test_ct_adopt import (
    NEW_BUCKETS,
    OLD_BUCKETS,
    SECOND,
    Tables,
    _entry,
    _write,
    open_tables,
)
from tests.kernel.test_nat_prog import ACK, CLIENT, DNAT, TCP, VIP, packet
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def tables() -> Iterator[Tables]:
    with open_tables() as t:
        yield t


def _copies(fd: int, key: nr.CtKey) -> int:
    """How many live entries of the table hold key."""
    raw = key.encode()
    return sum(1 for _, _, k, _ in ct_table.live(ct_table.table(fd)) if k == raw)


def _key_in_empty_buckets(t: Tables, first_port: int) -> nr.CtKey:
    """A forward key whose bucket is empty in both tables."""
    used_new = {i // ct_table.WAYS for i, _, _ in ct_table.entries(t.new).values()}
    used_old = {i // ct_table.WAYS for i, _, _ in ct_table.entries(t.old).values()}
    for port in range(first_port, first_port + 5000):
        key = nr.CtKey(CLIENT, VIP, port, 80, TCP)
        raw = key.encode()
        if (
            ct_table.bucket(raw, NEW_BUCKETS) not in used_new
            and ct_table.bucket(raw, OLD_BUCKETS) not in used_old
        ):
            return key
    raise AssertionError("no empty bucket")


def _a_flows_entry(t: Tables, sport: int) -> nr.CtEntry:
    """The forward entry of a flow the program just made (a template)."""
    assert _run(t, packet(CLIENT, VIP, sport, 80, TCP)) == DNAT
    found = _entry(t.new, nr.CtKey(CLIENT, VIP, sport, 80, TCP))
    assert found is not None
    return found[2]


def _run(t: Tables, frame: bytes) -> int:
    return bpfsys.prog_test_run(t.nat, frame).retval


def test_a_write_copied_into_the_old_table_reuses_the_keys_way(tables: Tables) -> None:
    """The old table holds the flow in its bucket's second way, the first is
    free: the new programs' write of the flow (a SYN renews both entries)
    goes to the way that holds it."""
    template = _a_flows_entry(tables, 31000)
    key = _key_in_empty_buckets(tables, 31001)
    index = ct_table.bucket(key.encode(), OLD_BUCKETS) * ct_table.WAYS + 1
    _write(tables.old, index, 2, key, template)
    assert _copies(tables.old, key) == 1
    assert _run(tables, packet(CLIENT, VIP, key.sport, 80, TCP)) == DNAT
    assert _copies(tables.new, key) == 1
    assert _copies(tables.old, key) == 1


def test_a_pull_into_the_new_table_reuses_the_keys_way(tables: Tables) -> None:
    """The new table holds an earlier flow of the tuple in its bucket's
    second way, the first is free, and the old table holds the live flow:
    the pull writes it over the earlier one."""
    template = _a_flows_entry(tables, 32000)
    key = _key_in_empty_buckets(tables, 32001)
    here = ct_table.bucket(key.encode(), NEW_BUCKETS) * ct_table.WAYS + 1
    _write(tables.new, here, 2, key, replace(template, last_seen_ns=template.last_seen_ns - SECOND))
    there = ct_table.bucket(key.encode(), OLD_BUCKETS) * ct_table.WAYS
    _write(tables.old, there, 2, key, template)
    assert _run(tables, packet(CLIENT, VIP, key.sport, 80, TCP, flags=ACK)) == DNAT
    assert _copies(tables.new, key) == 1
    found = _entry(tables.new, key)
    assert found is not None and found[0] == here
