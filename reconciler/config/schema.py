"""JSON Schema validation, one schema per kind under schemas/.

The happy path uses fastjsonschema (compiled validators, ~20x faster than
jsonschema); only a document that fails is re-checked with jsonschema, which
reports every error with its path so we can list them all at once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import marshal
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path as FsPath
from typing import Any

from reconciler.assets import SCHEMA_DIR
from reconciler.config import cache_dir, schema_messages
from reconciler.config.diagnostics import Finding
from reconciler.config.source import default_cache_dir

# Patterns that backtrack quadratically on a long string of their own
# characters, and an equivalent that does not: "some address characters,
# at least one of them ':'" is matched up to its first ':' without choice.
_LINEAR_PATTERNS = {"[0-9a-fA-F:.]*:[0-9a-fA-F:.]*": "[0-9a-fA-F.]*:[0-9a-fA-F:.]*"}


def linear_patterns(value: Any) -> Any:
    """The schema with every `pattern` rewritten to its linear-time equivalent."""
    if isinstance(value, dict):
        out = {k: linear_patterns(v) for k, v in value.items()}
        if isinstance(out.get("pattern"), str):
            for slow, fast in _LINEAR_PATTERNS.items():
                out["pattern"] = out["pattern"].replace(slow, fast)
        return out
    if isinstance(value, list):
        return [linear_patterns(v) for v in value]
    return value


@functools.cache
def schema_for(kind: str) -> Mapping[str, Any]:
    with open(SCHEMA_DIR / f"{kind}.json", encoding="utf-8") as fh:
        schema: Mapping[str, Any] = linear_patterns(json.load(fh))
    return schema


class SchemaMismatch(ValueError):
    """What a cached validator raises for a document its schema refuses: it
    stands for fastjsonschema's exceptions, so that loading a cached
    validator does not import fastjsonschema (its compiler and resolver come
    with the package). Only the fact is used: check() asks jsonschema why."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args[:1])


# The line of a generated validator that imports fastjsonschema's exceptions;
# cached validators get SchemaMismatch under those names instead.
_EXCEPTIONS_IMPORT = re.compile(r"^from fastjsonschema import ([\w, ]+)$", re.MULTILINE)
# Names a cached validator's file carries: the rewriting rules below and the
# generated code's form are part of what it was made from.
_CODE_FORM = f"{_LINEAR_PATTERNS!r} standalone-1".encode()


def standalone(code: str) -> tuple[str, list[str]]:
    """Generated validator code without its import of fastjsonschema, and the
    exception names that import gave it (none: the code is left as it is)."""
    found = _EXCEPTIONS_IMPORT.findall(code)
    if len(found) != 1:
        return code, []
    names = [n.strip() for n in found[0].split(",")]
    stripped = _EXCEPTIONS_IMPORT.sub("", code)
    if "fastjsonschema" in stripped:
        return code, []
    return stripped, names


@functools.cache
def _fast(kind: str) -> Callable[[Any], Any]:
    """The compiled validator; its generated code is kept as a module in the
    cache directory, so later runs import bytecode instead of compiling. A
    cached one is found by the schema file's bytes, and runs without
    fastjsonschema imported: a run that validates one changed file loads no
    compiler (the figures it protects: bench/layout_bench.py's one changed
    service applied and re-validation after one file changed)."""
    directory = validator_dir()
    if directory is not None:
        try:
            raw = (SCHEMA_DIR / f"{kind}.json").read_bytes()
            digest = hashlib.sha256(_CODE_FORM + b"\0" + raw).hexdigest()[:16]
            # Stored as marshalled bytecode: loading it is far cheaper than compiling.
            path = directory / f"v_{kind}_{digest}_{sys.version_info[0]}{sys.version_info[1]}.bin"
            if not path.exists():
                import fastjsonschema

                text, names = standalone(fastjsonschema.compile_to_code(dict(schema_for(kind))))
                code = compile(text, str(path), "exec")
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(marshal.dumps((names, code)))
                tmp.replace(path)
                _drop_others(directory, kind, path)
            names, code = marshal.loads(path.read_bytes())
            namespace: dict[str, Any] = dict.fromkeys(names, SchemaMismatch)
            exec(code, namespace)  # noqa: S102 - our own generated code
            validate: Callable[[Any], Any] = namespace["validate"]
            return validate
        except (OSError, ValueError, EOFError, KeyError, SyntaxError, TypeError):
            pass  # a cache must never make validation fail: compile in memory
    import fastjsonschema

    compiled: Callable[[Any], Any] = fastjsonschema.compile(dict(schema_for(kind)))
    return compiled


def _drop_others(directory: FsPath, kind: str, kept: FsPath) -> None:
    """Remove the kind's validators for this Python made from other schemas
    or code forms (an upgrade's leftovers), which would otherwise pile up
    unused: only `kept` answers for this code. Another version of the
    reconciler still running compiles its own again, as for any cache miss."""
    python = kept.name.rpartition("_")[2]
    ours = re.compile(rf"v_{re.escape(kind)}_[0-9a-f]{{16}}_{re.escape(python)}")
    for other in directory.glob(f"v_{kind}_*.bin"):
        if other != kept and ours.fullmatch(other.name):
            other.unlink(missing_ok=True)


def validator_dir() -> FsPath | None:
    """Where generated validators are cached; RECONCILER_NO_CACHE=1 disables it.
    They are run as code, so only from a directory no other user can write
    (reconciler.config.cache_dir; None when the cache directory is not one)."""
    if os.environ.get("RECONCILER_NO_CACHE"):
        return None
    base = default_cache_dir()
    return None if base is None else cache_dir.secure(base / "validators")


def _is_integer(_checker: Any, value: Any) -> bool:
    """Integers are integers: JSON Schema takes 80.0 for one, Kubernetes and
    Calico (Go's int fields) refuse it, and a float reaching the compiler
    crashes it or is silently dropped."""
    return isinstance(value, int) and not isinstance(value, bool)


@functools.cache
def _full(kind: str) -> Any:
    # jsonschema loads only to explain a failing document: bench/nat_bench.py's
    # one-change apply validates a valid one with fastjsonschema alone.
    import jsonschema

    strict = jsonschema.Draft7Validator.TYPE_CHECKER.redefine("integer", _is_integer)
    validator = jsonschema.validators.extend(jsonschema.Draft7Validator, type_checker=strict)
    return validator(schema_for(kind))


def check(kind: str, body: Mapping[str, Any], floats: bool = True) -> list[Finding]:
    """All schema findings for one document (empty when it is valid). The
    fast validator takes 80.0 for an integer, so a document that holds a
    float (`floats`, as the loader saw) is also checked by the strict one."""
    try:
        _fast(kind)(body)
        fast_ok = True
    except Exception:  # noqa: BLE001 - any failure: ask jsonschema for the full story
        fast_ok = False
    if fast_ok and not floats:
        return []
    validator = _full(kind)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    # A value of the wrong type is told once, as that: not also as outside
    # the enum or pattern it could not be checked against.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    repeated = schema_messages.told_by_unknown_fields(errors)
    findings = [
        finding
        for e in errors
        if id(e) not in repeated
        if e.validator == "type" or tuple(e.absolute_path) not in mistyped
        for finding in schema_messages.describe(e, validator)
    ]
    if fast_ok:  # only the strict integer pass could still object
        return findings
    return findings or [Finding((), "document does not match its schema")]
