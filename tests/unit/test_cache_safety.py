"""Caches are read only from a directory no other user can write, and in
formats that cannot run code when loaded."""

import io
import os
import pickle

import pytest

from reconciler.config import cache_dir, schema
from reconciler.engine import store as desired_cache


def test_cache_dir_is_created_0700(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    got = cache_dir.default()
    assert got == tmp_path / "xdg" / "calico-reconciler"
    assert os.stat(got).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("how", ["world-writable", "foreign-owner", "symlink", "open-parent"])
def test_unsafe_cache_dirs_turn_caching_off(tmp_path, monkeypatch, capsys, how):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    target = xdg / "calico-reconciler"
    if how == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        os.symlink(tmp_path / "elsewhere", target)
    else:
        target.mkdir(mode=0o700)
    if how == "world-writable":
        os.chmod(target, 0o777)
    elif how == "foreign-owner":
        os.chown(target, 65534, 65534)
    elif how == "open-parent":
        os.chmod(xdg, 0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    cache_dir._warned.clear()
    assert cache_dir.default() is None
    assert "warning: caching is off:" in capsys.readouterr().err


def test_planted_validator_code_is_never_run(tmp_path, monkeypatch):
    import marshal
    import sys

    xdg = tmp_path / "xdg"
    validators = xdg / "calico-reconciler" / "validators"
    validators.mkdir(parents=True)
    os.chmod(xdg / "calico-reconciler", 0o777)  # another user could write here
    marker = tmp_path / "ran"
    code = compile(f"open({str(marker)!r}, 'w').write('x')", "planted", "exec")
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    cache_dir._warned.clear()
    assert schema.validator_dir() is None
    # what a hostile user would plant, under every name the validator could have
    version = f"{sys.version_info[0]}{sys.version_info[1]}"
    schema._fast.cache_clear()
    try:
        for kind in ("Tier", "Service"):
            digest = "0" * 16
            (validators / f"v_{kind}_{digest}_{version}.bin").write_bytes(marshal.dumps(code))
            schema.check(kind, {"kind": kind})
    finally:
        schema._fast.cache_clear()
    assert not marker.exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_stored_state_cannot_name_arbitrary_callables(tmp_path):
    manifest = pickle.dumps((_Evil(), {}))
    data = desired_cache._HEADER.pack(desired_cache._MAGIC, len(manifest), b"") + manifest
    with pytest.raises(pickle.UnpicklingError, match="posix.system may not be loaded"):
        desired_cache.decode(data)
    states = desired_cache.StateStore(tmp_path)
    states.path("x").write_bytes(data)
    assert states.load("x") is None  # a bad cache entry is a miss


def test_a_stored_state_may_ask_getattr_only_for_our_enum_members():
    """Some Python versions pickle an enum member as getattr(EnumClass, name);
    the loader grants exactly that and nothing else getattr could reach."""
    from reconciler.plan.state import ObjKind

    assert desired_cache._enum_member(ObjKind, "TC") is ObjKind.TC
    for cls, name in ((str, "join"), (ObjKind, "__class__"), (os, "system")):
        with pytest.raises(pickle.UnpicklingError, match="may not run while loading"):
            desired_cache._enum_member(cls, name)
    stored = io.BytesIO(pickle.dumps(ObjKind.TC))
    assert desired_cache._Unpickler(stored).load() is ObjKind.TC


class _OldLayout:
    """Pickles as the code before Recognition did: a DesiredState whose field
    list carries the three hint fields (always stored empty) before not_enforced."""

    def __init__(self, values):
        self.values = values

    @property
    def __class__(self):  # what pickle checks __newobj__'s class against
        from reconciler.plan.state import DesiredState

        return DesiredState

    def __reduce_ex__(self, protocol):
        import copyreg

        from reconciler.plan.state import DesiredState

        return (copyreg.__newobj__, (DesiredState,), self.values)


def test_a_state_stored_with_the_hint_fields_still_loads(tmp_path):
    """States written while table_base, kernel_digests and kernel_dumps were
    fields of DesiredState load as the same state; an unknown layout is a miss."""
    import dataclasses
    import random

    from tests.unit.test_incremental import compile_, endpoint_slice, file_ids, service

    rng = random.Random(1)
    resources = [service(0, rng), endpoint_slice(0, rng, 0)]
    state = compile_(resources, file_ids(resources, {}))
    data = desired_cache.encode(state)
    _, size, _ = desired_cache._HEADER.unpack_from(data)
    start = desired_cache._HEADER.size
    skeleton, sections = pickle.loads(data[start : start + size])
    values = {f.name: getattr(skeleton, f.name) for f in dataclasses.fields(skeleton)}
    # table_base, kernel_digests, kernel_dumps; and no policy_index, health
    # checks nor agent settings (fields since)
    hints = {"table_base": {}, "kernel_digests": {}, "kernel_dumps": {}}
    old = [{**values, **hints}[name] for name in desired_cache._LAYOUT_WITH_HINTS]
    assert len(old) == len(desired_cache._LAYOUT)  # told apart by what they hold

    def stored(fields):
        manifest = pickle.dumps((_OldLayout(fields), sections))
        return (
            desired_cache._HEADER.pack(desired_cache._MAGIC, len(manifest), b"")
            + manifest
            + data[start + size :]
        )

    assert b"reconciler.plan.state" in stored(old) and b"DesiredState" in stored(old)
    loaded = desired_cache.decode(stored(old))
    assert loaded == state and loaded.not_enforced == state.not_enforced
    assert loaded.nat_index.files == state.nat_index.files
    today = list(values.values())
    loaded = desired_cache.decode(stored(today))  # today's layout, the same way
    assert loaded == state and loaded.agent == state.agent is not None
    before_agent = desired_cache.decode(stored(today[:-1]))
    assert before_agent == state and before_agent.agent is None
    assert desired_cache.decode(stored(today[:-2])) == state  # before health checks
    assert desired_cache.decode(stored([*old, {}])) is None  # a layout we never wrote
