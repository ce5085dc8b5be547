"""Connect-time load balancing: the connect program set on the configured
cgroup's hooks, where a socket's connect or sendmsg to a service picks its
backend once. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.compile.programs import Programs
from reconciler.datapath.maps.nat_types import CtlbMode
from reconciler.datapath.programs import CONNECT_PROGRAMS
from reconciler.plan.address import Address
from reconciler.plan.state import Obj, ObjKind

# bpfConnectTimeLoadBalancing -> rcl_nat_globals' mode (bpf/lib/nat_types.h RCL_CTLB_*)
CTLB_MODES = {
    "TCP": int(CtlbMode.TCP),
    "Enabled": int(CtlbMode.ALL),
    "Disabled": int(CtlbMode.DISABLED),
}


def ctlb_mode(config: Mapping[str, Any]) -> str:
    mode = str(config["bpfConnectTimeLoadBalancing"])
    # Felix's deprecated boolean field wins when it turns the feature off.
    if config.get("bpfConnectTimeLoadBalancingEnabled") is False:
        return "Disabled"
    return mode if mode in CTLB_MODES else "TCP"


# Calico forces host-networked NAT on when connect-time LB is off too: the
# node could reach no service at all otherwise.
FORCED_HOST_NAT = (
    "bpfHostNetworkedNATWithoutCTLB: Disabled with bpfConnectTimeLoadBalancing: Disabled "
    "would leave host-networked processes without services; acting as Enabled, as Calico does"
)


def host_at_connect(config: Mapping[str, Any], netns_cookie: int | None) -> bool:
    """Are the node's own sockets balanced at connect time, TCP and UDP,
    whatever the mode? Calico NATs host-networked traffic without
    connect-time LB (bpfHostNetworkedNATWithoutCTLB, Enabled by default,
    and forced on in mode Disabled); the host's own packets to a VIP meet
    no tc program of ours, so here connect time is where it happens. Only
    with the node's namespace known (its cookie); mode Enabled balances
    every socket anyway."""
    mode = ctlb_mode(config)
    if netns_cookie is None or mode == "Enabled":
        return False
    return mode == "Disabled" or config.get("bpfHostNetworkedNATWithoutCTLB") != "Disabled"


def _forced_host_nat(config: Mapping[str, Any]) -> bool:
    return (
        ctlb_mode(config) == "Disabled"
        and config.get("bpfHostNetworkedNATWithoutCTLB") == "Disabled"
    )


def compile_connect_lb(
    config: Mapping[str, Any],
    programs: Programs,
    cgroup_id: int | None,
    cgroup_path: str,
    netns_cookie: int | None = None,
) -> Fragment:
    """The connect program set and its cgroup links, unless no cgroup was
    given, or the mode is Disabled and the node's own sockets are not
    balanced either (host_at_connect)."""
    warnings = (FORCED_HOST_NAT,) if _forced_host_nat(config) else ()
    unused = ctlb_mode(config) == "Disabled" and not host_at_connect(config, netns_cookie)
    if cgroup_id is None or unused:
        return Fragment(warnings=warnings)
    connect_ref = programs.connect_ref
    objects = [
        Obj(
            str(Address.of_prog(connect_ref)),
            ObjKind.PROG,
            {"programs": sorted(CONNECT_PROGRAMS.values())},
        )
    ]
    for hook in CONNECT_PROGRAMS:
        objects.append(
            Obj(
                str(Address.of_cgroup(hook)),
                ObjKind.CGROUP,
                {"prog": connect_ref, "cgroup_id": cgroup_id},
                info={"cgroup": cgroup_path},
            )
        )
    return Fragment(tuple(objects), warnings=warnings)
