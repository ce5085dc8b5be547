"""Human output for plans, diagnostics and status (Terraform-style)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.config.diagnostics import Diagnostic
from reconciler.plan.address import Address
from reconciler.plan.diff import Action, Change, summarize
from reconciler.plan.plan import Plan


def _attrs(attrs: Mapping[str, Any] | None) -> str:
    if not attrs:
        return ""
    return " ".join(f"{k}={_value(v)}" for k, v in attrs.items())


def _value(v: Any) -> str:
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def _delta(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    before, after = before or {}, after or {}
    parts = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            # a key one side lacks (a map of another layout) reads "(none)", not "None"
            old = _value(before[key]) if key in before else "(none)"
            new = _value(after[key]) if key in after else "(none)"
            parts.append(f"{key}: {old} -> {new}")
    return ", ".join(parts)


def change_line(change: Change) -> str:
    if change.action is Action.CREATE:
        detail = _attrs(change.after)
    elif change.action is Action.DELETE:
        detail = _attrs(change.before)
    else:
        detail = change.reason or _delta(change.before, change.after)
    why = ""
    info = change.info
    if info.get("selected_by"):
        why = f"  ({info.get('role')}: {info['selected_by']})"
    elif info.get("frontend") and (address := Address.parse(change.address)).map == "rcl_nat_be":
        ordinal = (address.key or "").rsplit("/", 1)[-1]  # the key is svc_id/ordinal
        why = f"  ({info['frontend']} backend {ordinal}, {info.get('service')})"
    elif info.get("service"):
        why = f"  ({info['service']})"
    elif info.get("policy") or info.get("endpoint"):
        why = f"  ({info.get('policy') or info['endpoint']})"
    return f"  {change.action.symbol:>3} {change.address:<40} {detail}{why}".rstrip()


def render_plan(plan: Plan) -> str:
    lines = [f"Node {plan.node}, source {plan.source.get('description', '?')}", ""]
    for warning in plan.warnings:
        lines.append(f"Warning: {warning}")
    for foreign in plan.foreign:
        lines.append(f"Note: not ours, left alone: {foreign}")
    if plan.warnings or plan.foreign:
        lines.append("")
    if plan.empty:
        lines.append("No changes. The kernel matches the configuration.")
        return "\n".join(lines) + "\n"
    lines += [change_line(c) for c in plan.changes]
    s = summarize(plan.changes)
    lines += ["", f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."]
    return "\n".join(lines) + "\n"


def render_diagnostics(diagnostics: Iterable[Diagnostic]) -> str:
    return "".join(d.render() + "\n" for d in diagnostics)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
