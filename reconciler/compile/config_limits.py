"""Plan-time limits that need the node's whole configuration.

- A Service's nodePort must lie in the node port ranges and never be a
  failsafe inbound port (reconciler/config/node_ports.py), under this
  node's effective configuration.
- Durations the datapath keeps in 32-bit fields must fit them, so a plan
  that cannot be applied whole is refused before anything is applied.
- bpfMapSizeNATFrontend and bpfMapSizeNATBackend must hold what every
  node programs (reconciler/config/nat_capacity.py) under this node's
  configuration; the NAT compile counts exactly (nodePorts, hints).
- A workload of this node may send from at most as many networks as the
  datapath checks (reconciler/config/endpoint_networks.py): its ipNetworks
  (validation refuses those alone), and its allowSpoofedSourcePrefixes
  where this node's workloadSourceSpoofing is Any.

Each problem is a `file:line: Kind/name: field: message` string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.compile.workload_source import spoofing_allowed
from reconciler.config import endpoint_networks, felix, nat_backends, nat_capacity, node_ports
from reconciler.config.diagnostics import format_path
from reconciler.config.model import Resource

MAX_U32 = 2**32 - 1


def _where(resource: Resource, path: Sequence[str | int]) -> str:
    from reconciler.config.load import with_lines  # an error path only: it may read the file

    line = with_lines(resource).line_of(tuple(path))
    return f"{resource.file}:{line}: {resource.ref}: {format_path(tuple(path))}"


def node_port_problems(resources: Iterable[Resource], config: Mapping[str, Any]) -> list[str]:
    """This node's nodePorts refused under its effective configuration."""
    ranges = node_ports.node_port_ranges(config.get("kubeNodePortRanges"))
    failsafe = node_ports.failsafe_ports(config.get("failsafeInboundHostPorts"))
    problems = []
    for svc in resources:
        for index, proto, number in node_ports.service_node_ports(svc):
            why = node_ports.judge(proto, number, ranges, failsafe)
            if why:
                problems.append(f"{_where(svc, node_ports.node_port_path(index))}: {why}")
    return problems


def timeout_problems(resources: Iterable[Resource], node: str) -> list[str]:
    """bpfConntrackTimeouts that do not fit the datapath's 32-bit seconds."""
    felixes = {r.name: r for r in resources if r.kind == "FelixConfiguration"}
    problems = []
    for key in felix.DEFAULTS["bpfConntrackTimeouts"]:
        source = None
        for name in ("default", f"node.{node}"):
            resource = felixes.get(name)
            timeouts = resource.spec.get("bpfConntrackTimeouts") if resource else None
            if isinstance(timeouts, Mapping) and timeouts.get(key) is not None:
                source = resource
        if source is None:
            continue
        value = source.spec["bpfConntrackTimeouts"][key]
        try:
            seconds = felix.parse_duration(str(value))
        except ValueError:
            continue  # the schema's finding
        if seconds > MAX_U32:
            where = _where(source, ("spec", "bpfConntrackTimeouts", key))
            problems.append(
                f"{where}: {value} is longer than the datapath can hold ({MAX_U32} seconds)"
            )
    return problems


def workload_network_problems(
    resources: Iterable[Resource], node: str, config: Mapping[str, Any]
) -> list[str]:
    """This node's workloads with more networks to send from than the
    datapath checks, told at the field that adds the one too many."""
    spoofing = spoofing_allowed(config)
    problems = []
    for wep in resources:
        if wep.kind != "WorkloadEndpoint" or wep.spec.get("node") != node:
            continue
        count = len(endpoint_networks.send_networks(wep.spec, spoofing))
        if count <= endpoint_networks.WEP_NETS:
            continue
        alone = len(endpoint_networks.send_networks(wep.spec, spoofing=False))
        path = (
            endpoint_networks.IP_NETWORKS
            if alone > endpoint_networks.WEP_NETS
            else endpoint_networks.SPOOFED
        )
        problems.append(f"{_where(wep, path)}: {endpoint_networks.too_many(count, spoofing)}")
    return problems


def nat_size_problems(
    resources: Sequence[Resource], node: str, config: Mapping[str, Any]
) -> list[str]:
    """A frontend or backend map too small for what this node programs
    (its nodePorts aside, its hinted ports' backends aside), told at the
    FelixConfiguration field that sizes it."""
    sizes = {field: int(config[field]) for field in (nat_capacity.SIZE, nat_capacity.BACKENDS)}
    if all(
        n <= size for n, size in zip(nat_capacity.bounds(resources), sizes.values(), strict=True)
    ):
        return []  # the usual case: no address read
    facts = [f for r in resources for f in nat_capacity.facts_of(r)]
    excluded = [str(c) for c in config.get(nat_capacity.EXCLUDED) or ()]
    problems = []
    for field, size in sizes.items():
        if field == nat_capacity.SIZE:
            needed = nat_capacity.count(facts, excluded)
            why = nat_capacity.too_small(size, needed)
        else:
            needed = nat_backends.count(facts)
            why = nat_capacity.too_small_for_backends(size, needed)
        if needed > size:
            problems.append(f"{_size_where(resources, node, field, size)}: {why}")
    return problems


def _size_where(resources: Sequence[Resource], node: str, field: str, size: int) -> str:
    """The FelixConfiguration field that sets this node's `field`, or the default."""
    felixes = {r.name: r for r in resources if r.kind == "FelixConfiguration"}
    for name in (f"node.{node}", "default"):
        setter = felixes.get(name)
        if setter is not None and setter.spec.get(field) is not None:
            return _where(setter, ("spec", field))
    return f"{field} (default {size})"


def problems(resources: Sequence[Resource], node: str, config: Mapping[str, Any]) -> list[str]:
    return (
        node_port_problems(resources, config)
        + timeout_problems(resources, node)
        + workload_network_problems(resources, node, config)
        + nat_size_problems(resources, node, config)
    )
