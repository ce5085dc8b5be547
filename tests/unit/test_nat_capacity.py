"""A frontend map (bpfMapSizeNATFrontend) too small for the frontends every
node programs (each Service port's clusterIPs, externalIPs and load balancer
IPs, nodePorts aside) is refused by --validate, for every configuration a
node can have, at the field that sets the size; a plan refuses it for its
own node's configuration, at the same field."""

from __future__ import annotations

from pathlib import Path

from reconciler.cli.main import main
from reconciler.compile import config_limits, services
from reconciler.config import felix as felix_config
from reconciler.config import nat_backends, nat_capacity
from reconciler.config.load import load
from tests.unit.test_validate_cli import repo, write  # noqa: F401 - the fixture

FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: {name}
spec:
  bpfEnabled: true
  {field}
"""
SERVICE = """\
---
apiVersion: v1
kind: Service
metadata: {{name: s{i}, namespace: bulk}}
spec:
  type: {type}
  clusterIP: 10.96.{hi}.{lo}
  externalIPs: [192.0.2.{lo}]
  ports: [{{name: a, port: 80, nodePort: {node_port}}}, {{name: b, port: 53, protocol: UDP}}]
"""


HEADLESS = """\
---
apiVersion: v1
kind: Service
metadata: {name: headless, namespace: bulk}
spec:
  clusterIP: None
  ports: [{port: 80}]
"""


def services_yaml(count: int, kind: str = "NodePort") -> str:
    return "".join(
        SERVICE.format(i=i, hi=i // 200, lo=i % 200 + 1, type=kind, node_port=30000 + i)
        for i in range(count)
    )


def validate(root: Path, capsys) -> tuple[int, str]:
    code = main(["--validate", str(root)])
    return code, capsys.readouterr().out


def test_the_mirrored_constants_are_the_compilers() -> None:
    assert set(nat_capacity.PROTOCOLS) == set(services.PROTOCOLS)
    assert nat_capacity.PROXY_NAME_LABEL == services.PROXY_NAME_LABEL


def test_validate_refuses_a_frontend_map_too_small_at_its_field(repo, capsys) -> None:  # noqa: F811
    felix = write(repo, "felix/default.yaml", FELIX.format(
        name="default", field="bpfMapSizeNATFrontend: 30"))  # fmt: skip
    write(repo, "svc.yaml", services_yaml(8))  # 8 x 2 ports x (clusterIP, externalIP)
    code, out = validate(repo, capsys)
    assert (code, out) == validate(repo, capsys)  # the warm cache judges alike
    assert code == 1
    assert out.splitlines() == [
        f"{felix}:7: FelixConfiguration/default: spec.bpfMapSizeNATFrontend: 30 is too small "
        "for 32 frontends (each Service port's clusterIPs, externalIPs and load balancer IPs; "
        "nodePorts add one per node address); raise it to at least 32, with room for the "
        "nodePorts"
    ], out


def test_a_node_override_is_judged_and_excluded_addresses_count_not(repo, capsys) -> None:  # noqa: F811
    write(repo, "felix/default.yaml", FELIX.format(
        name="default", field="bpfExcludeCIDRsFromNAT: [192.0.2.0/24]"))  # fmt: skip
    small = write(repo, "felix/n2.yaml", FELIX.format(
        name="node.n2", field="bpfMapSizeNATFrontend: 15"))  # fmt: skip
    write(repo, "svc.yaml", services_yaml(8) + HEADLESS)
    code, out = validate(repo, capsys)
    assert code == 1  # 16 frontends: the externalIPs are excluded on every node
    assert out.splitlines() == [
        f"{small}:7: FelixConfiguration/node.n2: spec.bpfMapSizeNATFrontend: 15 is too small "
        "for 16 frontends on node n2 (each Service port's clusterIPs, externalIPs and load "
        "balancer IPs; nodePorts add one per node address); raise it to at least 16, with "
        "room for the nodePorts"
    ], out
    small.write_text(FELIX.format(name="node.n2", field="bpfMapSizeNATFrontend: 16"))
    assert validate(repo, capsys)[0] == 0


def test_a_plan_refuses_it_at_its_nodes_field(tmp_path: Path) -> None:
    felix = write(tmp_path, "felix.yaml", FELIX.format(
        name="node.n1", field="bpfMapSizeNATFrontend: 10"))  # fmt: skip
    svc = write(tmp_path, "svc.yaml", services_yaml(3))
    resources = [*load(felix.read_bytes(), str(felix)).resources,
                 *load(svc.read_bytes(), str(svc)).resources]  # fmt: skip
    config = felix_config.effective_config(resources, "n1")
    assert config_limits.nat_size_problems(resources, "n1", config) == [
        f"{felix}:7: FelixConfiguration/node.n1: spec.bpfMapSizeNATFrontend: 10 is too small "
        "for 12 frontends (each Service port's clusterIPs, externalIPs and load balancer IPs; "
        "nodePorts add one per node address); raise it to at least 12, with room for the "
        "nodePorts"
    ]
    other = felix_config.effective_config(resources, "n2")  # the default's 65536
    assert config_limits.nat_size_problems(resources, "n2", other) == []


def test_the_pre_receive_hook_refuses_both(tmp_path: Path, capsys, monkeypatch) -> None:
    import git

    from reconciler.cli.hooks_cmd import pre_receive
    from tests.unit.test_endpoint_networks import APART, WEP
    from tests.unit.test_repo_config_git import commit

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    sha = commit(work, {
        "felix.yaml": FELIX.format(name="default", field="bpfMapSizeNATFrontend: 30"),
        "svc.yaml": services_yaml(8), "wep.yaml": WEP.format(nets=", ".join(APART)),
    })  # fmt: skip
    git_dir = str(tmp_path / "work" / ".git")
    assert pre_receive([f"{'0' * 40} {sha} refs/heads/main"], git_dir, None) == 1
    err = capsys.readouterr().err
    assert "felix.yaml:7: FelixConfiguration/default: spec.bpfMapSizeNATFrontend: 30 is" in err
    assert "wep.yaml:7: WorkloadEndpoint/shop/frontend-0: spec.ipNetworks: 9 IPv4" in err


SLICE = """\
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s{i}-a
  namespace: bulk
  labels: {{kubernetes.io/service-name: s{i}}}
