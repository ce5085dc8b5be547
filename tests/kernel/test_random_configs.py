"""Random small configs on a real sandbox node (hypothesis).

Each example applies a random config (services, workload endpoints, policy,
a host endpoint with or without untracked policy, an IP pool with or
without natOutgoing) to whatever the previous
example left in the kernel (so the starting kernels are random too), checks that the next plan
is "No changes.", applies a random change (often one that touches Services
and EndpointSlices only, which takes the incremental compile path) and checks
"No changes." again. After each apply, the state the cached pipeline compiled
equals a full compile of the same source. Hypothesis keeps its example
database under .hypothesis/ (ignored by git)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.netns import Pod, Sandbox
from tests.kernel.conftest import FELIX, PODS, WEP
from tests.kernel.test_host import DENY_ALL_INGRESS, HEP, UNTRACKED
from tests.kernel.test_nat_outgoing import POOL

POD_IPS = tuple(p.ip for p in PODS)


@dataclass(frozen=True)
class Svc:
    index: int
    port: int
    protocol: str
    node_port: bool
    affinity: bool
    backends: tuple[str, ...]
    ready: bool

    def yaml(self) -> str:
        name = f"s{self.index}"
        lines = [
            "apiVersion: v1",
            "kind: Service",
            f"metadata: {{name: {name}, namespace: shop}}",
            "spec:",
            f"  clusterIP: 10.96.1.{self.index + 1}",
            f"  type: {'NodePort' if self.node_port else 'ClusterIP'}",
            "  ports:",
            f"    - {{name: p, port: {self.port}, targetPort: 8080, protocol: {self.protocol}"
            + (f", nodePort: {30000 + self.index}}}" if self.node_port else "}"),
        ]
        if self.affinity:
            lines.append("  sessionAffinity: ClientIP")
        lines += [
            "---",
            "apiVersion: discovery.k8s.io/v1",
            "kind: EndpointSlice",
            "metadata:",
            f"  name: {name}-1",
            "  namespace: shop",
            f"  labels: {{kubernetes.io/service-name: {name}}}",
            "addressType: IPv4",
            f"ports: [{{name: p, port: 8080, protocol: {self.protocol}}}]",
            "endpoints:" if self.backends else "endpoints: []",
        ]
        lines += [
            f'  - addresses: ["{ip}"]\n    conditions: {{ready: {str(self.ready).lower()}}}'
            for ip in self.backends
        ]
        return "\n".join(lines) + "\n"


# Host endpoint shapes: none, one under its profile, one whose ingress a
# policy denies, and one with an untracked (XDP) deny as well.
HOST = {
    "none": (),
    "profile": (HEP,),
    "deny": (HEP, DENY_ALL_INGRESS),
    "untracked": (HEP, DENY_ALL_INGRESS, UNTRACKED),
}
# Workload policy shapes: none, an ingress allow on one port, an egress deny
# of UDP, and both in tiers of their own order.
POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: app == "front0"
  {rules}
"""
POLICIES = {
    "none": (),
    "allow": (POLICY.format(name="allow", rules="ingress: [{action: Allow, protocol: TCP, "
                                                "destination: {ports: [8080]}}]"),),
    "deny": (POLICY.format(name="deny", rules="egress: [{action: Deny, protocol: UDP}]"),),
    "both": (
        POLICY.format(name="allow", rules="ingress: [{action: Allow, protocol: TCP, "
                                          "destination: {ports: [8080]}}]"),
        POLICY.format(name="deny", rules="egress: [{action: Deny, protocol: UDP}]"),
    ),
}


@dataclass(frozen=True)
class Config:
    enabled: bool
    pattern: str
    ctlb: str
    weps: tuple[str, ...]
    services: tuple[Svc, ...]
    host: str = "none"
    policy: str = "none"
    host_nat: str = ""  # bpfHostNetworkedNATWithoutCTLB; "": unset
    # an IP pool: none, one without natOutgoing, one masqueraded, one SNATed
    # to an address on a port range
    nat: str = "none"

    def files(self) -> dict[str, str]:
        felix = FELIX.format(enabled=str(self.enabled).lower(), pattern=self.pattern)
        felix += f"  bpfConnectTimeLoadBalancing: {self.ctlb}\n"
        if self.host_nat:
            felix += f"  bpfHostNetworkedNATWithoutCTLB: {self.host_nat}\n"
        if self.nat == "snat":
            felix += "  natOutgoingAddress: 192.168.50.1\n  natPortRange: '20000:29999'\n"
        out = {"felix.yaml": felix}
        if self.nat != "none":
            out["pool.yaml"] = POOL.format(nat=str(self.nat in ("masq", "snat")).lower())
        for pod in PODS:
            if pod.name in self.weps:
                out[f"wep-{pod.name}.yaml"] = WEP.format(name=pod.name, ip=pod.ip)
        for svc in self.services:
            out[f"svc/s{svc.index}.yaml"] = svc.yaml()
        for i, text in enumerate(HOST[self.host] + POLICIES[self.policy]):
            out[f"policy/{i}.yaml"] = text
        return out


