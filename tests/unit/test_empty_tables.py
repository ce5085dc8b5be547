"""Empty tables are tables: a config without Services compiles, stores, loads
and diffs like any other (a stored empty table once crashed every plan)."""

from __future__ import annotations

from reconciler.engine import store
from reconciler.plan.diff import diff
from reconciler.plan.state import ObservedState, RawTable
from reconciler.plan.tables import SortedTable, record_pairs
from tests.unit.test_incremental import compile_, file_ids


def test_an_empty_sorted_table_has_no_pairs():
    keys, values, key_size, value_size = SortedTable.of({})
    table = SortedTable(keys, values, key_size, value_size)
    assert len(table) == 0
    assert list(table.pairs()) == [] and list(table.items()) == []
    assert list(record_pairs(b"", b"", 12, 0)) == []


def test_a_felix_only_state_round_trips_and_diffs_to_nothing_against_empty_kernel_tables(
    tmp_path,
):
    state = compile_([], file_ids([], {}))
    assert state.tables and all(len(t) == 0 for t in state.tables.values())
    states = store.StateStore.under(tmp_path)
    states.store("felix-only", state)
    stored = store.StateStore(states.directory).load("felix-only")  # as the next command has it
    assert stored is not None
    loaded, known = stored
    assert loaded == state
    empty = {name: RawTable(b"", b"", 12, 8) for name in state.tables}
    observed = ObservedState(dict(loaded.objects), (), empty)
    assert diff(loaded, observed, known) == ()
