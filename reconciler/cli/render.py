"""Human output for plans, diagnostics and status (Terraform-style)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Re-exported: the other modes print diagnostics and JSON through this module too.
from reconciler.cli.output import emit_json as emit_json
from reconciler.cli.output import render_diagnostics as render_diagnostics
from reconciler.plan.address import backend_ordinal
from reconciler.plan.diff import Action, Change, summarize
from reconciler.plan.plan import Plan
from reconciler.plan.state import ObjKind


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


def _rules_lines(change: Change) -> str:
    """A chain of ours: its rule count, and each rule added (+) or gone (-)
    on a line of its own."""
    before = list((change.before or {}).get("rules") or [])
    after = list((change.after or {}).get("rules") or [])
    head = f"{len(before)} -> {len(after)} rule(s)" if before and after else (
        f"{len(after or before)} rule(s)"
    )
    if change.action is Action.CREATE:
        lines = [f"+ {r}" for r in after]
    elif change.action is Action.DELETE:
        lines = [f"- {r}" for r in before]
    else:
        lines = [f"- {r}" for r in before if r not in after]
        lines += [f"+ {r}" for r in after if r not in before]
        if not lines:  # the same rules in another order
            lines = [f"  {r}" for r in after]
    pools = change.info.get("pools")
    why = f"  (natOutgoing: {', '.join(pools)})" if pools else ""
    text = f"  {change.action.symbol:>3} {change.address:<40} {head}{why}"
    return "\n".join([text, *(f"        {line}" for line in lines)])


def change_line(change: Change) -> str:
    if change.kind is ObjKind.IPTABLES:
        return _rules_lines(change)
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
    elif info.get("frontend") and (ordinal := backend_ordinal(change.address)) is not None:
        why = f"  ({info['frontend']} backend {ordinal}, {info.get('service')})"
    elif info.get("service"):
        why = f"  ({info['service']})"
    elif info.get("policy") or info.get("endpoint"):
        why = f"  ({info.get('policy') or info['endpoint']})"
    elif info.get("setting"):
        why = f"  ({info['setting']})"
    return f"  {change.action.symbol:>3} {change.address:<40} {detail}{why}".rstrip()


# A map whose entries change more than this in one plan is summarised
# (per action, with the services it touches) unless --detail is given.
SUMMARY_THRESHOLD = 50
NOT_ENFORCED_LISTED = 20
NOT_ENFORCED_EXAMPLES = 4
_COLORS = {"+": "32", "-": "31", "~": "33", "-/+": "35"}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def _entry_tables(changes: tuple[Change, ...]) -> list[str | None]:
    """For each change, the map whose entry it is (None for other objects).
    One pass, plain string work: a plan may hold 110,000 entries."""
    entry = ObjKind.ENTRY
    out: list[str | None] = []
    for c in changes:
        table = None
        if c.kind is entry and c.address.startswith("map/"):
            end = c.address.find("/", 4)
            if end > 0:
                table = c.address[4:end]
        out.append(table)
    return out


def _summaries(
    changes: tuple[Change, ...], tables: list[str | None]
) -> dict[tuple[str, Action], list[Change]]:
    """The (map, action) groups to summarise: those of maps with more than
    SUMMARY_THRESHOLD changed entries."""
    per_table: dict[str, int] = {}
    for table in tables:
        if table is not None:
            per_table[table] = per_table.get(table, 0) + 1
    big = {t for t, n in per_table.items() if n > SUMMARY_THRESHOLD}
    groups: dict[tuple[str, Action], list[Change]] = {}
    if big:
        for c, table in zip(changes, tables, strict=True):
            if table in big:
                groups.setdefault((table, c.action), []).append(c)
    return groups


POLICIES_NAMED = 3


def policy_name(ref: str) -> str | None:
    """The policy a compiled policy entry's origin names: "policy/shop/web"
    of "policy/shop/web ingress rule 2"; None for a tier's default action,
    the end of profiles and a set's nets (they belong to no one policy)."""
    if not ref.startswith(("policy/", "profile/")):
        return None
    for direction in (" ingress rule ", " egress rule "):
        name, found, _ = ref.partition(direction)
        if found:
            return name
    return ref


def summary_line(table: str, action: Action, group: list[Change]) -> str:
    services = {c.info.get("service") for c in group} - {None}
    policies = sorted({n for c in group if (n := policy_name(c.info.get("policy") or ""))})
    if services:
        per = f" ({len(services):,} service{'s' if len(services) != 1 else ''})"
    elif policies:
        shown = ", ".join(policies[:POLICIES_NAMED])
        extra = len(policies) - POLICIES_NAMED
        per = f" ({shown}{f', +{extra} more' if extra > 0 else ''})"
    else:
        per = ""
    noun = "entry" if len(group) == 1 else "entries"
    return f"  {action.symbol:>3} {len(group):,} {noun} in {table}{per}"


