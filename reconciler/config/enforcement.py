"""What the configuration says that this node does not act on.

Calico's API is accepted whole (a repository holds the whole cluster's
config), but this node programs interfaces, service NAT, conntrack,
connect-time load balancing, workload and host endpoint policy, failsafe
ports and untracked (doNotTrack) policy in XDP. `not_enforced` is the plan's list of what it
leaves to others: pure, one entry per resource and field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.config.model import CALICO_ONLY_KINDS, Resource

# FelixConfiguration fields the compile reads; every other one is not acted on.
FELIX_ACTED_ON = frozenset(
    {
        "bpfEnabled",
        "bpfEnforceRPF",
        "bpfExcludeCIDRsFromNAT",
        "bpfLogLevel",
        "bpfDataIfacePattern",
        "bpfL3IfacePattern",
        "bpfConnectTimeLoadBalancing",
        "bpfConnectTimeLoadBalancingEnabled",
        "bpfHostNetworkedNATWithoutCTLB",
        "bpfConntrackTimeouts",
        "bpfMapSizeConntrack",
        "bpfMapSizeConntrackScaling",
        "bpfMapSizeIfState",
        "bpfMapSizeNATAffinity",
        "bpfMapSizeNATBackend",
        "bpfMapSizeNATFrontend",
        "interfaceExclude",
        "interfacePrefix",
        "defaultEndpointToHostAction",
        "allowVXLANPacketsFromWorkloads",
        "allowIPIPPacketsFromWorkloads",
        "vxlanPort",
        "failsafeInboundHostPorts",
        "failsafeOutboundHostPorts",
        "kubeNodePortRanges",
        "workloadSourceSpoofing",
        # read by the watcher (reconciler.compile.agent)
        "healthEnabled",
        "healthHost",
        "healthPort",
        "prometheusMetricsEnabled",
        "prometheusMetricsHost",
        "prometheusMetricsPort",
        "prometheusGoMetricsEnabled",
        "prometheusProcessMetricsEnabled",
        "logSeverityScreen",
        "bpfKubeProxyHealthzPort",
        "bpfKubeProxyIptablesCleanupEnabled",
        # IPPool natOutgoing (reconciler.compile.nat_outgoing)
        "natOutgoingAddress",
        "natPortRange",
        "natOutgoingExclusions",
    }
)
# IPPool fields natOutgoing reads: which sources are translated, and which
# destinations (any pool's) are not.
IPPOOL_ACTED_ON = frozenset({"cidr", "natOutgoing"})


def ippool_reason(fields: list[str]) -> str:
    return (
        f"{', '.join(fields)}: IPAM's and routing's, not this node's datapath "
        "(its cidr and natOutgoing are acted on)"
    )


HOST_IPS_NOT_KNOWN = (
    "natOutgoing excludes traffic to IP pools only: the other nodes' addresses are not "
    "known to this node (no Node resources)"
)
# Felix serves metrics over TLS when these are set; this node's agent
# serves none rather than serve them in the clear (reconciler.compile.agent).
METRICS_TLS_FIELDS = (
    "prometheusMetricsCertFile",
    "prometheusMetricsKeyFile",
    "prometheusMetricsCAFile",
)
METRICS_TLS_REASON = (
    "metrics over TLS are not served by this node's agent: with a certificate "
    "configured it serves no metrics rather than serve them in the clear"
)
# Endpoint fields that select interfaces or feed policy (profiles, named
# ports, service accounts, the implicit orchestrator label) or the sources a
# workload may send from; the rest (floating IPs, MAC, gateways, QoS) are
# not acted on.
ENDPOINT_ACTED_ON = frozenset(
    {
        "node",
        "interfaceName",
        "ipNetworks",
        "expectedIPs",
        "profiles",
        "ports",
        "serviceAccountName",
        "orchestrator",
        "workload",
        "pod",
        "endpoint",
        "allowSpoofedSourcePrefixes",
    }
)


# Calico carries external traffic to a backend on another node through a
# tunnel to that node (Tunnel) or lets the backend answer the client
# straight (DSR); both need the backend's node to take part. This node
# masquerades such traffic instead, whichever mode is set (bpf/lib/masq.h).
EXTERNAL_SERVICE_MODE = (
    "whichever mode it names, this node does neither Tunnel nor DSR: external traffic to a "
    "backend on another node is masqueraded to "
    "this node's address (as kube-proxy does), so the backend sees this node, not the client "
    "(externalTrafficPolicy: Local keeps the client's address)"
)
# Felix fields with a reason of their own for not being enforced.
FELIX_REASONS = {
    **dict.fromkeys(METRICS_TLS_FIELDS, METRICS_TLS_REASON),
    "bpfExternalServiceMode": EXTERNAL_SERVICE_MODE,
}


# Calico's eBPF dataplane has no iptables chain to return to: a workload's
# traffic to its host passes on its own egress policy alone whether the
# setting is Accept or Return (felix's BPF endpoint manager drops it only for
# Drop and does not apply a `*` HostEndpoint's policy to it); so does ours.
RETURN_AS_ACCEPT = (
    "Return acts as Accept (as in Calico's eBPF dataplane): a workload's traffic to this "
    "node passes on its egress policy alone, no HostEndpoint policy judges it, and the "
    "host's own netfilter rules still see it"
)


@dataclass(frozen=True, slots=True)
class NotEnforced:
    resource: str  # Kind/name or Kind/namespace/name
    field: str  # "spec.x", or "" for the whole resource
    reason: str

    def render(self) -> str:
        where = f"{self.resource}: {self.field}" if self.field else self.resource
        return f"{where}: not enforced: {self.reason}"


def not_enforced(resources: Iterable[Resource]) -> list[NotEnforced]:
    """Every resource and field of `resources` this node does not act on, in
    the order given (fields sorted within a resource)."""
    out: list[NotEnforced] = []
    for r in resources:
        if r.kind in CALICO_ONLY_KINDS:
            out.append(NotEnforced(r.ref, "", f"{r.kind} is not acted on by this node"))
        elif r.kind == "IPPool":
            rest = [k for k in sorted(r.spec) if k not in IPPOOL_ACTED_ON]
            if rest:
                out.append(NotEnforced(r.ref, "", ippool_reason(rest)))
        elif r.kind == "FelixConfiguration":
            out += [
                NotEnforced(
                    r.ref,
                    f"spec.{k}",
                    FELIX_REASONS.get(k, "not a setting this node's datapath has"),
                )
                for k in sorted(r.spec)
                if k not in FELIX_ACTED_ON
            ]
            if r.spec.get("natOutgoingExclusions") == "IPPoolsAndHostIPs":
                out.append(NotEnforced(r.ref, "spec.natOutgoingExclusions", HOST_IPS_NOT_KNOWN))
            if r.spec.get("defaultEndpointToHostAction") == "Return":
                out.append(NotEnforced(r.ref, "spec.defaultEndpointToHostAction", RETURN_AS_ACCEPT))
        elif r.kind in ("HostEndpoint", "WorkloadEndpoint"):
            out += [
                NotEnforced(r.ref, f"spec.{k}", "not a field this node's datapath acts on")
                for k in sorted(r.spec)
                if k not in ENDPOINT_ACTED_ON
            ]
    return out
