"""The reconcile pipeline: source -> validate -> compile + observe -> diff -> plan -> apply."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler import bpfsys, build
from reconciler.compile import Host, compile_desired
from reconciler.diff import Change, diff
from reconciler.observe import observe
from reconciler.plan import Plan
from reconciler.source import Source
from reconciler.state import DesiredState, Link
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
    cgroup: str | None = None  # cgroup v2 directory for connect-time load balancing


def default_state_dir(bpffs_root: str) -> Path:
    digest = hashlib.sha256(bpffs_root.encode()).hexdigest()[:12]
    return Path("/var/lib/calico-reconciler") / digest


def desired_state(source: Source, target: Target, links: list[Link]) -> DesiredState:
    """Validate and compile, or reuse the compiled state of identical inputs.

    The key covers everything compile reads: the code, the source's identity
    (a commit, or the hash of every file's blob id), the node, the host facts
    and the program sources. A hit skips validation and compile altogether
    (only valid configurations are ever stored), which is what keeps a no-op
    plan of 10,000 services fast."""
    host = host_facts(target, links)
    digest = build.source_digest()
    key = hashlib.sha256(
        json.dumps(
            [
                code_fingerprint(),
                source.identity,
                target.node,
                [(link.name, link.ifindex, link.addresses) for link in links],
                host.cgroup_id,
                host.cgroup_path,
                target.bpffs_root,
                digest,
            ]
        ).encode()
    ).hexdigest()[:32]
    cached = _desired_cache_path(target, key)
    if cached is not None and cached.exists():
        try:
            with open(cached, "rb") as fh:
                state = pickle.load(fh)
            if isinstance(state, DesiredState):
                return state
        except Exception:  # noqa: BLE001 - a cache must never make a plan fail: compute it
            pass
    validation = validate_source(source, target.cache_dir)
    if not validation.ok:
        raise InvalidConfig(validation)
    previous = _latest_desired(cached)
    desired = compile_desired(
        validation.resources, target.node, host, target.bpffs_root, digest,
        {f.path: f.digest for f in source.files},
        previous.nat_memo if previous is not None else None,
        code_fingerprint(),
    )  # fmt: skip

    if desired.errors:
        raise ReconcileError("; ".join(desired.errors) + "; nothing was changed")
    if cached is not None:
        _store_desired(cached, desired)
    return desired


def _latest_desired(path: Path | None) -> DesiredState | None:
    """The most recently stored desired state: its per-service NAT memo lets a
    commit that changes one service recompile one service."""
    if path is None or not path.parent.is_dir():
        return None
    stored = sorted(path.parent.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
    if not stored:
        return None
    try:
        with open(stored[-1], "rb") as fh:
            state = pickle.load(fh)
    except Exception:  # noqa: BLE001 - a cache must never make a plan fail
        return None
    return state if isinstance(state, DesiredState) else None


def _desired_cache_path(target: Target, key: str) -> Path | None:
    # One directory per code version: states pickled by other code (older
    # fields, other semantics) are never loaded, not even as "the latest".
    if target.cache_dir is None:
        return None
    return target.cache_dir / "desired" / code_fingerprint() / f"{key}.pickle"


def _store_desired(path: Path, desired: DesiredState, keep: int = 8) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(desired, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
        # keep the few most recent states (one per recent commit or edit), and
        # drop the directories of other code versions
        old = sorted(path.parent.glob("*.pickle"), key=lambda p: p.stat().st_mtime)[:-keep]
        for stale in old:
            stale.unlink(missing_ok=True)
        for other in path.parent.parent.iterdir():
            if other == path.parent:
                continue
            if other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
            else:
                other.unlink(missing_ok=True)
    except OSError:
        pass


@functools.cache
def code_fingerprint() -> str:
    """Hash of the reconciler's code and schemas: what decides a desired state."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted([*here.glob("*.py"), *(here.parent / "schemas").glob("*.json")]):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def make_plan(
    source: Source, target: Target, fingerprint: bool = True
) -> tuple[Plan, DesiredState]:
    """Validate, compile, observe and diff. `fingerprint=False` skips hashing
    the observed state when the plan will not be saved or compared."""
    bpfsys.ensure_bpffs(target.bpffs_root)
    observed, links = observe(target.bpffs_root, target.netns)
    desired = desired_state(source, target, links)
    changes = diff(desired, observed)
    plan = Plan(
        node=target.node,
        source={"identity": source.identity, "description": source.description},
        bpffs_root=target.bpffs_root,
        observed_fingerprint=observed.fingerprint() if fingerprint else "",
        changes=changes,
        build=desired.build,
        warnings=desired.warnings,
        foreign=observed.foreign,
    )
    return plan, desired


