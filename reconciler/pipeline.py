"""The reconcile pipeline: source -> validate -> compile + observe -> diff -> plan -> apply."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from reconciler import bpfsys, build
from reconciler.compile import compile_desired
from reconciler.diff import diff
from reconciler.observe import observe
from reconciler.plan import Plan
from reconciler.source import Source
from reconciler.validate import Validation, validate_source


class ReconcileError(Exception):
    """An expected failure: reported to the user, exit code 1."""


class InvalidConfig(ReconcileError):
    def __init__(self, validation: Validation) -> None:
        super().__init__(f"{len(validation.errors)} error(s) in the configuration")
        self.validation = validation


@dataclass(frozen=True, slots=True)
class Target:
    """Where we reconcile to: the node, its pins, state dir and namespace."""

    node: str
    bpffs_root: str
    state_dir: Path
    netns: str | None = None
    cache_dir: Path | None = None


def default_state_dir(bpffs_root: str) -> Path:
    digest = hashlib.sha256(bpffs_root.encode()).hexdigest()[:12]
    return Path("/var/lib/calico-reconciler") / digest


def make_plan(source: Source, target: Target) -> tuple[Plan, Validation]:
    validation = validate_source(source, target.cache_dir)
    if not validation.ok:
        raise InvalidConfig(validation)
    bpfsys.ensure_bpffs(target.bpffs_root)
    observed, links = observe(target.bpffs_root, target.netns)
    desired = compile_desired(
        validation.resources, target.node, links, target.bpffs_root, build.source_digest()
    )
    changes = diff(desired, observed)
    plan = Plan(
        node=target.node,
        source={"identity": source.identity, "description": source.description},
        bpffs_root=target.bpffs_root,
        observed_fingerprint=observed.fingerprint(),
        changes=changes,
        build=desired.build,
        warnings=desired.warnings,
        foreign=observed.foreign,
    )
    return plan, validation


def check_fresh(plan: Plan, source: Source | None, target: Target) -> None:
    """Refuse a saved plan when the kernel or the source moved since it was made."""
    if plan.node != target.node or plan.bpffs_root != target.bpffs_root:
        raise ReconcileError(
            f"plan is for node {plan.node} at {plan.bpffs_root}, not {target.node} at "
            f"{target.bpffs_root}"
        )
    if source is not None and source.identity != plan.source.get("identity"):
        raise ReconcileError(
            f"plan is stale: the source changed since it was made "
            f"({plan.source.get('identity')} -> {source.identity}); run --plan again"
        )
    observed, _ = observe(target.bpffs_root, target.netns)
    if observed.fingerprint() != plan.observed_fingerprint:
        raise ReconcileError(
            "plan is stale: the kernel state changed since it was made; run --plan again"
        )


def execute(plan: Plan, target: Target) -> list[tuple[str, str]]:
    """Run every change in plan order; returns (address, result) pairs."""
    from reconciler.drivers import Executor

    executor = Executor(target.bpffs_root, plan.build, target.netns)
    results = []
    try:
        for change in plan.changes:
            try:
                results.append((change.address, executor.run(change)))
            except Exception as exc:
                raise ReconcileError(
                    f"apply failed at {change.action.symbol} {change.address}: {exc}"
                ) from exc
    finally:
        executor.close()
    return results


def record_applied(plan: Plan, target: Target, applied: int) -> None:
    target.state_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "node": plan.node,
        "source": dict(plan.source),
        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "changes_applied": applied,
        "bpffs_root": plan.bpffs_root,
    }
    tmp = target.state_dir / "applied.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(target.state_dir / "applied.json")
