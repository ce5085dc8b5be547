"""Incremental policy compile: recompiling only the endpoints a change touches
must give exactly the state a full compile gives, whatever changed."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.compile import policy_incremental as inc
from reconciler.compile.dataplane import compile_desired
from reconciler.compile.policy_objects import _workloads, policy_objects
from reconciler.config.model import Resource
from reconciler.plan.state import Link
from tests.unit.test_incremental import FELIX

APPS = ("a0", "a1", "a2", "a3")
ENDPOINTS = 8
LINKS = [Link(f"cali{i}", 10 + i) for i in range(ENDPOINTS)]
PROFILE = Resource(
    "Profile", "kns.shop", None,
    {"kind": "Profile", "metadata": {"name": "kns.shop"},
     "spec": {"labelsToApply": {"pcns.team": "blue"}}},
    "profiles.yaml", 1,
)  # fmt: skip


def wep(i: int, app: str) -> Resource:
    body = {
        "kind": "WorkloadEndpoint",
        "metadata": {"name": f"pod{i}", "namespace": "shop", "labels": {"app": app}},
        "spec": {
            "node": "n1",
            "interfaceName": f"cali{i}",
            "ipNetworks": [f"10.1.0.{i + 1}/32"],
            "profiles": ["kns.shop"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8000 + i % 3}],
        },
    }
    return Resource("WorkloadEndpoint", f"pod{i}", "shop", body, "weps.yaml", 1)


def netset(nets: list[str]) -> Resource:
    body = {"kind": "NetworkSet",
            "metadata": {"name": "ext", "namespace": "shop", "labels": {"app": "a3"}},
            "spec": {"nets": nets}}  # fmt: skip
    return Resource("NetworkSet", "ext", "shop", body, "sets.yaml", 1)


selectors = st.sampled_from(
    [f'app == "{a}"' for a in APPS] + ["all()", 'team == "blue"', "has(app)", "!has(app)"]
)
ports = st.lists(
    st.one_of(st.integers(1, 9000), st.just("http"), st.just("8000:8100")), min_size=0, max_size=2
)
rules = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["Allow", "Deny", "Pass", "Log"]),
        "protocol": st.sampled_from(["TCP", "UDP"]),
        "peer": st.one_of(
            selectors.map(lambda s: {"selector": s}),
            st.sampled_from(["10.1.0.0/30", "10.9.0.0/16", "10.1.0.3/32"]).map(
                lambda n: {"nets": [n]}
            ),
        ),
        "ports": ports,
    }
)
policies = st.fixed_dictionaries(
    {
        "selector": selectors,
        "order": st.integers(0, 5),
        "ingress": st.lists(rules, max_size=3),
        "egress": st.lists(rules, max_size=2),
        "global": st.booleans(),
    }
)


def policy(name: str, spec: dict) -> Resource:
    def rule(r: dict, local: str, remote: str) -> dict:
        out = {"action": r["action"], "protocol": r["protocol"], remote: r["peer"]}
        if r["ports"]:
            out[local] = {"ports": r["ports"]}
        return out

    body_spec = {
        "selector": spec["selector"],
        "order": spec["order"],
        "types": ["Ingress", "Egress"],
        "ingress": [rule(r, "destination", "source") for r in spec["ingress"]],
        "egress": [rule(r, "destination", "destination") for r in spec["egress"]],
    }
    if spec["global"]:
        body = {"kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": body_spec}
        return Resource("GlobalNetworkPolicy", name, None, body, f"pol/{name}.yaml", 1)
    body = {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "shop"},
            "spec": body_spec}  # fmt: skip
    return Resource("NetworkPolicy", name, "shop", body, f"pol/{name}.yaml", 1)


edits = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 6), policies),  # change or add policy p<i>
        st.tuples(st.just("drop"), st.integers(0, 6), st.none()),
        st.tuples(st.just("label"), st.integers(0, ENDPOINTS - 1), st.sampled_from(APPS)),
        st.tuples(st.just("netset"), st.none(), st.sampled_from(["10.1.0.5/32", "10.7.0.0/24"])),
    ),
    min_size=1,
    max_size=4,
)


def compile_all(resources: list[Resource], previous=None):
    return compile_desired(
        [FELIX, PROFILE, *resources], "n1", LINKS, "/sys/fs/bpf/x", "src", previous=previous
    )


def world(pols: dict[int, dict], apps: list[str], nets: list[str]) -> list[Resource]:
    return [
        *(wep(i, app) for i, app in enumerate(apps)),
        netset(nets),
        *(policy(f"p{i}", spec) for i, spec in sorted(pols.items())),
    ]


def shown(state) -> dict:
    return {a: o.info for a, o in state.objects.items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.integers(0, 6), policies, max_size=5), edits)
def test_random_edits_compile_incrementally_as_from_scratch(start, changes):
    apps = [APPS[i % len(APPS)] for i in range(ENDPOINTS)]
    nets = ["10.1.0.2/32"]
    pols = dict(start)
    previous = compile_all(world(pols, apps, nets))
    for kind, i, value in changes:
        if kind == "set":
            pols[i] = value
        elif kind == "drop":
            pols.pop(i, None)
        elif kind == "label":
            apps[i] = value
        else:
            nets = [value]
        resources = world(pols, apps, nets)
        scratch = compile_all(resources)
        incremental = compile_all(resources, previous)
        assert incremental == scratch
        assert shown(incremental) == shown(scratch)  # what plans show beside each object
        assert incremental.errors == scratch.errors
        assert incremental.policy_index == scratch.policy_index
        previous = incremental


def test_a_policy_change_recompiles_only_the_endpoints_it_selects():
    """The incremental path is taken for a policy-only change, for the
    endpoints the policy selected before or selects now (else the property
    above compares a full compile with itself), and declined for anything else."""
    apps = [APPS[i % len(APPS)] for i in range(ENDPOINTS)]
    spec = {"selector": 'app == "a1"', "order": 1, "global": False,
            "ingress": [{"action": "Allow", "protocol": "TCP", "peer": {"selector": "all()"},
                         "ports": [80]}], "egress": []}  # fmt: skip
    other = {**spec, "selector": 'app == "a2"'}
    workloads = [(f"cali{i}", 10 + i, i + 1) for i in range(ENDPOINTS)]
    asked: list[list[str]] = []

    def recording(model, chosen):
        asked.append([w[0] for w in chosen])
        return _workloads(model, chosen)

    def full(resources):
        return policy_objects([PROFILE, *resources], "n1", workloads)

    def incremental(resources, last):
        last_objects = {o.address: o for o in last.objects}
        args = ([PROFILE, *resources], "n1", workloads, ())
        return inc.recompile(*args, last_objects, last.index, recording)

    previous = full(world({0: spec, 1: other}, apps, ["10.1.0.2/32"]))
    moved = world({0: {**spec, "selector": 'app == "a3"'}, 1: other}, apps, ["10.1.0.2/32"])
    got = incremental(moved, previous)
    assert asked == [["cali1", "cali3", "cali5", "cali7"]]  # a1's before, a3's now
    want = full(moved)
    assert got is not None and got.index == want.index
    assert {o.address: (o, o.info) for o in got.objects} == {
        o.address: (o, o.info) for o in want.objects
    }
    # pod0 moves from a0 to a2: its own chain, and those of the endpoints whose
    # policies' rules pick it (all() in both): every endpoint p0 or p1 selects
    relabelled = world({0: spec, 1: other}, ["a2", *apps[1:]], ["10.1.0.2/32"])
    got = incremental(relabelled, previous)
    assert asked[1] == ["cali0", "cali1", "cali2", "cali5", "cali6"]
    want = full(relabelled)
    assert got is not None and got.index == want.index
    assert {o.address: o for o in got.objects} == {o.address: o for o in want.objects}
    renamed = dataclasses.replace(PROFILE, body={**PROFILE.body, "spec": {"labelsToApply": {}}})
    last_objects = {o.address: o for o in previous.objects}
    args = ([renamed, *relabelled], "n1", workloads, ())
    assert inc.recompile(*args, last_objects, previous.index, recording) is None  # a Profile
    assert len(asked) == 2


def test_a_stored_state_keeps_its_policy_index_and_entries_outside_the_pickle():
    """The index and the map entries are stored as marshal sections: the
    state loads equal, with its index, and the pickled skeleton holds neither."""
    import pickle

    from reconciler.engine import store

    spec = {"selector": "all()", "order": 1, "global": True, "egress": [],
            "ingress": [{"action": "Allow", "protocol": "TCP", "peer": {"nets": ["10.9.0.0/16"]},
                         "ports": ["http"]}]}  # fmt: skip
    state = compile_all(world({0: spec}, list(APPS * 2), ["10.1.0.2/32"]))
    assert state.policy_index is not None
    data = store.encode(state)
    loaded = store.decode(data)
    assert loaded == state and loaded.policy_index == state.policy_index
    _, size, _ = store._HEADER.unpack_from(data)
    skeleton, sections = pickle.loads(data[store._HEADER.size : store._HEADER.size + size])
    assert "entries" in sections and "policy_index" in sections
    assert skeleton.policy_index is None
    assert not any(o.kind.value == "entry" for o in skeleton.objects.values())
    assert any(o.kind.value == "entry" for o in state.objects.values())


def test_a_rule_that_cannot_be_enforced_is_the_same_error_either_way():
    apps = [APPS[i % len(APPS)] for i in range(ENDPOINTS)]
    spec = {"selector": 'app == "a1"', "order": 1, "global": False, "egress": [],
            "ingress": [{"action": "Allow", "protocol": "TCP", "peer": {"selector": "all()"},
                         "ports": [80]}]}  # fmt: skip
    previous = compile_all(world({0: spec}, apps, ["10.1.0.2/32"]))
    bad = policy("p0", spec)
    rule = bad.body["spec"]["ingress"][0]
    rule["source"] = {**rule["source"], "notPorts": ["http"]}
    resources = [*world({}, apps, ["10.1.0.2/32"]), bad]
    scratch, incremental = compile_all(resources), compile_all(resources, previous)
    assert scratch.errors == incremental.errors
    assert "policy/shop/p0 ingress rule 1: source.notPorts names port 'http'" in scratch.errors[0]


def test_a_stored_index_of_another_shape_is_no_index():
    """Anything but what as_plain() wrote reads as no index: the next compile is full."""
    from reconciler.compile.policy_index import PolicyIndex

    good = PolicyIndex("c", {"NetworkPolicy/shop/p0": "d"}, {"policy/shop/p0": ("shop/pod0",)},
                       {"NetworkSet/shop/ext": ("NetworkSet", "shop", {}, [], [], None, {})},
                       {"shop/pod0": "cali0"})  # fmt: skip
    assert PolicyIndex.from_plain(good.as_plain()) == good
    for bad in ({}, {**good.as_plain(), "context": 1}, {**good.as_plain(), "peers": []}, None):
        assert PolicyIndex.from_plain(bad) is None


def test_a_policy_change_is_stored_as_a_delta_that_loads_with_its_own_index(tmp_path):
    """A state the incremental compile derived keeps most entries as the base's
    own objects: it is stored as their changes on the base, and loads in a new
    process equal to a full compile, with its own policy index (not the base's)."""
    from reconciler.engine import store

    spec = {"selector": f"app == '{APPS[0]}'", "order": 1, "egress": [], "global": False,
            "ingress": [{"action": "Allow", "protocol": "TCP", "ports": [8080],
                         "peer": {"selector": f"app == '{APPS[1]}'"}}]}  # fmt: skip
    # policies of the other apps, with many entries each: kept as they are
    others = {
        i: {**spec, "selector": f"app == '{APPS[1 + i % 3]}'", "ingress": [{
            **spec["ingress"][0], "peer": {"nets": [f"10.{i}.0.{j}/32" for j in range(40)]}}]}
        for i in range(1, 6)
    }  # fmt: skip
    apps, nets = [APPS[i % len(APPS)] for i in range(ENDPOINTS)], ["10.1.0.2/32"]
    first = compile_all(world({0: spec, **others}, apps, nets))
    states = store.StateStore.under(tmp_path)
    states.store("first", first)
    moved = {**spec, "ingress": [{**spec["ingress"][0], "ports": [8081]}]}
    resources = world({0: moved, **others}, apps, nets)
    derived = compile_all(resources, first)
    assert derived.policy_index != first.policy_index
    states.store("derived", derived)
    assert store.base_of(states.path("derived").read_bytes()) == states.path("first").name
    loaded = store.StateStore.under(tmp_path).load("derived")
    assert loaded is not None
    assert loaded[0] == compile_all(resources) and loaded[0].policy_index == derived.policy_index