def verify(desired: DesiredState, target: Target) -> tuple[Change, ...]:
    """After apply: what still differs from the state we meant to reach."""
    observed, _ = observe(target.bpffs_root, target.netns)
    return diff(desired, observed)


def host_facts(target: Target, links: list[Link]) -> Host:
    cgroup_id = None
    if target.cgroup:
        try:
            cgroup_id = os.stat(target.cgroup).st_ino  # a cgroup's id is its kernfs inode
        except OSError as exc:
            raise ReconcileError(f"--cgroup {target.cgroup}: {exc.strerror}") from exc
    return Host(tuple(links), cgroup_id, target.cgroup or "")


def check_fresh(plan: Plan, source: Source | None, target: Target) -> list[Link]:
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
    observed, links = observe(target.bpffs_root, target.netns)
    if observed.fingerprint() != plan.observed_fingerprint:
        raise ReconcileError(
            "plan is stale: the kernel state changed since it was made; run --plan again"
        )
    return links


def execute(
    plan: Plan, target: Target, backends: Mapping[bytes, bytes] | None = None
) -> list[tuple[str, str]]:
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
    results += _after_backend_changes(plan, target, backends)
    return results


def _after_backend_changes(
    plan: Plan, target: Target, backends: Mapping[bytes, bytes] | None
) -> list[tuple[str, str]]:
    """Conntrack and connected-socket hygiene once backends have left.

    Only services whose entries changed are judged. What is live comes from
    the applied backend table when we have it (the kernel now holds exactly
    that; apply verifies it), else from the kernel map."""
    from reconciler import ct_clean
    from reconciler.diff import Action

    left = [
        c
        for c in plan.changes
        if c.address.startswith(("map/rcl_nat_be/", "map/rcl_nat_fe/"))
        and c.action in (Action.DELETE, Action.UPDATE)
    ]
    maps = Path(target.bpffs_root) / "maps"
    if not left or not (maps / "rcl_ct").exists():
        return []
    services = {
        int(c.address.split("/")[2], 16) if c.address.startswith("map/rcl_nat_be/")
        else int((c.before or {}).get("svc_id", 0))
        for c in left
    }  # fmt: skip
    fds = {n: bpfsys.obj_get(str(maps / n)) for n in ("rcl_ct", "rcl_nat_be", "rcl_nat_aff")}
    try:
        table = backends.items() if backends is not None else bpfsys.map_entries(fds["rcl_nat_be"])
        live_ids = ct_clean.live_backends(table, services)
        removed = ct_clean.clean_conntrack(fds["rcl_ct"], live_ids, fds["rcl_nat_aff"], services)
        live = {(socket_ip(ip), int.from_bytes(port, "big")) for _, ip, port in live_ids}
    finally:
        for fd in fds.values():
            bpfsys.close(fd)
    gone = {
        (c.before["ip"], c.before["port"])
        for c in left
        if c.address.startswith("map/rcl_nat_be/") and c.before
    } - live
    sockets = ct_clean.destroy_udp_sockets(target.cgroup or "", gone) if gone else 0
    return [
        ("conntrack", f"removed {removed} entries of departed backends"),
        ("sockets", f"destroyed {sockets} UDP sockets connected to departed backends"),
    ]


def socket_ip(raw: bytes) -> str:
    import socket

    return socket.inet_ntoa(raw)


def record_applied(plan: Plan, target: Target, applied: int) -> None:
    """Remember what the kernel was converged to. A no-op pass from the same
    source keeps the record of the apply that last changed something."""
    previous = target.state_dir / "applied.json"
    if plan.empty and previous.exists():
        try:
            old = json.loads(previous.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("source", {}).get("identity") == plan.source.get("identity"):
            return
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
