"""enforcement.not_enforced: what the plan reports as not acted on."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.config.enforcement import NotEnforced, not_enforced
from reconciler.config.model import Resource


def res(kind: str, spec: dict[str, Any], name: str = "x", namespace: str | None = None) -> Resource:
    body = {"kind": kind, "metadata": {"name": name}, "spec": spec}
    return Resource(kind, name, namespace, body, "f.yaml", 1)


def test_felix_fields_not_acted_on_are_named() -> None:
    felix = res(
        "FelixConfiguration",
        {"bpfEnabled": True, "wireguardEnabled": True, "ipipEnabled": False,
         "logSeverityScreen": "Info"},  # (the watcher's log level: acted on)
        "default",
    )  # fmt: skip
    assert not_enforced([felix]) == [
        NotEnforced(
            "FelixConfiguration/default",
            "spec.ipipEnabled",
            "not a setting this node's datapath has",
        ),
        NotEnforced(
            "FelixConfiguration/default",
            "spec.wireguardEnabled",
            "not a setting this node's datapath has",
        ),
    ]


def test_policy_kinds_are_enforced_and_calico_only_kinds_are_whole_resources() -> None:
    found = not_enforced(
        [
            res("GlobalNetworkPolicy", {"selector": "all()", "doNotTrack": True}, "p"),
            res("NetworkPolicy", {}, "q", "shop"),
            res("Tier", {"order": 100}, "t"),
            res("BGPPeer", {}, "peer"),
            res("IPPool", {"cidr": "10.0.0.0/16", "ipipMode": "Always"}, "pool"),
        ]
    )
    # an IP pool's routing fields are listed; its cidr feeds natOutgoing
    assert [(f.resource, f.field) for f in found] == [("BGPPeer/peer", ""), ("IPPool/pool", "")]
    assert found[1].reason.startswith("ipipMode: IPAM's and routing's")
    assert found[0].render() == "BGPPeer/peer: not enforced: BGPPeer is not acted on by this node"


def test_endpoint_fields_that_feed_policy_are_acted_on_and_the_rest_named() -> None:
    hep = res("HostEndpoint", {"node": "n", "interfaceName": "eth0", "profiles": ["a"]}, "h")
    wep = res(
        "WorkloadEndpoint",
        {"node": "n", "interfaceName": "cali1", "ports": [], "mac": "ee:ee:ee:ee:ee:ee"},
        "w",
        "shop",
    )
    svc = res("Service", {"clusterIP": "10.96.0.1"}, "s", "shop")
    found = not_enforced([hep, wep, svc])
    reason = "not a field this node's datapath acts on"
    assert found == [NotEnforced("WorkloadEndpoint/shop/w", "spec.mac", reason)]
    assert found[0].render() == f"WorkloadEndpoint/shop/w: spec.mac: not enforced: {reason}"


def test_host_protection_settings_are_acted_on() -> None:
    felix = res(
        "FelixConfiguration",
        {"failsafeInboundHostPorts": [], "defaultEndpointToHostAction": "Drop"},
        "default",
    )
    assert not_enforced([felix]) == []


@pytest.mark.parametrize("mode", ["Tunnel", "DSR"])
def test_external_service_mode_is_named_as_masquerade(mode: str) -> None:
    felix = res("FelixConfiguration", {"bpfExternalServiceMode": mode}, "default")
    (found,) = not_enforced([felix])
    assert found.render() == (
        "FelixConfiguration/default: spec.bpfExternalServiceMode: not enforced: whichever mode "
        "it names, this node does neither Tunnel nor DSR: external traffic to a backend on "
        "another node is masqueraded to this node's address (as kube-proxy does), so the "
        "backend sees this node, not the client "
        "(externalTrafficPolicy: Local keeps the client's address)"
    )


def test_return_is_named_as_acting_as_accept() -> None:
    felix = res("FelixConfiguration", {"defaultEndpointToHostAction": "Return"}, "default")
    found = not_enforced([felix])
    assert [(f.resource, f.field) for f in found] == [
        ("FelixConfiguration/default", "spec.defaultEndpointToHostAction")
    ]
    assert found[0].render() == (
        "FelixConfiguration/default: spec.defaultEndpointToHostAction: not enforced: Return "
        "acts as Accept (as in Calico's eBPF dataplane): a workload's traffic to this node "
        "passes on its egress policy alone, no HostEndpoint policy judges it, and the host's "
        "own netfilter rules still see it"
    )
    accept = res("FelixConfiguration", {"defaultEndpointToHostAction": "Accept"}, "default")
    assert not_enforced([accept]) == []


def test_the_service_fields_kube_proxy_acts_on_are_acted_on() -> None:
    lb = res(
        "Service",
        {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 32000,
            "loadBalancerSourceRanges": ["192.0.2.0/24"],
            "sessionAffinity": "ClientIP",
            # (through its EndpointSlices' hints, as kube-proxy: services.py)
            "trafficDistribution": "PreferClose",
        },
        "lb",
        "shop",
    )
    assert not_enforced([lb]) == []
