"""The fold of sub-compilers: fragments merge in order, each address has one owner."""

import pytest

from reconciler.compile.fragment import Fragment, merge
from reconciler.plan.state import Obj, ObjKind


def obj(address):
    return Obj(address, ObjKind.MAP, {"max_entries": 1})


def test_fragments_merge_in_order():
    a = Fragment((obj("map/a"),), {"t": {b"k": b"v"}}, {1: {"service": "x"}}, ("wa",), ("ea",))
    b = Fragment((obj("map/b"),), {}, {2: {"service": "y"}}, ("wb",), ())
    merged = merge([a, b])
    assert [o.address for o in merged.objects] == ["map/a", "map/b"]
    assert merged.tables == {"t": {b"k": b"v"}}
    assert merged.table_info == {1: {"service": "x"}, 2: {"service": "y"}}
    assert merged.warnings == ("wa", "wb") and merged.errors == ("ea",)
    assert merge([]) == Fragment()


def test_an_address_or_table_compiled_twice_is_a_bug():
    with pytest.raises(ValueError, match=r"^map/a is compiled twice$"):
        merge([Fragment((obj("map/a"),)), Fragment((obj("map/a"),))])
    with pytest.raises(ValueError, match=r"^table t is compiled twice$"):
        merge([Fragment(tables={"t": {}}), Fragment(tables={"t": {}})])
