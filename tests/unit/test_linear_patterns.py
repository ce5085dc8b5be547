"""Every pattern the schemas use runs in linear time on long adversarial
strings (a quadratic one took 49 s on a 124 KB file)."""

import json
import re
import time

import pytest

from reconciler.config.schema import SCHEMA_DIR, linear_patterns, schema_for


def _patterns(value, out):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "pattern" and isinstance(item, str):
                out.add(item)
            else:
                _patterns(item, out)
    elif isinstance(value, list):
        for item in value:
            _patterns(item, out)
    return out


KINDS = sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))
UNITS = ["a", "a-", "0", "0.", "1.1.", "::", ":a", ":", "a.", "a-a.", "0:", "aa/", "a_", "1h", "µs"]
TAILS = ["!", "", "-", ":/", "/999"]


@pytest.mark.parametrize("kind", KINDS)
def test_schema_patterns_are_linear(kind):
    # at this size a quadratic pattern takes many seconds and a linear one well
    # under a millisecond: the bound leaves room for a loaded machine
    size = 40_000
    for pattern in _patterns(schema_for(kind), set()):
        compiled = re.compile(pattern)
        for unit in UNITS:
            for tail in TAILS:
                text = (unit * size)[:size] + tail
                start = time.perf_counter()
                compiled.search(text)
                assert time.perf_counter() - start < 2.0, (pattern, unit, tail)


def test_rewritten_patterns_match_the_same_strings():
    raw = set()
    for kind in KINDS:
        _patterns(json.loads((SCHEMA_DIR / f"{kind}.json").read_text()), raw)
    samples = [
        "::1",
        "fe80::1/64",
        "10.0.0.1",
        "a:b",
        "1.2.3.4/33",
        ":",
        "abc",
        "",
        "::/128",
        "1:2:3:4:5:6:7:8",
        "x:1",
        "1::g",
    ]
    for pattern in raw:
        fast = linear_patterns({"pattern": pattern})["pattern"]
        for sample in samples:
            assert bool(re.search(pattern, sample)) == bool(re.search(fast, sample)), (
                pattern,
                sample,
            )