addressType: IPv4
ports: [{{name: a, port: 8080}}, {{name: b, port: 53, protocol: UDP}}]
endpoints:
- {{addresses: ["10.65.{i}.1"], conditions: {{ready: true}}{hints}}}
- {{addresses: ["10.65.{i}.2"], conditions: {{ready: false}}}}
- {{addresses: ["10.65.{i}.3"], conditions: {{ready: false, serving: true, terminating: true}}}}
"""
ZONE_HINT = ", hints: {forZones: [{name: a}]}"


def slices_yaml(count: int, hints: str = "") -> str:
    return "".join(SLICE.format(i=i, hints=hints) for i in range(count))


def test_validate_refuses_a_backend_map_too_small_at_its_field(repo, capsys) -> None:  # noqa: F811
    felix = write(repo, "felix/default.yaml", FELIX.format(
        name="default", field="bpfMapSizeNATBackend: 15"))  # fmt: skip
    write(repo, "svc.yaml", services_yaml(8) + slices_yaml(8))  # one ready endpoint a port
    code, out = validate(repo, capsys)
    assert code == 1
    assert out.splitlines() == [
        f"{felix}:7: FelixConfiguration/default: spec.bpfMapSizeNATBackend: 15 is too small for "
        "16 backends (each Service port's ready endpoints, where no topology hint lets a node "
        "pick fewer; a Local traffic policy adds a list of a node's own); raise it to at least "
        "16, with room to grow"
    ], out
    # every ready endpoint hinted for a zone: a node may use fewer, so no count binds
    write(repo, "svc.yaml", services_yaml(8) + slices_yaml(8, ZONE_HINT))
    assert validate(repo, capsys)[0] == 0


def test_the_count_is_what_the_nat_compile_programs_without_hints() -> None:
    # s5's endpoints: none ready, one serving while it terminates
    none_ready = (
        slices_yaml(6)
        .split("---")[-1]
        .replace("conditions: {ready: true}", "conditions: {ready: false}")
    )
    text = services_yaml(6) + slices_yaml(5) + "---" + none_ready
    resources = list(load(text.encode(), "svc.yaml").resources)
    facts = [f for r in resources for f in nat_capacity.facts_of(r)]
    tables = services.compile_services(resources, "n1", ["192.168.1.10"])
    assert nat_backends.count(facts) == sum(len(p.backends) for p in tables.ports) == 12
