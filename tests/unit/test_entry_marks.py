"""An apply's mark on a policy program map recognises the map only when the
kernel's dump is provably the plan's dump with exactly the plan's writes:
the digest verify records after reading the dump again, or the dump the plan
read with the values verify read back at the written keys (WrittenDump)."""

from __future__ import annotations

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import policy_types as pl
from reconciler.engine.entry_marks import proven
from reconciler.plan.address import Address
from reconciler.plan.diff import Action, Change
from reconciler.plan.state import ObjKind, ObservedState, RawTable, WrittenDump

NAME = pl.MAP_VERDICT


def entry(pid: str, cell: str, action: str, rule: int) -> tuple[str, dict, bytes, bytes]:
    key_text, attrs = f"{pid}/{cell}", {"action": action, "rule": rule}
    key, value = entries.encode(NAME, key_text, attrs)
    return str(Address.of_entry(NAME, key_text)), attrs, key, value


def dump(*records: tuple[bytes, bytes]) -> ObservedState:
    keys, values = b"".join(k for k, _ in records), b"".join(v for _, v in records)
    size = (len(records[0][0]), len(records[0][1]))
    return ObservedState({}, (), {}, {NAME: RawTable(keys, values, *size)})


def test_only_the_plans_writes_prove_the_dump():
    a = entry("0000000a", "default", "allow", 0)
    b = entry("0000000a", "1.0.0", "deny", 1)
    c = entry("0000000b", "default", "deny", 0)
    b2 = entry("0000000a", "1.0.0", "allow", 1)
    before = dump((a[2], a[3]), (b[2], b[3]))
    changes = [
        Change(Action.UPDATE, b[0], ObjKind.ENTRY, b[1], b2[1], {}),
        Change(Action.CREATE, c[0], ObjKind.ENTRY, None, c[1], {}),
        Change(Action.DELETE, a[0], ObjKind.ENTRY, a[1], None, {}),
    ]
    after = dump((b2[2], b2[3]), (c[2], c[3]))
    assert proven(before, after, changes) == {NAME: after.raw[NAME].digest}
    assert proven(None, after, changes) == {}  # nothing the plan read: no mark
    left = dump((a[2], a[3]), (b2[2], b2[3]), (c[2], c[3]))  # the delete did not happen
    assert proven(before, left, changes) == {}
    edited = entry("0000000b", "default", "allow", 0)  # another writer, meanwhile
    assert proven(before, dump((b2[2], b2[3]), (edited[2], edited[3])), changes) == {}
    other = dump((a[2], a[3]), (entry("0000000a", "1.0.0", "allow", 7)[2:]))
    assert proven(before, other, []) == {}  # an entry no change wrote moved


def test_a_written_dump_recognises_the_map_the_apply_left_and_nothing_else():
    a = entry("0000000a", "default", "allow", 0)
    b = entry("0000000a", "1.0.0", "deny", 1)
    c = entry("0000000b", "default", "deny", 0)
    b2 = entry("0000000a", "1.0.0", "allow", 1)
    before = dump((a[2], a[3]), (b[2], b[3]), (c[2], c[3])).raw[NAME]
    # the apply changed b and removed c; verify read back b2's value and no c
    mark = WrittenDump.of(before, {b[2]: b2[3], c[2]: None})
    assert mark.matches(dump((b2[2], b2[3]), (a[2], a[3])).raw[NAME])  # b moved in the dump
    assert not mark.matches(dump((a[2], a[3]), (b[2], b[3])).raw[NAME])  # b holds the old value
    assert not mark.matches(dump((a[2], a[3]), (b2[2], b2[3]), (c[2], c[3])).raw[NAME])  # c back
    edited = entry("0000000a", "default", "deny", 0)  # an entry the apply did not write
    assert not mark.matches(dump((edited[2], edited[3]), (b2[2], b2[3])).raw[NAME])
    assert not mark.matches(dump((b2[2], b2[3])).raw[NAME])  # one the apply did not write is gone
    wider = RawTable(a[2] + b2[2], a[3] + b"\0" * 8 + b2[3] + b"\0" * 8, len(a[2]), len(a[3]) + 8)
    assert not mark.matches(wider)  # another layout