services = st.lists(
    st.builds(
        Svc,
        index=st.integers(0, 5),
        port=st.sampled_from([80, 8080, 53]),
        protocol=st.sampled_from(["TCP", "UDP"]),
        node_port=st.booleans(),
        affinity=st.booleans(),
        backends=st.lists(st.sampled_from(POD_IPS), unique=True, max_size=2).map(tuple),
        ready=st.booleans(),
    ),
    max_size=4,
    unique_by=lambda s: s.index,
).map(tuple)

configs = st.builds(
    Config,
    enabled=st.sampled_from([True, True, True, False]),
    pattern=st.sampled_from(["^eth", "^eth", "^nomatch"]),
    ctlb=st.sampled_from(["TCP", "Enabled", "Disabled"]),
    weps=st.lists(st.sampled_from([p.name for p in PODS]), unique=True).map(tuple),
    services=services,
    host=st.sampled_from(sorted(HOST)),
    policy=st.sampled_from(sorted(POLICIES)),
    host_nat=st.sampled_from(["", "Enabled", "Disabled"]),
    nat=st.sampled_from(["none", "off", "masq", "snat"]),
)


@st.composite
def config_and_change(draw: st.DrawFn) -> tuple[Config, Config]:
    first = draw(configs)
    if draw(st.booleans()):  # a change to Services and EndpointSlices only
        return first, dataclasses.replace(first, services=draw(services))
    return first, draw(configs)


class World:
    """One sandbox node for every example; a config directory rewritten per step."""

    def __init__(self, root: Path) -> None:
        self.sandbox = Sandbox().up([Pod(p.name, p.ip) for p in PODS])
        self.config = root / "config"
        self.state = root / "state"
        self.config.mkdir()

    def write(self, config: Config) -> None:
        shutil.rmtree(self.config)
        for name, text in config.files().items():
            path = self.config / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def run(self, mode: str) -> tuple[int, str]:
        from reconciler.cli.main import main

        # each main() keeps its own caches: nothing carries over between runs
        args = [mode, *self.sandbox.target_args(str(self.state)), "--config", str(self.config)]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(args)
        return rc, out.getvalue() + err.getvalue()

    def converge(self) -> None:
        rc, out = self.run("--apply")
        assert rc == 0 and "Verified" in out, out
        rc, out = self.run("--plan")
        assert rc == 0 and "No changes." in out, out

    def compiled_equals_full_compile(self) -> None:
        from reconciler.config.source import SourceCache, default_cache_dir
        from reconciler.config.spec import open_source
        from reconciler.engine.caches import Caches
        from reconciler.engine.reconcile import Target, compiled_state
        from reconciler.observe.kernel import observe

        sb = self.sandbox
        _, links = observe(sb.bpffs_root, sb.node)
        source = open_source(
            {"kind": "dir", "paths": [str(self.config)]}, use_cache=False, sources=SourceCache()
        )
        cached, _ = compiled_state(
            source, Target("node-1", sb.bpffs_root, self.state, sb.node, default_cache_dir(),
                           sb.cgroup), links, allow_empty=True, caches=Caches())  # fmt: skip
        full, _ = compiled_state(
            source, Target("node-1", sb.bpffs_root, self.state, sb.node, None, sb.cgroup), links,
            allow_empty=True, caches=Caches(),
        )
        assert cached.objects == full.objects and cached.build == full.build
        assert cached.tables == full.tables and cached.table_info == full.table_info
        assert cached.warnings == full.warnings and cached.errors == full.errors
        assert (cached.nat_index is None) == (full.nat_index is None)
        if full.nat_index is not None:
            a, b = cached.nat_index, full.nat_index
            assert (a.files, a.owners, a.feeders, a.ids, a.counts) == (
                b.files, b.owners, b.feeders, b.ids, b.counts,
            )  # fmt: skip

    def down(self) -> None:
        self.sandbox.down()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("random-configs")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    w = World(root)
    try:
        yield w
    finally:
        w.down()
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old
    assert not Path(w.sandbox.bpffs_root).exists()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pair=config_and_change())
def test_random_configs_converge_and_changes_converge(world, pair):
    first, change = pair
    world.write(first)
    world.converge()
    world.compiled_equals_full_compile()
    world.write(change)
    world.converge()
    world.compiled_equals_full_compile()
