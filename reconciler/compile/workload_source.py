"""The networks each workload interface may send from (rcl_wep_src), as
Calico's anti-spoofing allows them: the WorkloadEndpoint's IPv4 ipNetworks,
and its allowSpoofedSourcePrefixes where FelixConfiguration
workloadSourceSpoofing is Any (Calico ignores them otherwise). A packet from
the workload with any other source is dropped before NAT and policy see it.
Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.compile.interfaces import Role, Selection, initial_slots
from reconciler.config.endpoint_networks import send_networks
from reconciler.config.model import Resource
from reconciler.datapath.maps.iface_types import MAP_WEP_SRC
from reconciler.plan.address import Address
from reconciler.plan.state import Obj, ObjKind


def spoofing_allowed(config: Mapping[str, Any]) -> bool:
    """Does Felix honour allowSpoofedSourcePrefixes (workloadSourceSpoofing: Any)?"""
    return str(config.get("workloadSourceSpoofing") or "").lower() == "any"


def workload_sources(
    resources: Sequence[Resource], node: str, selection: Selection, config: Mapping[str, Any]
) -> Fragment:
    """An rcl_wep_src entry for every workload interface, in its slot (the
    one compile_interfaces gives it; keep_slots moves both), and a warning
    for spoofing allowances Felix would ignore. More networks than the
    datapath checks never get here: compile refuses them before
    (reconciler.compile.config_limits)."""
    spoofing = spoofing_allowed(config)
    weps = {
        r.ref: r
        for r in resources
        if r.kind == "WorkloadEndpoint" and r.spec.get("node") == node
    }
    objects = []
    slot_of = initial_slots(selection)
    warnings = []
    for sel in selection.interfaces:
        wep = weps.get(sel.endpoint) if sel.role & Role.WORKLOAD else None
        if wep is None:
            continue
        if wep.spec.get("allowSpoofedSourcePrefixes") and not spoofing:
            warnings.append(
                f"{wep.ref}: allowSpoofedSourcePrefixes ignored: FelixConfiguration "
                "workloadSourceSpoofing is not Any (as in Calico)"
            )
        unique = send_networks(wep.spec, spoofing)  # adjacent ones merged
        attrs = {
            "slot": slot_of[sel.link.ifindex],
            "ifindex": sel.link.ifindex,
            "nets": ",".join(str(n) for n in unique),
        }
        objects.append(
            Obj(
                Address.entry_text(MAP_WEP_SRC, sel.link.name),
                ObjKind.ENTRY,
                attrs,
                info={"endpoint": wep.ref},
            )
        )
    return Fragment(tuple(objects), warnings=tuple(warnings))
