"""FelixConfiguration: merge `default` with `node.<node>` and apply defaults."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.config.model import Resource

# Calico's defaults for the fields this dataplane reads.
DEFAULTS: Mapping[str, Any] = {
    "bpfEnabled": False,
    "bpfLogLevel": "Off",
    "bpfDataIfacePattern": r"^((en|wl|ww|sl|ib)[Popsx].*|(eth|wlan|wwan).*)",
    "bpfL3IfacePattern": "",
    "bpfConnectTimeLoadBalancing": "TCP",
    "bpfHostNetworkedNATWithoutCTLB": "Enabled",
    "bpfMapSizeNATFrontend": 65536,
    "bpfMapSizeNATBackend": 262144,
    "bpfMapSizeNATAffinity": 65536,
    "bpfMapSizeConntrack": 512000,
    "bpfMapSizeIfState": 1000,
    "bpfMapSizeConntrackScaling": "DoubleIfFull",
    "interfacePrefix": "cali",
    "interfaceExclude": "kube-ipvs0",
    "defaultEndpointToHostAction": "Drop",
    "bpfEnforceRPF": "Loose",
    "bpfExcludeCIDRsFromNAT": [],
    # Encapsulation from workloads is dropped unless allowed; VXLAN's port.
    "allowVXLANPacketsFromWorkloads": False,
    "allowIPIPPacketsFromWorkloads": False,
    "vxlanPort": 4789,
    # The agent's own endpoints and logs (reconciler.compile.agent).
    "healthEnabled": False,
    "healthHost": "localhost",
    "healthPort": 9099,
    "prometheusMetricsEnabled": False,
    "prometheusMetricsHost": "",
    "prometheusMetricsPort": 9091,
    "prometheusGoMetricsEnabled": True,
    "prometheusProcessMetricsEnabled": True,
    "logSeverityScreen": "Info",
    "bpfKubeProxyHealthzPort": 10256,  # kube-proxy's; 0: not served
    "bpfKubeProxyIptablesCleanupEnabled": True,
    # Calico's failsafe ports: host traffic no host endpoint policy can block.
    "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}, {"protocol": "UDP", "port": 68}]
    + [{"protocol": "TCP", "port": p} for p in (179, 2379, 2380, 5473, 6443, 6666, 6667)],
    "failsafeOutboundHostPorts": [{"protocol": "UDP", "port": p} for p in (53, 67)]
    + [{"protocol": "TCP", "port": p} for p in (179, 2379, 2380, 5473, 6443, 6666, 6667)],
    "bpfConntrackTimeouts": {
        "creationGracePeriod": "10s",
        "tcpSynSent": "20s",
        "tcpEstablished": "1h",
        "tcpFinsSeen": "30s",
        "tcpResetSeen": "40s",
        "udpTimeout": "60s",
        "genericTimeout": "10m",
        "icmpTimeout": "5s",
    },
}


def effective_config(resources: Iterable[Resource], node: str) -> dict[str, Any]:
    """Defaults, overlaid by `default`, overlaid by `node.<node>` (field by field)."""
    by_name = {r.name: r for r in resources if r.kind == "FelixConfiguration"}
    config = dict(DEFAULTS)
    for name in ("default", f"node.{node}"):
        resource = by_name.get(name)
        if resource is None:
            continue
        for key, value in resource.spec.items():
            if key == "bpfConntrackTimeouts" and isinstance(value, Mapping):
                config[key] = {**config[key], **value}
            elif value is not None and value != "":
                # "" is unset, as Calico reads it: Go's zero string (which
                # calicoctl and kubectl exports print for bpfLogLevel) keeps
                # the default, or the `default` resource's value.
                config[key] = value
    return config


def parse_duration(text: str) -> float:
    """Go duration ('1h0m30s', '500ms', '10s') in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([0-9]*\.?[0-9]+)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("+"):
        raise ValueError(f"invalid duration {text!r}")
    return sum(float(n) * units[u] for n, u in parts)
