"""--validate (and the pre-receive hook) refuse a nodePort that a plan would
refuse on some node: outside the node port ranges, or on a failsafe port,
of the default FelixConfiguration or of any node's own; cold and from the
validation cache alike. A plan judges only its own node's."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.config.source import from_paths
from reconciler.config.validate import validate_source
from tests.unit.test_service_addresses import _service

FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: {name}}}
spec:
{spec}
"""


def write(tmp_path: Path, port: int, *felix: tuple[str, str]) -> Path:
    cfg = tmp_path / "cfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "svc.yaml").write_text(_service(type="NodePort", np=port))
    for name, spec in felix:
        (cfg / f"{name}.yaml").write_text(FELIX.format(name=name, spec=spec))
    return cfg


def validate(capsys: pytest.CaptureFixture[str], cfg: Path, cache: bool = False) -> tuple[int, str]:
    code = main(["--validate", str(cfg), *([] if cache else ["--no-cache"])])
    return code, capsys.readouterr().out


@pytest.mark.parametrize(
    "port,felix,message",
    [
        (22, (), "22/TCP is a failsafe inbound host port (failsafeInboundHostPorts), never a "
                 "nodePort"),
        (40000, (), "40000 is outside the node port ranges (kubeNodePortRanges: 30000:32767)"),
        (30080, (("default", "  bpfEnabled: true"), ("node.n2", "  kubeNodePortRanges: "
                                                                  "['20000:21000']")),
         "30080 is outside the node port ranges (kubeNodePortRanges: 20000:21000) on node n2 "
         "(FelixConfiguration node.n2)"),
        (20500, (("default", "  kubeNodePortRanges: ['20000:21000']"),
                 ("node.n2", "  failsafeInboundHostPorts: [{protocol: TCP, port: 20500}]")),
         "20500/TCP is a failsafe inbound host port (failsafeInboundHostPorts), never a nodePort "
         "on node n2 (FelixConfiguration node.n2)"),
    ],
)  # fmt: skip
def test_a_node_port_some_node_would_refuse_fails_validation(
    capsys, tmp_path, monkeypatch, port, felix, message
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = write(tmp_path, port, *felix)
    line = f"{cfg}/svc.yaml:9: Service/shop/web: spec.ports[0].nodePort: {message}\n"
    assert validate(capsys, cfg) == (1, line)
    assert validate(capsys, cfg, cache=True) == (1, line)  # cold, into the cache
    assert validate(capsys, cfg, cache=True) == (1, line)  # warm: from the cached facts


@pytest.mark.parametrize(
    "port,felix",
    [
        (30080, ()),
        (8080, (("default", "  kubeNodePortRanges: ['8000:9000', '30000:32767']"),)),
        (22, (("default", "  failsafeInboundHostPorts: [{protocol: UDP, port: 68}]\n"
                          "  kubeNodePortRanges: ['1:1000']"),)),
    ],
)  # fmt: skip
def test_node_ports_every_configuration_admits_are_valid(capsys, tmp_path, port, felix):
    cfg = write(tmp_path, port, *felix)
    assert validate(capsys, cfg) == (0, "")


def test_a_plan_judges_its_own_node_alone(tmp_path):
    """Validation as a plan runs it leaves node ports to the plan's per-node
    check: another node's narrower ranges do not refuse this node's plan."""
    cfg = write(tmp_path, 30080, ("node.n2", "  kubeNodePortRanges: ['20000:21000']"))
    source = from_paths([str(cfg)])
    assert validate_source(source).ok
    assert not validate_source(source, every_node=True).ok


def test_a_service_address_two_services_claim_is_refused_on_both(capsys, tmp_path, monkeypatch):
    """A push adding a Service with a live one's clusterIP or nodePort must
    not take it over: validation (and so the hook and every plan) refuses
    both claims, each naming the other; the same port of another protocol,
    or the same Service listed once, is no conflict."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "a.yaml").write_text(_service(type="NodePort", np=30080))
    other = _service(type="NodePort", cluster_ip="10.96.0.5", np=30080)
    (cfg / "b.yaml").write_text(other.replace("name: web", "name: api"))
    udp = _service(type="NodePort", cluster_ip="10.96.0.9", np=30080, external="192.0.2.11")
    (cfg / "c.yaml").write_text(udp.replace("name: web", "name: dns").replace("TCP", "UDP"))
    for cache in (False, True, True):  # cold, then from the validation cache
        code, out = validate(capsys, cfg, cache)
        assert code == 1
        claims = [line.split(": ", 1)[1] for line in out.splitlines() if "claimed" in line]
        assert claims == [
            f"Service/shop/web: spec.clusterIP: clusterIP 10.96.0.5 is also claimed by "
            f"Service/shop/api ({cfg / 'b.yaml'}:6): a Service address belongs to one Service",
            f"Service/shop/web: spec.ports[0].nodePort: nodePort 30080/TCP is also claimed by "
            f"Service/shop/api ({cfg / 'b.yaml'}:9): a Service address belongs to one Service",
            f"Service/shop/api: spec.clusterIP: clusterIP 10.96.0.5 is also claimed by "
            f"Service/shop/web ({cfg / 'a.yaml'}:6): a Service address belongs to one Service",
            f"Service/shop/api: spec.ports[0].nodePort: nodePort 30080/TCP is also claimed by "
            f"Service/shop/web ({cfg / 'a.yaml'}:9): a Service address belongs to one Service",
        ], out
