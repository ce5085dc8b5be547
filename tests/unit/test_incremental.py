"""Incremental NAT compile: updating the previous state for the services the
changed files feed must give exactly what a full compile gives, whatever changed."""

from __future__ import annotations

import random

import pytest

from reconciler.compile import nat_tables as nat_compile
from reconciler.compile.dataplane import compile_desired
from reconciler.config.model import Resource
from reconciler.plan.diff import diff
from reconciler.plan.state import UNRECOGNISED, Link, ObservedState, Recognition

FELIX = Resource(
    "FelixConfiguration",
    "default",
    None,
    {"kind": "FelixConfiguration", "metadata": {"name": "default"}, "spec": {"bpfEnabled": True}},
    "felix.yaml",
    1,
)


def service(i, rng, ns="shop"):
    spec = {
        "clusterIP": f"10.96.{i // 250}.{i % 250 + 1}",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    if rng.random() < 0.3:
        spec.update(type="NodePort", externalTrafficPolicy=rng.choice(["Local", "Cluster"]))
        spec["ports"][0]["nodePort"] = 30000 + i
    if rng.random() < 0.2:
        spec["sessionAffinity"] = "ClientIP"
    if rng.random() < 0.2:
        spec["ports"].append({"name": "dns", "port": 53, "protocol": "UDP"})
    if rng.random() < 0.15:  # not load-balanced: a warning to carry along
        spec["ports"].append({"name": "sig", "port": 3868, "protocol": "SCTP"})
    body = {"kind": "Service", "metadata": {"name": f"s{i}", "namespace": ns}, "spec": spec}
    if rng.random() < 0.2:  # a load balancer IP, maybe bound to source ranges
        spec["type"] = "LoadBalancer"
        ranges = ["192.0.2.0/24", "10.8.0.0/16", "2001:db8::/32", f"172.16.{i % 250}.0/24"]
        spec["loadBalancerSourceRanges"] = rng.sample(ranges, rng.randrange(0, 3))
        if rng.random() < 0.7:  # (two services naming one port: test_services)
            spec.update(externalTrafficPolicy="Local", healthCheckNodePort=32000 + i)
        body["status"] = {"loadBalancer": {"ingress": [{"ip": f"198.51.{i // 250}.{i % 250}"}]}}
    return Resource("Service", f"s{i}", ns, body, f"svc/s{i}.yaml", 1)


def endpoint_slice(i, rng, owner, ns="shop", suffix="a"):
    eps = [
        {
            "addresses": [f"10.{64 + rng.randrange(4)}.{i % 250}.{k + 1}"],
            "nodeName": rng.choice(["n1", "n2"]),
            "conditions": rng.choice(
                [
                    {"ready": True},
                    {"ready": True},
                    {},
                    {"ready": False},
                    {"ready": False, "serving": True, "terminating": True},
                ]
            ),
        }
        for k in range(rng.randrange(0, 5))
    ]
    body = {
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {
            "name": f"s{owner}-{suffix}",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": f"s{owner}"},
        },
        "ports": [
            {"name": "http", "port": 8080, "protocol": "TCP"},
            {"name": "dns", "port": 5353, "protocol": "UDP"},
        ],
        "endpoints": eps,
    }
    return Resource(
        "EndpointSlice", body["metadata"]["name"], ns, body, f"eps/s{owner}-{suffix}.yaml", 1
    )


def file_ids(resources, version):
    """Blob ids per file: a file's id moves when any resource in it moved."""
    ids = {}
    for r in resources:
        ids[r.file] = f"{ids.get(r.file, '')}|{version.get(r.file, 0)}"
    return ids


def compile_(resources, ids, ips=("192.168.1.10",)):
    links = [Link("eth0", 2, tuple(ips))]
    return compile_desired([FELIX, *resources], "n1", links, "/sys/fs/bpf/x", "src", ids, "ctx")


def same(a, b):
    assert a.tables == b.tables
    assert a.health_checks == b.health_checks
    assert a.table_info == b.table_info
    assert a.warnings == b.warnings and a.errors == b.errors
    assert a.objects == b.objects and a.build == b.build
    ia, ib = a.nat_index, b.nat_index
    assert (ia.files, ia.owners, ia.feeders, ia.ids, ia.counts) == (
        ib.files, ib.owners, ib.feeders, ib.ids, ib.counts,
    )  # fmt: skip
    assert ia.service_warnings == ib.service_warnings
    assert ia.others == ib.others


def by_file(resources):
    out: dict[str, list] = {}
    for r in resources:
        out.setdefault(r.file, []).append(r)
    return out


def incremental(previous, before, after, ids):
    """nat_compile.update fed the way the pipeline feeds it: the state, or None."""
    derived = derive(previous, before, after, ids)
    return None if derived is None else derived[0]


def derive(previous, before, after, ids):
    """nat_compile.update fed the way the pipeline feeds it: (state, the keys that moved)."""
    old_files, new_files = by_file(before), by_file(after)
    changed = nat_compile.changed_paths(previous.nat_index, ids)
    old = {p: old_files.get(p, []) for p in changed if p in previous.nat_index.files}
    new = {p: new_files.get(p, []) for p in changed if p in ids}
    needed = nat_compile.needs(previous.nat_index, old, new)
    return nat_compile.update(previous, ids, old, new, {p: new_files[p] for p in needed})


@pytest.mark.parametrize("seed", range(8))
def test_incremental_update_equals_full_compile_across_random_edits(seed):
    rng = random.Random(seed)
    resources = []
    for i in range(40):
        resources.append(service(i, rng))
        resources.append(endpoint_slice(i, rng, i))
    version: dict[str, int] = {}
    previous = compile_(resources, file_ids(resources, version))
    updated = 0
    for step in range(14):
        before = list(resources)
        kind = rng.choice(
            ["endpoints", "add-service", "drop-slice", "second-slice", "rename-port",
             "drop-service", "move-slice", "nothing"]
        )  # fmt: skip
        i = rng.randrange(40)
        if kind == "endpoints":
            slices = [r for r in resources if r.kind == "EndpointSlice"]
            old = rng.choice(slices)
            new = endpoint_slice(
                i, rng, int(old.name[1:].split("-")[0]), suffix=old.name.split("-")[1]
            )
            resources[resources.index(old)] = new
            version[new.file] = version.get(new.file, 0) + 1
        elif kind == "add-service":
            n = 100 + step
            resources += [service(n, rng), endpoint_slice(n, rng, n)]
        elif kind == "drop-slice":
            slices = [r for r in resources if r.kind == "EndpointSlice"]
            resources.remove(rng.choice(slices))
        elif kind == "second-slice":
            resources.append(endpoint_slice(i, rng, i, suffix=f"x{step}"))
        elif kind == "drop-service":
            victims = [r for r in resources if r.kind == "Service" and r.name == f"s{i}"]
            for r in victims:
                resources.remove(r)
        elif kind == "move-slice":  # one file now holds a service and another's slice
            slices = [r for r in resources if r.kind == "EndpointSlice"]
            moved = rng.choice(slices)
            target = rng.choice([r for r in resources if r.kind == "Service"])
            resources[resources.index(moved)] = Resource(
                moved.kind, moved.name, moved.namespace, moved.body, target.file, 9
            )
            version[target.file] = version.get(target.file, 0) + 1
        elif kind == "rename-port":
            svc = next((r for r in resources if r.kind == "Service" and r.name == f"s{i}"), None)
            if svc is not None:
                body = {
                    **svc.body,
                    "spec": {**svc.spec, "ports": [{"name": "web", "port": 81, "protocol": "TCP"}]},
                }
                resources[resources.index(svc)] = Resource(
                    "Service", svc.name, svc.namespace, body, svc.file, 1
                )
                version[svc.file] = version.get(svc.file, 0) + 1
        ids = file_ids(resources, version)
        full = compile_(resources, ids)
        derived = derive(previous, before, resources, ids)
        got = None if derived is None else derived[0]
        if derived is not None:
            same(got, full)
            updated += 1
            # a kernel still at the previous state: the diff from the touched
            # keys alone equals the diff from a scan of every key
            known = Recognition.derived(previous, UNRECOGNISED, derived[1])
            assert known.table_base
            kernel = ObservedState(dict(got.objects), (), previous.tables)
            assert diff(got, kernel, known) == diff(got, kernel)
        previous = full if got is None else got
    assert updated >= 10  # the fast path is the common path, not a rare one


def test_changes_beyond_services_fall_back_to_a_full_compile():
    rng = random.Random(4)
    resources = [r for i in range(3) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    ids = file_ids(resources, {})
    previous = compile_(resources, ids)
    # a Felix or endpoint resource in a changed file: interfaces may move
    felix2 = Resource(FELIX.kind, "node.n1", None, FELIX.body, "svc/s0.yaml", 5)
    after = [*resources, felix2]
    assert incremental(previous, resources, after, file_ids(after, {"svc/s0.yaml": 1})) is None
    # a second definition of an existing service: the full path reports it
    dup = Resource("Service", "s1", "shop", resources[2].body, "svc/dup.yaml", 1)
    after = [*resources, dup]
    assert incremental(previous, resources, after, file_ids(after, {})) is None
    # an unchanged feeder missing from what the caller could load
    changed = [endpoint_slice(0, rng, 0) if r.name == "s0-a" else r for r in resources]
    new_ids = file_ids(changed, {"eps/s0-a.yaml": 1})
    old = {"eps/s0-a.yaml": [r for r in resources if r.file == "eps/s0-a.yaml"]}
    new = {"eps/s0-a.yaml": [r for r in changed if r.file == "eps/s0-a.yaml"]}
    assert nat_compile.needs(previous.nat_index, old, new) == {"svc/s0.yaml"}
    assert nat_compile.update(previous, new_ids, old, new, {}) is None
    # ... and with it, exactly the full compile
    svc_file = {"svc/s0.yaml": [r for r in resources if r.file == "svc/s0.yaml"]}
    derived = nat_compile.update(previous, new_ids, old, new, svc_file)
    assert derived is not None
    same(derived[0], compile_(changed, new_ids))


def test_a_frontend_claimed_twice_always_compiles_in_full():
    rng = random.Random(5)
    a, b = service(0, rng), service(1, rng)
    b = Resource("Service", "s1", "shop", {**b.body, "spec": a.spec}, b.file, 1)  # same VIP
    resources = [a, b, endpoint_slice(0, rng, 0), endpoint_slice(1, rng, 1)]
    previous = compile_(resources, file_ids(resources, {}))
    assert previous.nat_index.conflicts
    assert any("is also used by" in w for w in previous.warnings)
    changed = [endpoint_slice(0, rng, 0) if r.name == "s0-a" else r for r in resources]
    ids = file_ids(changed, {"eps/s0-a.yaml": 1})
    assert incremental(previous, resources, changed, ids) is None


def test_states_cached_by_other_code_are_never_loaded(tmp_path):
    import pickle
    from pathlib import Path

    from reconciler.engine import store as desired_cache

    states = desired_cache.StateStore.under(tmp_path)
    path = states.path("k")
    assert desired_cache.code_fingerprint() in path.parts
    # what an older version left behind, next to and inside the cache
    legacy = Path(tmp_path / "desired" / "old.state")
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(pickle.dumps({"not": "a DesiredState"}))
    assert states.latest() is None
    path.parent.mkdir(parents=True)
    (path.parent / "junk.state").write_bytes(b"RCL2garbage")
    assert states.latest() is None
    (path.parent / "junk.state").write_bytes(
        desired_cache._HEADER.pack(b"RCL2", 20, b"") + pickle.dumps(["a list"])
    )
    assert states.latest() is None
    # a delta whose base is gone
    (path.parent / "junk.state").write_bytes(
        desired_cache._HEADER.pack(b"RCL2", 20, b"gone.state") + pickle.dumps(["a list"])
    )
    assert states.latest() is None
    rng = random.Random(3)
    resources = [service(0, rng), endpoint_slice(0, rng, 0)]
    state = compile_(resources, file_ids(resources, {}))
    states.store("k", state)
    back, _ = states.latest()
    assert back == state
    same(back, state)  # the NAT index survives the round trip too
    assert not legacy.exists()  # other versions' leftovers are removed on store


def test_a_kernel_that_drifted_from_the_base_table_is_scanned_in_full():
    rng = random.Random(6)
    resources = [r for i in range(4) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    previous = compile_(resources, file_ids(resources, {}))
    changed = [endpoint_slice(0, rng, 0) if r.name == "s0-a" else r for r in resources]
    ids = file_ids(changed, {"eps/s0-a.yaml": 1})
    derived = derive(previous, resources, changed, ids)
    assert derived is not None
    got, touched = derived
    known = Recognition.derived(previous, UNRECOGNISED, touched)
    assert known.table_base and known.table_base["rcl_nat_be"][1] == touched["rcl_nat_be"]
    # someone deleted a backend of an untouched service by hand
    drifted = {name: dict(table) for name, table in previous.tables.items()}
    untouched = next(k for k in drifted["rcl_nat_be"] if k not in touched["rcl_nat_be"])
    del drifted["rcl_nat_be"][untouched]
    changes = diff(got, ObservedState(dict(got.objects), (), drifted), known)
    assert changes == diff(got, ObservedState(dict(got.objects), (), drifted))
    from reconciler.datapath.maps import codecs as entries

    text, _ = entries.decode_one(
        "rcl_nat_be", untouched, got.tables["rcl_nat_be"][untouched], entries.Context({})
    )
    assert f"map/rcl_nat_be/{text}" in {c.address for c in changes if c.action.value == "create"}


def new_process(states):
    """The same directory's store as the next command would have it: nothing in memory."""
    return type(states)(states.directory)


def test_derived_states_are_stored_as_deltas_and_load_equal(tmp_path):
    """An incrementally derived state is written as its changes against the
    full state it came from, and reads back equal to a full compile, also
    when the next edit builds on the loaded delta in a new process."""
    from reconciler.engine import store as desired_cache

    rng = random.Random(5)
    resources = [r for i in range(30) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    version: dict[str, int] = {}
    first = compile_(resources, file_ids(resources, version))
    states = desired_cache.StateStore.under(tmp_path)
    base = states.path("base")
    states.store("base", first)
    full_size = base.stat().st_size
    previous = first
    for step in range(6):
        before = list(resources)
        slices = [r for r in resources if r.kind == "EndpointSlice"]
        old = slices[rng.randrange(len(slices))]
        n = int(old.name[1:].split("-")[0])
        new = endpoint_slice(step, rng, n, suffix=old.name.split("-")[1])
        resources[resources.index(old)] = new
        version[new.file] = version.get(new.file, 0) + 1
        ids = file_ids(resources, version)
        got = incremental(previous, before, resources, ids)
        assert got is not None
        path = states.path(f"s{step}")
        states.store(f"s{step}", got)
        assert desired_cache.base_of(path.read_bytes()) == base.name
        assert path.stat().st_size < full_size / 2
        states = new_process(states)
        loaded = states.load(f"s{step}")
        assert loaded is not None
        same(loaded[0], compile_(resources, ids))
        previous = loaded[0]
    # the base outlives the pruning of newer states as long as a delta needs it
    for step in range(10):
        states.store(f"more{step}", previous, keep=2)
    assert base.exists() and states.load("more9") is not None


def test_the_applied_state_is_the_base_of_choice(tmp_path):
    """Plans of pending edits must not push out the state the kernel holds:
    the next compile builds on the applied one, whose tables the kernel has."""
    from reconciler.engine import store as desired_cache

    rng = random.Random(8)
    resources = [r for i in range(2) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    applied = compile_(resources, file_ids(resources, {}))
    pending = compile_(resources[:2], file_ids(resources[:2], {}))
    states = desired_cache.StateStore.under(tmp_path)
    states.store("a", applied)
    states.note_applied(applied)
    states.store("b", pending)  # a later --plan of an edit not applied yet
    states = new_process(states)
    same(states.latest()[0], applied)
    (states.directory / desired_cache.APPLIED).unlink()
    states = new_process(states)
    same(states.latest()[0], pending)  # no record: the newest


def test_a_local_list_that_comes_and_goes_is_updated_incrementally():
    """ETP Local: the local pod terminates (its own list and id appear), then a
    new local pod is ready (they go): the incremental path follows both."""
    rng = random.Random(9)
    body = service(0, rng).body
    spec = {
        "clusterIP": "10.96.0.1",
        "type": "NodePort",
        "externalTrafficPolicy": "Local",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
    }
    svc = Resource("Service", "s0", "shop", {**body, "spec": spec}, "svc/s0.yaml", 1)

    def slice_with(local_conditions):
        sl = endpoint_slice(0, rng, 0)
        eps = [
            {"addresses": ["10.64.0.1"], "nodeName": "n1", "conditions": local_conditions},
            {"addresses": ["10.64.0.2"], "nodeName": "n2", "conditions": {"ready": True}},
        ]
        return Resource(sl.kind, sl.name, sl.namespace, {**sl.body, "endpoints": eps}, sl.file, 1)

    steps = [
        {"ready": True},
        {"ready": False, "serving": True, "terminating": True},
        {"ready": True},
    ]
    resources = [svc, slice_with(steps[0])]
    previous = compile_(resources, file_ids(resources, {}))
    for n, conditions in enumerate(steps[1:], start=1):
        before, resources = resources, [svc, slice_with(conditions)]
        ids = file_ids(resources, {"eps/s0-a.yaml": n})
        got = incremental(previous, before, resources, ids)
        assert got is not None
        same(got, compile_(resources, ids))
        split = any("local endpoints" in i["frontend"] for i in got.table_info.values())
        assert split == (n == 1)
        previous = got


def raw(table):
    from reconciler.plan.state import RawTable

    items = list(table.items())
    size = (len(items[0][0]), len(items[0][1])) if items else (8, 8)
    return RawTable(b"".join(k for k, _ in items), b"".join(v for _, v in items), *size)


def test_raw_tables_act_as_mappings_and_name_their_bytes():
    rng = random.Random(10)
    resources = [r for i in range(3) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    table = compile_(resources, file_ids(resources, {})).tables["rcl_nat_be"]
    seen = raw(table)
    assert seen == table and table == seen and len(seen) == len(table)
    assert dict(seen) == dict(table) and set(seen) == set(table)
    assert seen.digest == raw(table).digest
    reordered = raw(dict(reversed(list(table.items()))))
    assert reordered == seen and reordered.digest != seen.digest  # same entries, other bytes


def stored_state(tmp_path, seed: int):
    """A small compiled state stored in a fresh cache: (state, its store, the resources)."""
    from reconciler.engine import store as desired_cache

    rng = random.Random(seed)
    resources = [r for i in range(3) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    state = compile_(resources, file_ids(resources, {}))
    states = desired_cache.StateStore.under(tmp_path)
    states.store("s", state)
    return state, states, resources


def test_a_recorded_kernel_digest_skips_the_table_comparison(tmp_path):
    """The applied record's digests stand for the tables the state had: an
    identical kernel copy needs no comparison; any other bytes get the full one."""

    state, states, resources = stored_state(tmp_path, 11)
    kernel = {name: raw(t) for name, t in state.tables.items()}
    states.note_applied(state, {name: t.digest for name, t in kernel.items()})
    states = new_process(states)
    stored = states.load("s")
    assert stored is not None
    loaded, known = stored
    assert known.kernel_digests == {n: t.digest for n, t in kernel.items()}
    assert diff(loaded, ObservedState(dict(loaded.objects), (), kernel), known) == ()
    # a hand edit changes the kernel's bytes: compared in full, and found
    edited = dict(state.tables["rcl_nat_be"])
    key = next(iter(edited))
    edited[key] = bytes(len(edited[key]))
    kernel["rcl_nat_be"] = raw(edited)
    changes = diff(loaded, ObservedState(dict(loaded.objects), (), kernel), known)
    assert [c.action.value for c in changes] == ["update"]
    # the digests belong to the applied state only, and never reach the file
    states.store("other", compile_(resources[:2], file_ids(resources[:2], {})))
    states = new_process(states)
    again = states.load("other")
    assert again is not None and again[1] == UNRECOGNISED
    assert all(t.digest.encode() not in states.path("s").read_bytes() for t in kernel.values())


def test_an_applied_dump_recognises_the_table_its_writes_left():
    """A hash map's update moves the written key within its bucket and leaves
    every other entry where it was: the dump read before the apply, minus the
    written keys, recognises the table after it, and nothing else."""
    from reconciler.plan.state import AppliedDump, recognised

    rng = random.Random(12)
    before = {bytes([i, rng.randrange(256)]) * 4: bytes([i]) * 8 for i in range(200)}
    order = list(before)
    rng.shuffle(order)
    dump = raw({k: before[k] for k in order})
    changed, gone, added = order[17], order[80], b"\xfe" * 8
    after = dict(before)
    after[changed] = b"\x01" * 8
    del after[gone]
    after[added] = b"\x02" * 8
    # the kernel's order afterwards: the changed key moved to the head of
    # "its bucket", the new one somewhere else, the deleted one gone
    kernel_order = [k for k in order if k not in (changed, gone)]
    kernel_order.insert(5, changed)
    kernel_order.insert(120, added)
    now = raw({k: after[k] for k in kernel_order})
    mark = AppliedDump.of(dump, frozenset({changed, gone, added}))
    assert now.digest != dump.digest
    assert recognised(mark, now, after)
    # what the state says must be what the written keys hold
    assert not recognised(mark, now, {**after, changed: b"\x03" * 8})
    assert not recognised(mark, now, {**after, gone: b"\x00" * 8})
    # any other difference is a hand edit or another writer: not recognised
    edited = dict(after)
    other = kernel_order[60]
    edited[other] = b"\x09" * 8
    assert not recognised(mark, raw({k: edited[k] for k in kernel_order}), edited)
    reordered = raw({k: after[k] for k in reversed(kernel_order)})
    assert not recognised(mark, reordered, after)  # unwritten entries never move
    assert recognised(now.digest, now, after) and not recognised(None, now, after)


def test_an_apply_recorded_by_its_dumps_needs_no_comparison_later(tmp_path):
    """The applied record can name the tables by the dumps the apply wrote
    over instead of digests read after it: a later plan of the same state
    against the kernel's new bytes finds nothing to do, through a new process."""
    from reconciler.plan.state import AppliedDump

    state, states, _ = stored_state(tmp_path, 13)
    table = dict(state.tables["rcl_nat_be"])
    written = next(iter(table))
    stale = {**table, written: bytes(len(table[written]))}  # before the apply
    before_order = list(stale)
    after_order = [written, *(k for k in before_order if k != written)]
    kernel = {name: raw(t) for name, t in state.tables.items()}
    kernel["rcl_nat_be"] = raw({k: table[k] for k in after_order})
    dumps = {"rcl_nat_be": AppliedDump.of(raw(stale), frozenset({written}))}
    states.note_applied(state, {"rcl_nat_fe": kernel["rcl_nat_fe"].digest}, dumps)
    states = new_process(states)
    stored = states.load("s")
    assert stored is not None
    loaded, known = stored
    assert set(known.kernel_dumps) == {"rcl_nat_be"}
    assert diff(loaded, ObservedState(dict(loaded.objects), (), kernel), known) == ()
    # the same state against a kernel someone edited is compared, and differs
    other = before_order[-1]
    kernel["rcl_nat_be"] = raw({**{k: table[k] for k in after_order}, other: bytes(8)})
    changes = diff(loaded, ObservedState(dict(loaded.objects), (), kernel), known)
    assert [c.action.value for c in changes] == ["update"]


def wep(name, iface):
    body = {
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"node": "n1", "interfaceName": iface, "ipNetworks": ["10.65.0.9/32"]},
    }
    return Resource("WorkloadEndpoint", name, "shop", body, "pods.yaml", 1)


def test_links_that_come_and_go_keep_the_tables_and_equal_a_full_compile():
    """A new pod's veth (or one gone): the service tables are kept, the rest
    comes from a compile of the non-service files; as a full compile, and
    diffed by the untouched keys alone."""
    rng = random.Random(9)
    resources = [r for i in range(30) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    resources += [wep("a", "cali-a"), wep("b", "cali-b")]
    ids = file_ids([FELIX, *resources], {})
    others = {p: ids[p] for p in ("felix.yaml", "pods.yaml")}
    eth0 = Link("eth0", 2, ("192.168.1.10",))
    a, b = Link("cali-a", 7, ()), Link("cali-b", 8, ())
    steps = [[eth0], [eth0, a], [eth0, a, b], [eth0, b]]
    previous = None
    assert compile_(resources, ids).nat_index.others == ("felix.yaml", "pods.yaml")
    for links in steps:
        full = compile_desired([FELIX, *resources], "n1", links, "/sys/fs/bpf/x", "src", ids, "c")
        if previous is not None:
            sub = [FELIX, *(r for r in resources if r.kind == "WorkloadEndpoint")]
            part = compile_desired(sub, "n1", links, "/sys/fs/bpf/x", "src", others)
            derived = nat_compile.relink(previous, part, "c")
            assert derived is not None
            got, touched = derived
            same(got, full)
            assert got.nat_index.context == "c"
            assert touched == {name: frozenset() for name in previous.tables}
            known = Recognition.derived(previous, UNRECOGNISED, touched)
            kernel = ObservedState(dict(got.objects), (), previous.tables)
            assert diff(got, kernel, known) == diff(got, kernel)
            previous = got
        else:
            previous = full
    assert {"tc/cali-b/ingress"} <= set(
        previous.objects
    ) and "tc/cali-a/ingress" not in previous.objects
    # the node's data address moved (NodePorts answer on it): compile in full
    moved = [Link("eth0", 2, ("192.168.1.11",))]
    part = compile_desired([FELIX], "n1", moved, "/sys/fs/bpf/x", "src", {"felix.yaml": "x"})
    assert part.nat_index.node_ips == ("192.168.1.11",)
    assert nat_compile.relink(previous, part, "c2") is None
    # interface compile without an index (no file ids): nothing to compare, compile in full
    bare = compile_desired([FELIX], "n1", [eth0], "/sys/fs/bpf/x", "src")
    assert nat_compile.relink(previous, bare, "c2") is None


def test_addresses_excluded_from_nat_get_no_frontend_in_full_or_incremental_compiles():
    """bpfExcludeCIDRsFromNAT (a node-local DNS cache on the cluster DNS IP):
    a frontend within it is not programmed, the rest of the service is, and
    a services-only change keeps it out."""
    from reconciler.datapath.maps.codecs import fe_key

    spec = {**FELIX.body["spec"], "bpfExcludeCIDRsFromNAT": ["10.96.0.10/32", "fd00::/64"]}
    felix = Resource(FELIX.kind, FELIX.name, None, {**FELIX.body, "spec": spec}, FELIX.file, 1)
    rng = random.Random(3)
    body = service(0, rng).body
    svc_spec = {
        "clusterIP": "10.96.0.10",
        "externalIPs": ["10.200.0.10"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    }
    svc = Resource("Service", "s0", "shop", {**body, "spec": svc_spec}, "svc/s0.yaml", 1)

    def compiled(resources, ids):
        links = [Link("eth0", 2, ("192.168.1.10",))]
        return compile_desired([felix, *resources], "n1", links, "/sys/fs/bpf/x", "src", ids,
                               "ctx")  # fmt: skip

    def frontends(state):
        keys = set(state.tables["rcl_nat_fe"])
        return {vip for vip in ("10.96.0.10", "10.200.0.10") if fe_key(vip, 80, "tcp") in keys}

    resources = [svc, endpoint_slice(0, rng, 0)]
    previous = compiled(resources, file_ids(resources, {}))
    assert frontends(previous) == {"10.200.0.10"}
    assert frontends(compile_(resources, file_ids(resources, {}))) == {"10.96.0.10", "10.200.0.10"}
    before, resources = resources, [svc, endpoint_slice(0, random.Random(4), 0)]
    ids = file_ids(resources, {"eps/s0-a.yaml": 1})
    got = incremental(previous, before, resources, ids)
    assert got is not None
    same(got, compiled(resources, ids))
    assert frontends(got) == {"10.200.0.10"}
