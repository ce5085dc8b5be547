"""The reconcile pipeline, in one direction:

    spec -> Source -> Validation -> DesiredState -> ObservedState -> Plan -> Result

`reconcile_once` runs it end to end under the node's apply lock; `make_plan`
stops at the plan. The other functions are its steps."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.compile.dataplane import CTLB_MODES, Host, compile_desired, keep_slots
from reconciler.config.source import Source
from reconciler.config.spec import open_source
from reconciler.config.validate import Validation, validate_source
from reconciler.datapath import loader as build
from reconciler.engine import store as desired_cache
from reconciler.engine.lock import LockHeld, apply_lock
from reconciler.kernel import bpf as bpfsys
from reconciler.observe.kernel import held_slots, observe
from reconciler.plan.diff import Change, diff
from reconciler.plan.plan import Plan
from reconciler.plan.state import (
    AppliedDump,
    DesiredState,
    Link,
    ObjKind,
    ObservedState,
    RawTable,
    table_digest,
)


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
    # A snapshot's node (--plan --observed): its host facts, not this machine's,
    # and no kernel access at all.
    snapshot: Any = None  # observe.snapshot.Snapshot


@dataclass(frozen=True, slots=True)
class Result:
    """What one pass did, as controller-runtime's reconcile.Result says it:
    the plan it carried out, each change's outcome, what still differs
    afterwards (empty when converged), and when to look again."""

    plan: Plan
    applied: tuple[tuple[str, str], ...]
    remaining: tuple[Change, ...]
    requeue_after: float | None = None

    @property
    def converged(self) -> bool:
        return not self.remaining


def reconcile_once(
    target: Target,
    spec: Mapping[str, Any],
    *,
    plan_file: str | None = None,
    changed: frozenset[str] | None = None,
    use_cache: bool = True,
    on_plan: Callable[[Plan], None] = lambda plan: None,
    opener: Callable[[], Source] | None = None,
) -> Result:
    """source -> validate -> compile -> observe -> diff -> plan -> apply ->
    verify, holding the node's apply lock throughout. With `plan_file`, apply
    exactly that saved plan, refused when the source or the kernel moved
    since it was made. `changed` (from --watch's file events) names the only
    files that may differ from the last pass. `on_plan` sees the plan before
    anything is applied. `opener` opens the spec's source instead of
    open_source (--watch hands in one it resolved or holds in memory).
    Raises InvalidConfig or ReconcileError; on either, nothing was changed."""
    try:
        with apply_lock(target.state_dir):
            if plan_file:
                plan = Plan.read(plan_file)
                spec = plan.source.get("spec") or spec
                source = open_source(dict(spec), use_cache)
                links, slots = check_fresh(plan, source, target)
                desired = desired_state(source, target, links, slots=slots)
                observed = None
            else:
                plan, desired, observed = make_plan(
                    opener or (lambda: open_source(dict(spec), use_cache, changed)), target, False
                )
                plan = dataclasses.replace(plan, source={**plan.source, "spec": dict(spec)})
            on_plan(plan)
            backends = desired.tables.get("rcl_nat_be")
            udp = udp_balanced_at_connect(plan, desired)
            applied = execute(plan, target, backends, udp) if not plan.empty else []
            # Re-observe and compare with the very state we meant to reach. The
            # NAT tables the plan read, with the keys apply wrote, let the next
            # plan recognise them: verify need not read them again.
            remaining, digests = verify(desired, target, plan, digests=observed is None)
            record_applied(plan, target, len(applied))
            if not remaining:
                dumps = applied_dumps(plan, observed) if observed is not None else {}
                desired_cache.note_applied(
                    desired, digests, {t: d for t, d in dumps.items() if t not in digests}
                )
    except LockHeld as exc:
        raise ReconcileError(str(exc)) from None
    return Result(plan, tuple(applied), tuple(remaining))


def default_state_dir(bpffs_root: str) -> Path:
    digest = hashlib.sha256(bpffs_root.encode()).hexdigest()[:12]
    return Path("/var/lib/calico-reconciler") / digest


def desired_state(
    source: Source,
    target: Target,
    links: list[Link],
    keep_derived: bool = True,
    slots: Mapping[int, int] | None = None,
) -> DesiredState:
    """The state this node should have (compiled_state), with its interfaces
    in the rcl_ifstate slots they hold now (`slots`: observe.held_slots; see
    compile.keep_slots). The slots are not part of what is compiled or
    stored: the first plan after an apply that gave interfaces their slots
    still finds the state that apply stored."""
    return keep_slots(compiled_state(source, target, links, keep_derived), slots or {})


def compiled_state(
    source: Source, target: Target, links: list[Link], keep_derived: bool = True
) -> DesiredState:
    """Validate and compile, or reuse what earlier runs compiled.

    Three ways, fastest first:
    - the inputs are identical to a stored state's (a no-op plan): reuse it;
      its key covers the code, the source's identity (a commit, or the hash
      of every file's blob id), the node, the host facts and the program
      sources;
    - only Services and EndpointSlices changed since a stored state with the
      same other inputs (the applied one when there is a record of it, else
      the newest): validate the changed files and recompute the services they
      feed (reconciler.compile.nat_tables.update);
    - otherwise validate and compile everything.
    Only valid configurations are ever stored. `keep_derived=False` (a plan
    that will not be applied) does not store a state derived incrementally:
    deriving it again costs less than writing and reading it."""
    host = host_facts(target, links)
    digest = build.source_digest()
    base_context = hashlib.sha256(
        json.dumps(
            [
                desired_cache.code_fingerprint(),
                target.node,
                host.cgroup_id,
                host.cgroup_path,
                host.hz,
                target.bpffs_root,
                digest,
            ]
        ).encode()
    ).hexdigest()[:32]
    context = hashlib.sha256(
        json.dumps(
            [base_context, [(link.name, link.ifindex, link.addresses) for link in links]]
        ).encode()
    ).hexdigest()[:32]
    key = hashlib.sha256(f"{context}\0{source.identity}".encode()).hexdigest()[:32]
    cached = desired_cache.cache_path(target.cache_dir, key)
    if cached is not None and cached.exists():
        state = desired_cache.load(cached)
        if state is not None:
            return state
    files = {f.path: f.digest for f in source.files}
    desired = None
    previous = desired_cache.latest(cached)
    if previous is not None and getattr(previous.nat_index, "context", None) == context:
        desired = _services_only_update(previous, source, files, target.cache_dir)
    elif previous is not None and getattr(previous.nat_index, "base_context", "") == base_context:
        desired = _interfaces_only_update(previous, source, files, target, host, digest, context)
    derived = desired is not None
    if desired is None:
        validation = validate_source(source, target.cache_dir)
        if not validation.ok:
            raise InvalidConfig(validation)
        desired = compile_desired(
            validation.resources, target.node, host, target.bpffs_root, digest, files, context
        )
    if desired.nat_index is not None:
        index = dataclasses.replace(
            desired.nat_index, base_context=base_context, source=source.identity
        )
        desired = dataclasses.replace(desired, nat_index=index)
    if desired.errors:
        raise ReconcileError("; ".join(desired.errors) + "; nothing was changed")
    if cached is not None and (keep_derived or not derived):
        desired_cache.store(cached, desired)
    return desired


def _services_only_update(
    previous: DesiredState, source: Source, files: dict[str, str], cache_dir: Path | None
) -> DesiredState | None:
    """The previous state with the changed files' services recomputed, or None
    when that is not enough (other kinds changed, an error, a cache miss)."""
    from reconciler.compile import nat_tables as nat_compile
    from reconciler.config.validate import cached_resources, validate_files

    index = previous.nat_index
    changed = nat_compile.changed_paths(index, files)
    if len(changed) > max(64, len(files) // 10):
        return None  # a big change: the full path validates it in parallel
    results = validate_files([f for f in source.files if f.path in changed], cache_dir)
    if any(not r.ok for r in results.values()):
        return None  # the full path reports every error, in every file
    new = {path: r.resources for path, r in results.items()}
    old = cached_resources({p: index.files[p] for p in changed if p in index.files}, cache_dir)
    if old is None:
        return None
    unchanged = cached_resources(
        {p: files[p] for p in nat_compile.needs(index, old, new)}, cache_dir
    )
    if unchanged is None:
        return None
    return nat_compile.update(previous, files, old, new, unchanged)


def _interfaces_only_update(
    previous: DesiredState,
    source: Source,
    files: dict[str, str],
    target: Target,
    host: Host,
    digest: str,
    context: str,
) -> DesiredState | None:
    """The previous state for links that came or went, the source unchanged:
    only the files holding other resources than Services and EndpointSlices
    are compiled again (a new pod's veth must not recompile 10,000 services).
    None when that is not enough (the source changed, a cache miss, the
    services' inputs moved)."""
    from reconciler.compile import nat_tables as nat_compile
    from reconciler.config.validate import cached_resources

    index = previous.nat_index
    if index.source != source.identity and nat_compile.changed_paths(index, files):
        return None
    others = index.others
    loaded = cached_resources({p: files[p] for p in others}, target.cache_dir)
    if loaded is None:
        return None
    resources = [r for path in others for r in loaded[path]]
    interfaces = compile_desired(
        resources, target.node, host, target.bpffs_root, digest, {p: files[p] for p in others}
    )
    return nat_compile.relink(previous, interfaces, context)


def make_plan(
    source: Source | Callable[[], Source],
    target: Target,
    fingerprint: bool = True,
    keep_derived: bool = True,
) -> tuple[Plan, DesiredState, ObservedState]:
    """Validate, compile, observe and diff. `fingerprint=False` skips hashing
    the observed state when the plan will not be saved or compared. `source`
    may be a function that opens it: it is called once the kernel is being
    read, so opening the source and reading the NAT tables overlap. Returns
    what was observed too (apply records its NAT tables, see verify)."""
    if target.snapshot is not None:
        observed, links = target.snapshot.observed, list(target.snapshot.links)
    else:  # first: a bad --netns fails here
        observed, links = observe(target.bpffs_root, target.netns)
    if callable(source):
        source = source()
    if target.snapshot is None:
        bpfsys.ensure_bpffs(target.bpffs_root)
    desired = desired_state(source, target, links, keep_derived, held_slots(observed))
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
    return plan, desired, observed


def verify(
    desired: DesiredState, target: Target, plan: Plan | None = None, digests: bool = True
) -> tuple[tuple[Change, ...], dict[str, str]]:
    """After apply: what still differs from the state we meant to reach, and
    (with `digests`) the digests of the kernel's NAT tables, recorded with the
    applied state so that the next plan recognises them without comparing
    100k entries.

    Everything is observed again, except that with the plan just applied the
    bulk NAT tables are read back at the keys the plan changed: the plan
    compared every other entry moments earlier, under the apply lock, or was
    checked fresh against the kernel's fingerprint. A table the plan
    recreated (a resize) is compared in full. Without `digests` the tables
    are not read at all: the caller recognises them later by the dump the
    plan read (reconciler.plan.state.AppliedDump), which saves reading 110,000
    entries again (~55 ms)."""
    from reconciler.datapath.maps.codecs import TABLE_MAPS

    recreated = plan is None or any(
        c.kind is ObjKind.MAP and c.address.split("/")[1] in TABLE_MAPS for c in plan.changes
    )
    observed, _ = observe(target.bpffs_root, target.netns, tables=recreated or digests)
    found = {name: d for name, t in observed.tables.items() if (d := table_digest(t))}
    if recreated:
        return diff(desired, observed), found
    assert plan is not None
    changes = diff(
        dataclasses.replace(desired, tables={}, table_base={}, kernel_digests={}, kernel_dumps={}),
        dataclasses.replace(observed, tables={}),
    )
    remaining = tuple(
        sorted((*changes, *_read_back(desired, plan, target)), key=lambda c: c.address)
    )
    return remaining, found


def written_keys(plan: Plan) -> dict[str, frozenset[bytes]]:
    """The bulk-table keys a plan writes or deletes, by table."""
    from reconciler.datapath.maps import codecs as entries

    keys: dict[str, set[bytes]] = {}
    for c in plan.changes:
        if c.kind is ObjKind.ENTRY:
            name, _ = entries.split(c.address)
            if name in entries.TABLE_MAPS:
                key = entries.encode(c.address, c.after or c.before or {})[0]
                keys.setdefault(name, set()).add(key)
    return {name: frozenset(k) for name, k in keys.items()}


def applied_dumps(plan: Plan, before: ObservedState) -> dict[str, AppliedDump]:
    """How the next plan will recognise each NAT table this plan's apply
    left: the table as the plan read it, and the keys the apply wrote."""
    written = written_keys(plan)
    return {
        name: AppliedDump.of(table, written.get(name, frozenset()))
        for name, table in before.tables.items()
        if isinstance(table, RawTable)
    }


def _read_back(desired: DesiredState, plan: Plan, target: Target) -> tuple[Change, ...]:
    """The plan's NAT table entries as the kernel holds them now, diffed."""
    keys = written_keys(plan)
    want: dict[str, dict[bytes, bytes]] = {}
    have: dict[str, dict[bytes, bytes]] = {}
    for name, wanted in keys.items():
        table = desired.tables.get(name, {})
        want[name] = {k: table[k] for k in wanted if k in table}
        have[name] = {}
        fd = bpfsys.obj_get(f"{target.bpffs_root}/maps/{name}")
        try:
            for key in wanted:
                value = bpfsys.map_lookup(fd, key)
                if isinstance(value, bytes):
                    have[name][key] = value
        finally:
            bpfsys.close(fd)
    partial = dataclasses.replace(
        desired, objects={}, tables=want, table_base={}, kernel_digests={}, kernel_dumps={}
    )
    return diff(partial, ObservedState({}, (), have))


def host_facts(target: Target, links: list[Link]) -> Host:
    if target.snapshot is not None:
        facts = target.snapshot.host
        return Host(
            tuple(links), facts.get("cgroup_id"), facts.get("cgroup_path", ""), facts.get("hz")
        )
    cgroup_id = None
    if target.cgroup:
        try:
            cgroup_id = os.stat(target.cgroup).st_ino  # a cgroup's id is its kernfs inode
        except OSError as exc:
            raise ReconcileError(f"--cgroup {target.cgroup}: {exc.strerror}") from exc
    return Host(tuple(links), cgroup_id, target.cgroup or "", build.kernel_hz())


def check_fresh(
    plan: Plan, source: Source | None, target: Target
) -> tuple[list[Link], dict[int, int]]:
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
    return links, held_slots(observed)


def execute(
    plan: Plan,
    target: Target,
    backends: Mapping[bytes, bytes] | None = None,
    udp_connected: bool = True,
) -> list[tuple[str, str]]:
    """Run every change in plan order; returns (address, result) pairs.
    `udp_connected=False` says no UDP socket can be connected to a backend
    (connect-time load balancing did not cover UDP): none need destroying."""
    from reconciler.apply.executor import Executor

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
    results += _after_backend_changes(plan, target, backends, udp_connected)
    return results


def _after_backend_changes(
    plan: Plan, target: Target, backends: Mapping[bytes, bytes] | None, udp_connected: bool
) -> list[tuple[str, str]]:
    """Conntrack and connected-socket hygiene once backends have left.

    Only services whose entries changed are judged. What is live comes from
    the applied backend table when we have it (the kernel now holds exactly
    that; apply verifies it), else from the kernel map."""
    from reconciler.apply import conntrack_gc as ct_clean
    from reconciler.datapath import conntrack as ct_table
    from reconciler.plan.diff import Action

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
    kill = next(Path(target.bpffs_root).glob(f"progs/tc-*/{ct_table.KILL_PROGRAM}"), None)
    if kill is None:
        return []  # no tc programs: nothing can hold conntrack entries
    fds = {n: bpfsys.obj_get(str(maps / n)) for n in ("rcl_ct", "rcl_nat_be", "rcl_nat_aff")}
    fds["kill"] = bpfsys.obj_get(str(kill))
    try:
        table = (
            ct_clean.backends_of(backends, services)
            if backends is not None
            else bpfsys.map_entries(fds["rcl_nat_be"])
        )
        live_ids = ct_clean.live_backends(table, services)
        removed = ct_clean.clean_conntrack(
            fds["rcl_ct"], fds["kill"], live_ids, fds["rcl_nat_aff"], services
        )
        live = {(socket_ip(ip), int.from_bytes(port, "big")) for _, ip, port in live_ids}
    finally:
        for fd in fds.values():
            bpfsys.close(fd)
    gone = {
        (c.before["ip"], c.before["port"])
        for c in left
        if c.address.startswith("map/rcl_nat_be/") and c.before
    } - live
    # `ss -K` runs once per backend and network namespace: only if it can find something
    udp_gone = gone if udp_connected else set()
    sockets = ct_clean.destroy_udp_sockets(target.cgroup or "", udp_gone) if udp_gone else 0
    return [
        ("conntrack", f"removed {removed} entries of departed backends"),
        ("sockets", f"destroyed {sockets} UDP sockets connected to departed backends"),
    ]


def udp_balanced_at_connect(plan: Plan, desired: DesiredState) -> bool:
    """Could a UDP socket be connected straight to a backend? Only if
    connect-time load balancing covers UDP (bpfConnectTimeLoadBalancing
    Enabled) now, or did until this plan changed it."""
    address = "map/rcl_nat_globals/0"
    everything = CTLB_MODES["Enabled"]
    now = desired.objects.get(address)
    if now is None or now.attrs.get("ctlb") == everything:
        return True
    return any(c.address == address and (c.before or {}).get("ctlb") == everything
               for c in plan.changes)  # fmt: skip


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
