"""How the loader splits a program set into parts compiled side by side
(reconciler/datapath/loader.py parts_of, programs.py BUILD_PARTS)."""

from __future__ import annotations

import pytest

from reconciler.datapath import loader
from reconciler.datapath.programs import BUILD_PARTS, HOST_PROGRAMS, JUMP_TABLES, TC_PROGRAMS


@pytest.mark.parametrize(("prog_set", "functions"), [("tc", TC_PROGRAMS), ("host", HOST_PROGRAMS)])
def test_every_function_of_a_split_set_is_in_exactly_one_part(prog_set, functions):
    named = [name for part in BUILD_PARTS[prog_set] for name in part]
    assert sorted(named) == sorted(functions)
    assert len(BUILD_PARTS[prog_set]) >= 2


def test_the_first_part_holds_the_attached_ingress_program():
    """The first part is compiled by the building process, which fills the
    tail-call table: its own entry point is there whatever the children do."""
    for prog_set, parts in BUILD_PARTS.items():
        assert JUMP_TABLES[prog_set][1][-1] in parts[0]


def test_two_cpus_split_and_one_does_not(monkeypatch):
    monkeypatch.setattr(loader, "cpus", lambda: 2)
    assert loader.parts_of("tc", TC_PROGRAMS) == [tuple(p) for p in BUILD_PARTS["tc"]]
    monkeypatch.setattr(loader, "cpus", lambda: 1)
    assert loader.parts_of("tc", TC_PROGRAMS) == [TC_PROGRAMS]


def test_sets_without_parts_are_built_whole(monkeypatch):
    monkeypatch.setattr(loader, "cpus", lambda: 8)
    assert loader.parts_of("connect", ("rcl_connect4", "rcl_sendmsg4")) == [
        ("rcl_connect4", "rcl_sendmsg4")
    ]
    assert loader.parts_of("xdp", ("rcl_xdp",)) == [("rcl_xdp",)]


def test_a_subset_keeps_its_parts_and_an_unnamed_function_goes_first(monkeypatch):
    monkeypatch.setattr(loader, "cpus", lambda: 2)
    assert loader.parts_of("tc", ("rcl_tc_masq", "rcl_tc_ingress", "rcl_extra")) == [
        ("rcl_tc_ingress", "rcl_extra"),
        ("rcl_tc_masq",),
    ]
    # a part left empty is dropped: nothing to start a child for
    assert loader.parts_of("tc", ("rcl_tc_ingress", "rcl_tc_reject")) == [
        ("rcl_tc_ingress", "rcl_tc_reject")
    ]
