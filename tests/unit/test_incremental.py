"""Incremental NAT compile: reusing the previous state's per-service fragments
must give exactly what a fresh compile gives, whatever changed."""

from __future__ import annotations

import random

import pytest

from reconciler.compile import compile_desired
from reconciler.model import Resource
from reconciler.services import service_fragments
from reconciler.state import Link

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
    body = {"kind": "Service", "metadata": {"name": f"s{i}", "namespace": ns}, "spec": spec}
    return Resource("Service", f"s{i}", ns, body, f"svc/s{i}.yaml", 1)


def endpoint_slice(i, rng, owner, ns="shop", suffix="a"):
    eps = [
        {
            "addresses": [f"10.{64 + rng.randrange(4)}.{i % 250}.{k + 1}"],
            "nodeName": rng.choice(["n1", "n2"]),
            "conditions": {"ready": rng.random() > 0.1},
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


def compile_(resources, ids, memo, ips=("192.168.1.10",)):
    links = [Link("eth0", 2, tuple(ips))]
    return compile_desired(
        [FELIX, *resources], "n1", links, "/sys/fs/bpf/x", "src", ids, memo, "code"
    )


def same(a, b):
    assert a.tables == b.tables
    assert a.table_info == b.table_info
    assert a.warnings == b.warnings and a.errors == b.errors


@pytest.mark.parametrize("seed", range(8))
def test_memoised_compile_equals_fresh_compile_across_random_edits(seed):
    rng = random.Random(seed)
    resources = []
    for i in range(40):
        resources.append(service(i, rng))
        resources.append(endpoint_slice(i, rng, i))
    version: dict[str, int] = {}
    ips = ("192.168.1.10",)
    previous = compile_(resources, file_ids(resources, version), None, ips)
    for step in range(12):
        kind = rng.choice(
            [
                "endpoints",
                "add-service",
                "drop-slice",
                "second-slice",
                "node-ip",
                "rename-port",
                "nothing",
            ]
        )
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
        elif kind == "node-ip":
            ips = (f"192.168.1.{10 + step}",)
        elif kind == "rename-port":
            svc = next(r for r in resources if r.kind == "Service" and r.name == f"s{i}")
            body = {
                **svc.body,
                "spec": {**svc.spec, "ports": [{"name": "web", "port": 81, "protocol": "TCP"}]},
            }
            resources[resources.index(svc)] = Resource(
                "Service", svc.name, svc.namespace, body, svc.file, 1
            )
            version[svc.file] = version.get(svc.file, 0) + 1
        ids = file_ids(resources, version)
        incremental = compile_(resources, ids, previous.nat_memo, ips)
        same(incremental, compile_(resources, ids, None, ips))
        previous = incremental


def test_unchanged_services_are_reused_and_changed_ones_recomputed():
    rng = random.Random(1)
    resources = [r for i in range(5) for r in (service(i, rng), endpoint_slice(i, rng, i))]
    ids = file_ids(resources, {})
    fragments, memo = service_fragments(resources, "n1", [], ids, None)
    again, memo2 = service_fragments(resources, "n1", [], ids, memo)
    assert all(a is b for a, b in zip(fragments, again, strict=True))  # all reused
    ids2 = {**ids, "eps/s3-a.yaml": "changed"}
    third, _ = service_fragments(resources, "n1", [], ids2, memo2)
    reused = [a is b for a, b in zip(again, third, strict=True)]
    assert reused == [True, True, True, False, True]
    # without blob ids nothing is reused (and nothing is remembered)
    assert service_fragments(resources, "n1", [], None, memo2)[1] == {}


def test_a_memo_from_other_code_is_ignored():
    rng = random.Random(2)
    resources = [service(0, rng), endpoint_slice(0, rng, 0)]
    ids = file_ids(resources, {})
    first = compile_(resources, ids, None)
    poisoned = {"code": "other", "groups": {k: None for k in first.nat_memo["groups"]}}
    same(compile_(resources, ids, poisoned), first)


def test_states_cached_by_other_code_are_never_loaded(tmp_path):
    import pickle
    from pathlib import Path

    from reconciler import pipeline

    target = pipeline.Target("n1", "/sys/fs/bpf/x", tmp_path / "state", cache_dir=tmp_path)
    path = pipeline._desired_cache_path(target, "k")
    assert path is not None and pipeline.code_fingerprint() in path.parts
    # what an older version left behind, next to and inside the cache
    legacy = Path(tmp_path / "desired" / "old.pickle")
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(pickle.dumps({"not": "a DesiredState"}))
    assert pipeline._latest_desired(path) is None
    path.parent.mkdir(parents=True)
    (path.parent / "junk.pickle").write_bytes(b"\x80\x05garbage")
    assert pipeline._latest_desired(path) is None
    rng = random.Random(3)
    resources = [service(0, rng), endpoint_slice(0, rng, 0)]
    state = compile_(resources, file_ids(resources, {}), None)
    pipeline._store_desired(path, state)
    assert pipeline._latest_desired(path) == state
    assert not legacy.exists()  # other versions' leftovers are removed on store
