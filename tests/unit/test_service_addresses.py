"""Service and endpoint addresses and node ports that would take over node
traffic are refused: addresses at validation, node ports and datapath field
sizes at plan time (they need the node's FelixConfiguration)."""

import pytest

from reconciler.compile import config_limits
from reconciler.compile.dataplane import compile_desired
from reconciler.config import node_ports
from reconciler.config.felix import effective_config
from reconciler.config.load import load
from reconciler.config.validate import validate_file
from reconciler.plan.state import Link

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  type: {type}
  clusterIP: '{cluster_ip}'
  externalIPs: [{external}]
  ports:
  - {{name: http, port: {port}, protocol: TCP{node_port}}}
"""


def _service(type="ClusterIP", cluster_ip="10.96.0.5", external="192.0.2.10", port=80, np=""):
    node_port = f", nodePort: {np}" if np != "" else ""
    return SERVICE.format(
        type=type, cluster_ip=cluster_ip, external=external, port=port, node_port=node_port
    )


def _messages(text):
    return [(d.line, d.path, d.message) for d in validate_file("s.yaml", text.encode()).diagnostics]


@pytest.mark.parametrize(
    "address,kind",
    [
        ("0.0.0.0", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.8.9.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
    ],
)
def test_special_addresses_are_refused_in_every_field(address, kind):
    article = "an" if kind == "unspecified" else "a"
    message = f"'{address}' is {article} {kind} address, which may not be used here"
    assert (6, "spec.clusterIP", message) in _messages(_service(cluster_ip=address))
    assert (7, "spec.externalIPs[0]", message) in _messages(_service(external=f'"{address}"'))
    lb = _service() + f"  loadBalancerIP: '{address}'\nstatus:\n  loadBalancer:\n"
    lb += f"    ingress: [{{ip: '{address}'}}]\n"
    got = _messages(lb)
    assert (10, "spec.loadBalancerIP", message) in got
    assert (13, "status.loadBalancer.ingress[0].ip", message) in got
    slice_ = (
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\n"
        f"addressType: {'IPv6' if ':' in address else 'IPv4'}\n"
        f"endpoints:\n- addresses: ['{address}']\nports: [{{name: http, port: 8080}}]\n"
    )
    assert (6, "endpoints[0].addresses[0]", message) in _messages(slice_)


def test_ordinary_addresses_pass():
    assert _messages(_service(cluster_ip="10.96.0.5", external="203.0.113.7")) == []
    assert _messages(_service(cluster_ip="None")) == []


def test_float_ports_are_not_integers():
    assert _messages(_service(port="80.0")) == [
        (9, "spec.ports[0].port", "80.0 is not of type 'integer'")
    ]
    slice_ = (
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\n"
        "addressType: IPv4\nendpoints:\n- addresses: [10.0.0.5]\n"
        "ports: [{name: http, port: 8080.0}]\n"
    )
    assert _messages(slice_) == [(7, "ports[0].port", "8080.0 is not of type 'integer', 'null'")]


FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec:
  bpfEnabled: true
{extra}"""


def _resources(*texts):
    out = []
    for i, text in enumerate(texts):
        out += load(text, f"f{i}.yaml").resources
    return out


def _compile(*texts):
    links = [Link("eth0", 2, addresses=("192.0.2.1",))]
    return compile_desired(_resources(*texts), "n1", links, "/sys/fs/bpf/x", "digest")


@pytest.mark.parametrize(
    "node_port,ranges,message",
    [
        (
            22,
            "",
            "22/TCP is a failsafe inbound host port (failsafeInboundHostPorts), never a nodePort",
        ),
        (80, "", "80 is outside the node port ranges (kubeNodePortRanges: 30000:32767)"),
        (32768, "", "32768 is outside the node port ranges (kubeNodePortRanges: 30000:32767)"),
        (22, "  kubeNodePortRanges: ['1:100']\n", "22/TCP is a failsafe inbound host port"),
        (
            31000,
            "  kubeNodePortRanges: ['20000:21000', 25000]\n",
            "31000 is outside the node port ranges (kubeNodePortRanges: 20000:21000,25000:25000)",
        ),
    ],
)
def test_node_ports_outside_the_ranges_or_failsafe_refuse_the_plan(node_port, ranges, message):
    desired = _compile(FELIX.format(extra=ranges), _service(type="NodePort", np=node_port))
    assert desired.objects == {}
    assert len(desired.errors) == 1
    assert desired.errors[0].startswith("f1.yaml:9: Service/shop/web: spec.ports[0].nodePort: ")
    assert message in desired.errors[0]


def test_node_ports_inside_the_ranges_compile():
    ok = _compile(FELIX.format(extra=""), _service(type="NodePort", np=30080))
    assert ok.errors == ()
    assert len(ok.tables["rcl_nat_fe"]) == 3  # cluster IP, external IP, node address
    wide = _compile(
        FELIX.format(extra="  kubeNodePortRanges: ['8000:9000']\n"),
        _service(type="NodePort", np=8080),
    )
    assert wide.errors == ()
    default = effective_config([], "n1").get("kubeNodePortRanges")
    assert node_ports.node_port_ranges(default) == [(30000, 32767)]


def test_conntrack_timeouts_that_do_not_fit_refuse_the_plan():
    felix = FELIX.format(extra="  bpfConntrackTimeouts:\n    tcpEstablished: 2000000h\n")
    desired = _compile(felix)
    assert desired.errors == (
        "f0.yaml:7: FelixConfiguration/default: spec.bpfConntrackTimeouts.tcpEstablished: "
        "2000000h is longer than the datapath can hold (4294967295 seconds)",
    )
    assert desired.objects == {}
    assert (
        _compile(FELIX.format(extra="  bpfConntrackTimeouts: {tcpEstablished: 1000000h}\n")).errors
        == ()
    )


def test_a_resource_from_the_validation_cache_still_names_its_line(tmp_path):
    """A resource rebuilt from the cache has no line map: the error reads
    its file again, and trusts the lines only if the document is the same."""
    from reconciler.config.model import Resource

    path = tmp_path / "svc.yaml"
    path.write_text(_service(type="NodePort", np=22))
    fresh = load(path.read_text(), str(path)).resources[0]
    cached = Resource(fresh.kind, fresh.name, fresh.namespace, fresh.body, fresh.file, fresh.line)
    assert not cached.lines
    felix = load(FELIX.format(extra=""), "f.yaml").resources
    config = effective_config(felix, "n1")
    (problem,) = config_limits.node_port_problems([cached], config)
    assert problem.startswith(f"{path}:9: Service/shop/web: spec.ports[0].nodePort: 22/TCP")
    path.write_text("# another version\n" + _service(type="NodePort", np=23))
    (problem,) = config_limits.node_port_problems([cached], config)
    assert problem.startswith(f"{path}:{cached.line}: Service/shop/web: spec.ports[0].nodePort")
