"""The policy bench measures variants of the datapath made by editing its
flattened source: every edit must still find the one place it edits, or
`make bench` fails at its first variant (or, worse, edits another place)."""

from __future__ import annotations

import pytest

from bench import policy_bench
from reconciler.datapath.loader import BPF_DIR
from reconciler.datapath.sources import flatten

VARIANTS = {**policy_bench.ABLATIONS, **policy_bench.PATH_CANDIDATES}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_edits_one_place_of_todays_source(name):
    source = flatten(BPF_DIR / "tc.c")
    for old, _new in VARIANTS[name]:
        assert source.count(old) == 1, (name, old)
    assert policy_bench.edited(source, name, VARIANTS[name])  # and applies whole
