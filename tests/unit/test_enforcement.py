"""enforcement.not_enforced: what the plan reports as not acted on."""

from __future__ import annotations

from typing import Any

from reconciler.config.enforcement import NotEnforced, not_enforced
from reconciler.config.model import Resource


def res(kind: str, spec: dict[str, Any], name: str = "x", namespace: str | None = None) -> Resource:
    body = {"kind": kind, "metadata": {"name": name}, "spec": spec}
    return Resource(kind, name, namespace, body, "f.yaml", 1)


def test_felix_fields_not_acted_on_are_named() -> None:
    felix = res(
        "FelixConfiguration",
        {"bpfEnabled": True, "wireguardEnabled": True, "logSeverityScreen": "Info"},
        "default",
    )
    assert not_enforced([felix]) == [
        NotEnforced(
            "FelixConfiguration/default",
            "spec.logSeverityScreen",
            "not a setting this node's datapath has",
        ),
        NotEnforced(
            "FelixConfiguration/default",
            "spec.wireguardEnabled",
            "not a setting this node's datapath has",
        ),
    ]


def test_policy_kinds_and_calico_only_kinds_are_whole_resources() -> None:
    found = not_enforced(
        [
            res("GlobalNetworkPolicy", {"selector": "all()"}, "p"),
            res("NetworkPolicy", {}, "q", "shop"),
            res("BGPPeer", {}, "peer"),
            res("IPPool", {"cidr": "10.0.0.0/16"}, "pool"),
        ]
    )
    assert [(f.resource, f.field) for f in found] == [
        ("GlobalNetworkPolicy/p", ""),
        ("NetworkPolicy/shop/q", ""),
        ("BGPPeer/peer", ""),
        ("IPPool/pool", ""),
    ]
    assert (
        found[0].render()
        == "GlobalNetworkPolicy/p: not enforced: "
        "policy is validated, the datapath does not enforce it yet"
    )


def test_endpoints_and_services_acted_on() -> None:
    hep = res("HostEndpoint", {"node": "n", "interfaceName": "eth0", "profiles": ["a"]}, "h")
    svc = res("Service", {"clusterIP": "10.96.0.1"}, "s", "shop")
    found = not_enforced([hep, svc])
    assert found == [
        NotEnforced("HostEndpoint/h", "spec.profiles", "feeds policy, which is not enforced yet")
    ]
    assert (
        found[0].render()
        == "HostEndpoint/h: spec.profiles: not enforced: feeds policy, which is not enforced yet"
    )