def backend_moves(changes: Sequence[Change]) -> dict[int, str]:
    """For each service whose backend list changes, a line naming the
    backends that leave and join it, keyed by the index in `changes` of its
    first backend entry. Backends fill a service's slots in order, so one
    that leaves shifts the rest into other slots; the slots' own changes do
    not say which backend went. Slots the plan leaves alone hold the same
    backend before and after, so the changed slots alone tell it. A list is
    its slots' address prefix (the service id): a removed slot may carry no
    note of its service (reconciler.plan.notes)."""
    first: dict[str, int] = {}
    label: dict[str, str] = {}
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for i, c in enumerate(changes):
        if c.kind is not ObjKind.ENTRY or backend_ordinal(c.address) is None:
            continue
        group = c.address.rsplit("/", 1)[0]
        first.setdefault(group, i)
        if (service := c.info.get("service")) and group not in label:
            local = str(c.info.get("frontend", "")).endswith("local endpoints")
            label[group] = f"{service}{' (local endpoints)' if local else ''}"
        if c.before and c.action is not Action.CREATE:
            before.setdefault(group, []).append(_endpoint(c.before))
        if c.after and c.action is not Action.DELETE:
            after.setdefault(group, []).append(_endpoint(c.after))
    out = {}
    for group, index in first.items():
        old, new = before.get(group, []), after.get(group, [])
        moves = [*(f"- {e}" for e in old if e not in new), *(f"+ {e}" for e in new if e not in old)]
        if moves:
            out[index] = f"backends of {label.get(group, group)}: {', '.join(moves)}"
    return out


def _nothing_to_do(plan: Plan) -> str:
    """An empty plan's last line: the kernel matches, or no change can be
    made until objects not ours are removed from where ours must go."""
    from reconciler.engine.foreign_place import blocked_in

    blocked = blocked_in(plan)
    if not blocked:
        return "No changes. The kernel matches the configuration."
    return (
        f"No changes can be made until the {len(blocked)} object(s) not ours that the "
        "warnings above name are removed; the rest of the kernel matches the configuration."
    )


def _endpoint(attrs: Mapping[str, Any]) -> str:
    return f"{attrs.get('ip')}:{attrs.get('port')}"


def render_plan(
    plan: Plan, detail: bool = False, color: bool = False, node_source: str = ""
) -> str:
    """The plan as text. Large map changes are summarised per map and action
    unless `detail`; `node_source` says where the node's name came from."""
    origin = f" (name from {node_source})" if node_source else ""
    lines = [f"Node {plan.node}{origin}, source {plan.source.get('description', '?')}", ""]
    for warning in plan.warnings:
        lines.append(_paint(f"Warning: {warning}", "33", color))
    for foreign in plan.foreign:
        lines.append(f"Note: not ours, left alone: {foreign}")
    if plan.warnings or plan.foreign:
        lines.append("")
    lines += render_not_enforced(plan.not_enforced, detail)
    if plan.empty:
        lines.append(_nothing_to_do(plan))
        return "\n".join(lines) + "\n"
    tables = _entry_tables(plan.changes)
    summarised = {} if detail else _summaries(plan.changes, tables)
    big = {table for table, _ in summarised}
    done: set[tuple[str, Action]] = set()
    moves = backend_moves(plan.changes)
    for i, (c, table) in enumerate(zip(plan.changes, tables, strict=True)):
        if table is not None and table in big:
            key = (table, c.action)
            if key not in done:
                done.add(key)
                line = summary_line(table, c.action, summarised[key])
                lines.append(_paint(line, _COLORS[c.action.symbol], color))
            continue
        lines.append(_paint(change_line(c), _COLORS[c.action.symbol], color))
        if i in moves:
            lines.append(f"        {moves[i]}")
    if summarised:
        lines += ["", "(map entries summarised: --detail lists every one)"]
    s = summarize(plan.changes)
    lines += ["", f"Plan: {s['add']} to add, {s['change']} to change, {s['destroy']} to destroy."]
    return "\n".join(lines) + "\n"


def render_not_enforced(items: Iterable[str], detail: bool = False) -> list[str]:
    """The "validated, not enforced on this node" section: every item when
    few or with `detail`; else every FelixConfiguration setting (a setting
    someone expects to take effect) and the rest counted by reason."""
    items = list(items)
    if not items:
        return []
    out = [f"Not enforced on this node ({len(items)}): validated, but this node does not act on"]
    if detail or len(items) <= NOT_ENFORCED_LISTED:
        out += [f"  {item}" for item in items]
    else:
        settings = [i for i in items if i.startswith("FelixConfiguration/")]
        out += [f"  {item}" for item in settings]
        reasons: dict[str, list[str]] = {}
        for item in (i for i in items if not i.startswith("FelixConfiguration/")):
            where, _, reason = item.rpartition(": not enforced: ")
            reasons.setdefault(reason, []).append(where)
        for reason, wheres in sorted(reasons.items()):
            shown = ", ".join(wheres[:NOT_ENFORCED_EXAMPLES])
            extra = len(wheres) - NOT_ENFORCED_EXAMPLES
            more = f", +{extra} more" if extra > 0 else ""
            out.append(f"  {len(wheres):,} x {reason}: {shown}{more}")
        out.append("  (--detail or --json lists every one)")
    return [*out, ""]
