"""A fragment: what one sub-compiler contributes to the desired state. Pure.

compile_desired (reconciler.compile.dataplane) folds the fragments of its
sub-compilers (interfaces, programs, connect-time load balancing, service
NAT) into one DesiredState; each sub-compiler is a pure function of the
configuration and the host facts it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.plan.state import Obj


@dataclass(frozen=True, slots=True)
class Fragment:
    objects: tuple[Obj, ...] = ()
    # bulk maps as raw key -> value bytes (DesiredState.tables)
    tables: Mapping[str, Mapping[bytes, bytes]] = field(default_factory=dict)
    table_info: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # the plan is refused: nothing may be applied
    health_checks: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def merge(fragments: Iterable[Fragment]) -> Fragment:
    """The fragments as one, in order. Each address and each table has one
    owner: two sub-compilers claiming one is a bug, not a preference."""
    objects: dict[str, Obj] = {}
    tables: dict[str, Mapping[bytes, bytes]] = {}
    info: dict[int, Mapping[str, Any]] = {}
    warnings: list[str] = []
    errors: list[str] = []
    health: dict[str, tuple[int, int]] = {}
    for fragment in fragments:
        for obj in fragment.objects:
            if obj.address in objects:
                raise ValueError(f"{obj.address} is compiled twice")
            objects[obj.address] = obj
        for name, table in fragment.tables.items():
            if name in tables:
                raise ValueError(f"table {name} is compiled twice")
            tables[name] = table
        info.update(fragment.table_info)
        health.update(fragment.health_checks)
        warnings += fragment.warnings
        errors += fragment.errors
    return Fragment(
        tuple(objects.values()), tables, info, tuple(warnings), tuple(errors), health
    )
