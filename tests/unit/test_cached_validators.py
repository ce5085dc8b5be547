"""A validator cached as code runs without fastjsonschema imported and
judges every document as the freshly compiled one does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fastjsonschema
import pytest

from reconciler.config import cache_dir, schema

REPO = Path(__file__).resolve().parents[2]
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80, "protocol": "TCP"}]},
}
BAD_SERVICES = [
    {**SERVICE, "spec": {**SERVICE["spec"], "clusterIP": "ten"}},
    {**SERVICE, "spec": {**SERVICE["spec"], "ports": [{"port": "eighty"}]}},
    {**SERVICE, "metadata": {"name": 5}},
]


@pytest.fixture
def cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("RECONCILER_NO_CACHE", raising=False)
    cache_dir._warned.clear()
    schema._fast.cache_clear()
    yield tmp_path / "xdg" / "calico-reconciler" / "validators"
    schema._fast.cache_clear()


def test_a_cached_validator_judges_as_the_compiled_one(cached):
    schema.check("Service", SERVICE)  # compiles and stores it
    assert len(list(cached.glob("v_Service_*.bin"))) == 1
    schema._fast.cache_clear()  # the next one is loaded from the cache
    compiled = fastjsonschema.compile(dict(schema.schema_for("Service")))
    compiled(SERVICE)
    schema._fast("Service")(SERVICE)
    for bad in BAD_SERVICES:
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            compiled(bad)
        with pytest.raises(schema.SchemaMismatch):
            schema._fast("Service")(bad)
        assert schema.check("Service", bad)  # jsonschema says why


def test_loading_a_cached_validator_imports_no_fastjsonschema(cached):
    schema.check("Service", SERVICE)  # stored by this process
    code = (
        "import sys\n"
        "from reconciler.config import schema\n"
        f"assert schema.check('Service', {SERVICE!r}) == []\n"
        f"assert schema.check('Service', {BAD_SERVICES[0]!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith('fastjsonschema')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_generated_code_loses_only_its_exceptions_import():
    code = fastjsonschema.compile_to_code(dict(schema.schema_for("Service")))
    text, names = schema.standalone(code)
    assert names == ["JsonSchemaValueException", "JsonSchemaValuesException"]
    assert "fastjsonschema" not in text and "def validate" in text
    odd = code + "\nimport fastjsonschema.draft04\n"  # anything else it needs: kept whole
    assert schema.standalone(odd) == (odd, [])


def test_a_cached_validator_in_the_old_form_is_compiled_again(cached):
    """A file that is not (names, code) is not run: the validator is compiled in memory."""
    import marshal

    schema.check("Service", SERVICE)
    (stored,) = cached.glob("v_Service_*.bin")
    stored.write_bytes(marshal.dumps(compile("validate = None", "old", "exec")))
    schema._fast.cache_clear()
    assert schema.check("Service", BAD_SERVICES[0])
    assert schema.check("Service", SERVICE) == []


def test_a_new_validator_replaces_the_kinds_leftovers_only(cached):
    """Validators made from another schema or code form (an upgrade's) are
    removed when this code stores its own; other kinds', other Pythons' and
    files that are not validators stay."""
    py = f"{sys.version_info[0]}{sys.version_info[1]}"
    cached.mkdir(parents=True)
    stale = [cached / f"v_Service_{digest}_{py}.bin" for digest in ("0" * 16, "f" * 16)]
    kept = [
        cached / f"v_ServiceAccount_{'0' * 16}_{py}.bin",  # another kind
        cached / f"v_Tier_{'0' * 16}_{py}.bin",
        cached / f"v_Service_{'0' * 16}_2.bin",  # another Python
        cached / "v_Service_notes.bin",  # not a validator's name
    ]
    for path in (*stale, *kept):
        path.write_bytes(b"old")
    schema.check("Service", SERVICE)  # compiles and stores this code's
    mine = [p for p in cached.glob(f"v_Service_*_{py}.bin") if p not in stale]
    assert len(mine) == 1 and mine[0].read_bytes() != b"old"
    assert not any(p.exists() for p in stale)
    assert all(p.read_bytes() == b"old" for p in kept)
    schema._fast.cache_clear()
    schema.check("Service", SERVICE)  # loaded from the cache: nothing more removed
    assert sorted(cached.iterdir()) == sorted([*mine, *kept])
