"""`reconcile --explain`: which rule decides a flow, from the compiled policy.

The verdict comes from the policy model (reconciler/compile/policy_model.py), the
same resolution the datapath's tables are compiled from; the compiled
program is asked too and must agree. With --kernel, the crafted packet runs
through the loaded program set's rcl_pol_test (BPF_PROG_TEST_RUN, no
conntrack touched) against the tables in the kernel.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.compile.policy import ACTION_NAMES, compile_chain, verdict_of
from reconciler.compile.policy_model import (
    PROTOCOLS,
    Chain,
    Endpoint,
    Model,
    Packet,
    build_model,
    evaluate,
)
from reconciler.config.model import Resource
from reconciler.engine.explain_node_address import NodeAddresses, host_ip_loaded, not_a_node_address
from reconciler.kernel.routes import RouteBack

if TYPE_CHECKING:
    from reconciler.engine.explain_attached import AttachedCheck


class ExplainError(ValueError):
    pass


class NotOnThisNode(ExplainError):
    """Neither end of the flow is an endpoint of this node."""


@dataclass(frozen=True, slots=True)
class Finding:
    endpoint: str
    direction: str
    action: str
    ref: str
    tier: str
    prog_id: int
    compiled_agrees: bool
    kernel: str = ""  # with --kernel: what the loaded program said
    passed: tuple[str, ...] = ()  # the tiers a Pass sent the packet through
    # with --kernel: the workload interface of this step, when it runs no
    # program of ours (the kernel line says why; the verdict says not enforced)
    unattached: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A flow's answer before explain_flow's notes: its text, and every
    finding that text renders."""

    text: str
    findings: tuple[Finding, ...]


def _resolve(model: Model, text: str) -> tuple[int, Endpoint | None]:
    """An endpoint name (ns/name, or name if unique) or an IPv4 address."""
    try:
        addr = int(ipaddress.IPv4Address(text))
        local = [e for e in model.endpoints if any(n == (addr, 32) for n in e.peer.nets)]
        return addr, (local[0] if local else None)
    except ValueError:
        pass
    matches = [e for e in model.endpoints if e.name == text]
    matches = matches or [e for e in model.endpoints if e.name.split("/")[1] == text]
    peers = [p for p in model.peers if p.kind == "WorkloadEndpoint" and p.ref.endswith("/" + text)]
    if len(matches) > 1:
        raise ExplainError(_ambiguous(text, [e.name for e in matches]))
    if matches:
        ep = matches[0]
        return ep.peer.nets[0][0], ep
    if peers and peers[0].nets:
        return peers[0].nets[0][0], None
    raise ExplainError(
        f"{text!r}: no WorkloadEndpoint or pod of that name and not an IPv4 address"
    )


def by_pod_name(resources: Sequence[Resource], text: str) -> str:
    """`text` as explain resolves it: an address or a WorkloadEndpoint's
    name as it is; else the WorkloadEndpoint of the pod so named (its
    `spec.pod`, `ns/pod` or, if one namespace has it, `pod`), whose Calico
    name (`node-k8s-pod-eth0`) users seldom know."""
    weps = [r for r in resources if r.kind == "WorkloadEndpoint"]
    if any(text == f"{r.namespace}/{r.name}" for r in weps):
        return text
    named = {f"{r.namespace}/{r.name}" for r in weps if r.name == text}
    pods = {
        f"{r.namespace}/{r.name}" for r in weps
        if (pod := r.spec.get("pod")) and text in (pod, f"{r.namespace}/{pod}")
    }  # fmt: skip
    found = sorted(named | pods)
    if len(found) > 1:
        raise ExplainError(_ambiguous(text, found))
    return found[0] if found else text


def _ambiguous(text: str, names: Sequence[str]) -> str:
    """The refusal of a name that more than one WorkloadEndpoint answers to
    (by its own name or by its pod's)."""
    return (
        f"{text!r} names more than one WorkloadEndpoint ({', '.join(names)}), by its own name "
        "or its pod's; name one of them as namespace/name, or the pod as namespace/pod"
    )


def parse_target(text: str) -> tuple[str, int, int]:
    """'DST:PORT/PROTO' -> (dst, port or ICMP type<<8|code, protocol number)."""
    host, _, rest = text.rpartition(":")
    port_text, _, proto_text = rest.partition("/")
    if not host or not proto_text:
        raise ExplainError(f"--to {text!r}: expected DST:PORT/PROTO, e.g. web-0:8080/tcp")
    proto = PROTOCOLS.get(proto_text.upper()) or PROTOCOLS.get(proto_text)
    if proto is None:
        proto = _number(proto_text, 255)
        if proto is None:
            raise ExplainError(f"--to {text!r}: unknown protocol {proto_text!r}")
    top = 255 if proto == 1 else 65535  # ICMP: the port is the type (code 0)
    value = _number(port_text, top)
    if value is None:
        what = "ICMP type" if proto == 1 else "port"
        raise ExplainError(f"--to {text!r}: {what} {port_text!r} is not a number from 0 to {top}")
    if proto == 1:
        value <<= 8
    return host, value, proto


def _number(text: str, top: int) -> int | None:
    """A decimal number from 0 to `top`, or None."""
    if not (text.isascii() and text.isdigit()) or int(text) > top:
        return None
    return int(text)


def explain(
    resources: Sequence[Resource], node: str, src: str, dst: str, kernel_root: str | None = None,
    model: Model | None = None, ingress_peer: int | None = None, arrival: bool = True,
    from_node: bool = False, netns: str | None = None, attached: AttachedCheck | None = None,
    addresses: NodeAddresses | None = None,
) -> list[Finding]:
    """The verdict of each local endpoint the flow src -> dst crosses (the
    sender's egress, the receiver's ingress); with `kernel_root`, the loaded
    program's verdict beside it. `model`: build_model's, when the caller has it.
    `ingress_peer`: the address the receiver sees as the peer, when NAT
    changed the source (a pod reaching itself through a service: the VIP).
    `arrival`: judge a flow from outside by the host endpoint it arrives at
    (False: the caller did, a NodePort's). `from_node`: `src` is one of this
    node's own addresses (sent_by_node), whose flow to a local workload no
    policy judges. `netns`: where the interfaces are, with `kernel_root`;
    `attached`: the run's check of them, when the caller has one;
    `addresses`: the run's reader of the node's addresses (with
    `kernel_root`), which judges an address no expectedIPs list by the host
    endpoint of the interface that holds it."""
    model = model if model is not None else build_model(resources, node)
    attached = _attached_check(kernel_root, netns, attached)
    src_ip, src_ep = _resolve(model, src)
    host, value, proto = parse_target(dst)
    dst_ip, dst_ep = _resolve(model, host)
    if from_node and dst_ep is not None:
        # it leaves by the pod's interface: no host endpoint sees it either
        return [Finding(dst_ep.name, "ingress", "Allow", NODE_TO_WORKLOAD, "", 0, True)]
    src_hep = None if src_ep is not None else _host_side(model, src_ip, addresses)
    dst_hep = None if dst_ep is not None else _host_side(model, dst_ip, addresses)
    if src_ep is None and dst_ep is None and src_hep is None and dst_hep is None:
        raise NotOnThisNode(not_a_node_address(src, host, node, kernel_root is not None))
    sport = 40000
    peer_ip = src_ip if ingress_peer is None else ingress_peer
    packet_to = Packet(peer_ip, proto, value, sport)  # as the receiver sees its peer
    steps: list[tuple[Endpoint, str, Chain, Packet]] = []
    early: list[Finding] = []
    late: list[Finding] = []
    if src_ep is not None and dst_hep is not None:
        # A pod's flow to its own node never crosses a host interface: no
        # host endpoint policy judges it; defaultEndpointToHostAction does,
        # Drop before the pod's egress policy.
        from reconciler.config.felix import effective_config

        action = str(effective_config(resources, node)["defaultEndpointToHostAction"])
        if action == "Drop":
            return [Finding(src_ep.name, "to this node", "Deny",
                            "defaultEndpointToHostAction Drop (before its egress policy)", "", 0,
                            True)]  # fmt: skip
        late.append(Finding(dst_hep.name, "from a pod of this node", "Allow",
                            f"defaultEndpointToHostAction {action} (host endpoint policy does "
                            "not judge a pod's traffic to its node)", "", 0, True))  # fmt: skip
        dst_hep = None
    if src_ep is not None:
        steps.append((src_ep, "egress", model.chains[(src_ep.name, "egress")],
                      Packet(dst_ip, proto, value, sport)))  # fmt: skip
    if src_hep is not None:
        fs = _failsafe(resources, node, "out", proto, value, dst_ip)
        if fs:
            early.append(Finding(src_hep.name, "egress (from the host)", "Allow", fs, "", 0, True))
        else:
            steps += _host_egress(model, src_hep, Packet(dst_ip, proto, value, sport))
    if dst_hep is not None:
        early_h, steps_h = _host_ingress(resources, node, model, dst_hep, packet_to)
        early += early_h
        steps += steps_h
    outside = arrival and src_ep is None and src_hep is None and dst_ep is not None
    forwarder = _only_host_endpoint(model) if outside else None
    if forwarder is not None:  # from outside to a pod, through the endpoint it arrives at
        steps += _forwarded_arrival(resources, node, model, forwarder, packet_to)
    judged = _judge(steps, src_ip, dst_ip, value, proto, kernel_root, attached)
    if dst_ep is not None:
        ingress = (dst_ep, "ingress", model.chains[(dst_ep.name, "ingress")], packet_to)
        judged += _judge([ingress], peer_ip, dst_ip, value, proto, kernel_root, attached)
    return [*early, *judged, *late]


Step = tuple[Endpoint, str, Chain, Packet]

# The datapath's exemption (rcl_pol_sent_by_host), as in Calico and Kubernetes.
NODE_TO_WORKLOAD = (
    "this node's own traffic (from the node to a local workload is never policed, as in "
    "Calico; the flow is tracked, so the pod's replies pass)"
)


def sent_by_node(model: Model, src: str, kernel_root: str | None = None) -> bool:
    """Is `src` one of this node's own addresses, so that its flow is the
    node's own (it arrives on no interface: no reverse-path check, and a
    local workload's ingress policy never judges it)? With `kernel_root`,
    the addresses the datapath itself knows as the node's decide (rcl_host_ip:
    every interface's, what rcl_pol_sent_by_host reads); a host endpoint's
    expectedIPs may list one the node does not hold. Without it explain
    reads no interfaces, and expectedIPs are the guess (node_address_guess)."""
    src_ip, src_ep = _resolve(model, src)
    if src_ep is not None:
        return False
    if kernel_root is not None:
        return host_ip_loaded(kernel_root, src_ip)
    return _host_of(model, src_ip) is not None


def node_address_guess(src: str) -> str:
    """The note under an answer that took `src` for the node's own address
    from a host endpoint's expectedIPs alone (no --kernel)."""
    return (f"Note: this takes {src} for this node's own address, as a HostEndpoint's "
            "expectedIPs say (--kernel, on the node, checks the datapath's list).\n")  # fmt: skip


def _forwarded_arrival(
    resources: Sequence[Resource], node: str, model: Model, hep: Endpoint, packet: Packet
) -> list[Step]:
    """The steps of a flow from outside that `hep` forwards to a pod of this
    node: its untracked and preDNAT policy (_host_arrival; no failsafe port,
    the address is no host's), then, unless they decided, its
    applyOnForward policy where it has any (without, the datapath passes
    forwarded flows)."""
    _, steps, decided = _host_arrival(resources, node, model, hep, packet, to_host=False)
    chain = model.chains[(hep.name, "forward-ingress")]
    if not decided and chain.tiers:
        steps.append((hep, "forward-ingress", chain, packet))
    return steps


def _judge(
    steps: Sequence[Step], src_ip: int, dst_ip: int, value: int, proto: int,
    kernel_root: str | None, attached: AttachedCheck | None = None,
) -> list[Finding]:
    """Each step's verdict from the model, the compiled program's beside it,
    and with `kernel_root` the loaded program's on a packet src -> dst, or,
    where `attached` finds a workload's interface carries no program of
    ours, that it enforces nothing."""  # fmt: skip
    out = []
    for ep, direction, chain, packet in steps:
        v = evaluate(chain, packet)
        program = compile_chain(chain)
        c = verdict_of(program, packet)
        where = direction if ep.peer.kind != "HostEndpoint" else _host_label(direction)
        found = Finding(ep.name, where, v.action, v.ref, v.tier, program.prog_id,
                        (c.action, c.ref) == (v.action, v.ref), passed=v.passed)  # fmt: skip
        if kernel_root is not None and not program_loaded(kernel_root, program.prog_id):
            found = dataclasses.replace(found, kernel=(
                f"program {program.prog_id:08x}, what this configuration compiles, is not "
                f"loaded: the node enforces another configuration here ({KERNEL_DISAGREES})"
            ))  # fmt: skip
        elif kernel_root is not None and (why := _not_attached(ep, direction, attached)):
            from reconciler.engine.explain_attached import unenforced_note

            found = dataclasses.replace(
                found, kernel=unenforced_note(ep.interface, why), unattached=ep.interface
            )
        elif kernel_root is not None:
            a = str(ipaddress.IPv4Address(src_ip))
            b = str(ipaddress.IPv4Address(dst_ip))
            probe = dataclasses.replace(found, direction=direction)
            action, rule = kernel_verdict(kernel_root, probe, a, b, value, proto)
            ref = program.refs[rule] if rule < len(program.refs) else f"no table (rule {rule})"
            agree = "agrees" if (action, ref) == (v.action, v.ref) else KERNEL_DISAGREES
            found = dataclasses.replace(found, kernel=f"{action} by {ref} ({agree})")
        out.append(found)
    return out


def _not_attached(ep: Endpoint, direction: str, attached: AttachedCheck | None) -> str:
    """Why a workload's interface runs no program of ours for `direction`,
    as `attached` reads it, or '' (also for a host endpoint: not checked
    here, and without `attached`: no --kernel)."""
    if ep.peer.kind != "WorkloadEndpoint" or attached is None:
        return ""
    return attached.why_not(ep.interface, direction)


def _attached_check(
    kernel_root: str | None, netns: str | None, attached: AttachedCheck | None
) -> AttachedCheck | None:
    """The check of the interfaces in `netns` that a --kernel run shares
    among its steps: `attached` when the caller has one, else a new one;
    None without `kernel_root`."""
    if kernel_root is None:
        return None
    if attached is not None:
        return attached
    from reconciler.engine.explain_attached import AttachedCheck

    return AttachedCheck(netns)


def _host_of(model: Model, addr: int) -> Endpoint | None:
    """The local HostEndpoint an address belongs to (its expectedIPs)."""
    for ep in model.host_endpoints:
        if any(n == (addr, 32) for n in ep.peer.nets):
            return ep
    return None


def _host_side(model: Model, addr: int, addresses: NodeAddresses | None) -> Endpoint | None:
    """The local HostEndpoint that judges an address of this node: by its
    expectedIPs, else (with --kernel's `addresses`) the one of the
    interface that holds it."""
    found = _host_of(model, addr)
    held = addresses.held_by(addr) if found is None and addresses is not None else None
    if held is not None:
        found = next((ep for ep in model.host_endpoints if ep.name == held.host_endpoint), None)
    return found


def _only_host_endpoint(model: Model) -> Endpoint | None:
    """The host endpoint a flow from outside arrives at when explain cannot
    tell by the address it is for: the node's only one (with several, the
    interface it arrives by decides, which explain does not know)."""
    hosts = model.host_endpoints
    return hosts[0] if len(hosts) == 1 else None


_HOST_LABELS = {
    "ingress": "ingress (to the host)",
    "egress": "egress (from the host)",
    "untracked": "untracked (XDP, before conntrack)",
    "untracked-egress": "untracked egress (tc, before conntrack)",
    "prednat": "preDNAT",
}


def _host_label(chain: str) -> str:
    return _HOST_LABELS.get(chain, chain)


def _failsafe(
    resources: Sequence[Resource], node: str, direction: str, proto: int, port: int, remote: int
) -> str:
    """The failsafe port that lets this flow through, or ""."""
    from reconciler.compile.host_policy import failsafe_ports
    from reconciler.compile.policy_model import net_contains, net_of
    from reconciler.config.felix import effective_config

    for f in failsafe_ports(effective_config(resources, node)):
        if f.direction != direction or f.proto != proto or f.port != port:
            continue
        net = net_of(f.net) if f.net else None
        if net is None or net_contains(net, remote):
            return f"failsafe {f.label()}"
    return ""


def _host_arrival(
    resources: Sequence[Resource], node: str, model: Model, hep: Endpoint, packet: Packet,
    to_host: bool = True,
) -> tuple[list[Finding], list[Step], bool]:
    """What a flow arriving at a host endpoint meets before NAT, as the
    datapath asks it: failsafe ports (`to_host`: for an address of the
    node's only), the untracked chain (XDP), preDNAT. The last value says
    whether that decided the flow (a failsafe port, an untracked rule, a
    Deny): no host policy after NAT then."""
    fs = to_host and _failsafe(resources, node, "in", packet.proto, packet.dport, packet.peer)
    if fs:
        return [Finding(hep.name, _host_label("ingress"), "Allow", fs, "", 0, True)], [], True
    steps: list[Step] = []
    for chain_name in ("untracked", "prednat"):
        chain = model.chains[(hep.name, chain_name)]
        if not chain.tiers:
            continue
        v = evaluate(chain, packet)
        if v.action == "NoMatch":
            continue
        steps.append((hep, chain_name, chain, packet))
        if v.action == "Deny" or chain_name == "untracked":
            return [], steps, True  # denied there, or allowed untracked: no further policy
    return [], steps, False


def _host_ingress(
    resources: Sequence[Resource], node: str, model: Model, hep: Endpoint, packet: Packet
) -> tuple[list[Finding], list[Step]]:
    """A flow arriving for the host: what it meets before NAT, then the
    ingress chain."""
    early, steps, decided = _host_arrival(resources, node, model, hep, packet)
    if not decided:
        steps.append((hep, "ingress", model.chains[(hep.name, "ingress")], packet))
    return early, steps


def _host_egress(
    model: Model, hep: Endpoint, packet: Packet
) -> list[tuple[Endpoint, str, Chain, Packet]]:
    """A flow the host sends: the untracked egress chain (tc, before
    conntrack) first; a rule there decides, anything else goes on to the
    egress chain."""
    chain = model.chains[(hep.name, "untracked-egress")]
    if chain.tiers and evaluate(chain, packet).action != "NoMatch":
        return [(hep, "untracked-egress", chain, packet)]
    return [(hep, "egress", model.chains[(hep.name, "egress")], packet)]


def program_loaded(bpffs_root: str, prog_id: int) -> bool:
    """Does the pinned verdict table hold policy program `prog_id`? Every
    program has a default cell there (reconciler.compile.policy_objects)."""
    from reconciler.datapath.maps import policy_types as pl
    from reconciler.kernel import bpf as bpfsys

    path = Path(bpffs_root, "maps", pl.MAP_VERDICT)
    if not path.exists():
        raise ExplainError(f"no loaded program set under {bpffs_root}: apply first")
    fd = bpfsys.obj_get(str(path))
    try:
        key = pl.CELL_KEY.pack(prog_id, pl.ANY_CLASS, pl.ANY_PORT, pl.ANY_PORT)
        return bpfsys.map_lookup(fd, key) is not None
    finally:
        bpfsys.close(fd)


def kernel_verdict(
    bpffs_root: str, finding: Finding, src_ip: str, dst_ip: str, value: int, proto: int
) -> tuple[str, int]:
    """Run the crafted packet through a loaded rcl_pol_test: (action, rule index)."""
    from reconciler.kernel import bpf as bpfsys

    probes = sorted(Path(bpffs_root, "progs").glob("tc-*/rcl_pol_test"))
    if not probes:
        raise ExplainError(f"no loaded program set under {bpffs_root}: apply first")
    fd = bpfsys.obj_get(str(probes[-1]))
    try:
        packet = craft(src_ip, dst_ip, value, proto)
        ctx = bytearray(68)  # struct __sk_buff up to cb[4]
        to_peer = finding.direction.startswith(("egress", "forward-egress", "untracked-egress"))
        struct.pack_into("=II", ctx, 48, finding.prog_id, int(to_peer))
        ret = bpfsys.prog_test_run(fd, packet, ctx=bytes(ctx)).retval
    finally:
        bpfsys.close(fd)
    return ACTION_NAMES.get(ret & 0xFF, f"?{ret & 0xFF}"), ret >> 8


def craft(src: str, dst: str, value: int, proto: int) -> bytes:
    eth = bytes(12) + b"\x08\x00"
    if proto == 1:
        l4 = struct.pack("!BBHHH", value >> 8, value & 0xFF, 0, 1, 1)
    elif proto == 6:
        l4 = struct.pack("!HHIIBBHHH", 40000, value, 0, 0, 0x50, 0x02, 1024, 0, 0)
    else:
        l4 = struct.pack("!HHHH", 40000, value, 8, 0)
    total = 20 + len(l4)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, proto, 0,
        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
    )  # fmt: skip
    return eth + ip + l4


# ICMP types that report on another flow and quote its headers.
ICMP_ERRORS = {3: "destination unreachable", 11: "time exceeded", 12: "parameter problem"}


def related_note(dst: str) -> str:
    """For an ICMP error type, the line that says what the rules' verdict
    leaves out: an error about a flow policy allowed passes as related to it
    (conntrack decides, not the rules); '' for anything else."""
    _, value, proto = parse_target(dst)
    kind = ICMP_ERRORS.get(value >> 8) if proto == 1 else None
    if kind is None:
        return ""
    return (
        f"Note: ICMP type {value >> 8} ({kind}) is an error about another flow. One that "
        "goes back to the sender of a packet of a flow policy allowed (from a pod: about a "
        "packet the pod received) passes as related to it, whatever the rules say, except "
        "from a pod to this node under defaultEndpointToHostAction Drop; the verdict above "
        "is for one that does not.\n"
    )


@dataclass(frozen=True, slots=True)
class ServiceHop:
    """A destination that is a service frontend on this node, and the
    backends the datapath may send a new flow to (its traffic policy's)."""

    service: str  # "namespace/name:port"
    frontend: str  # "10.96.0.50:80/tcp"
    proto: str  # "tcp" / "udp"
    backends: tuple[tuple[str, int], ...]
    # a load balancer IP's loadBalancerSourceRanges (IPv4); None: open to all
    source_ranges: tuple[str, ...] | None = None
    node_port: bool = False  # the address taken for one of this node's, the port a NodePort
    # the backends for a client inside the cluster (a pod of this node), which
    # externalTrafficPolicy Local does not hold to the local ones
    inside: tuple[tuple[str, int], ...] = ()
    # the backends on other nodes: a flow from outside to one is masqueraded
    elsewhere: frozenset[tuple[str, int]] = frozenset()


def service_hop(resources: Sequence[Resource], node: str, dst: str) -> ServiceHop | None:
    """The service `dst` (VIP:PORT/PROTO) names: a cluster IP, external IP or
    load balancer IP of a TCP or UDP port, or else a NodePort, the address
    taken for one of this node's (explain reads no interfaces); None for
    anything else."""
    from reconciler.compile.service_nat import excluded_from_nat
    from reconciler.compile.services import FE_ETP_LOCAL, FE_SRC_RANGES, compile_services
    from reconciler.config.felix import effective_config

    host, port, proto = parse_target(dst)
    name = {6: "tcp", 17: "udp"}.get(proto)
    try:
        vip = str(ipaddress.IPv4Address(host))
    except ValueError:
        return None
    if name is None:
        return None
    excluded = excluded_from_nat(effective_config(resources, node))
    for node_ips in ((), (vip,)):  # a NodePort only where no service address is
        for sp in compile_services(resources, node, node_ips, excluded).ports:
            for fe in sp.frontends:
                if (fe.vip, fe.port, fe.proto) == (vip, port, name):
                    backends = tuple((b.ip, b.port) for b in sp.balanced_among(fe))
                    cluster = dataclasses.replace(fe, flags=fe.flags & ~FE_ETP_LOCAL)
                    inside = tuple((b.ip, b.port) for b in sp.balanced_among(cluster))
                    ranges = sp.source_ranges if fe.flags & FE_SRC_RANGES else None
                    elsewhere = frozenset((b.ip, b.port) for b in sp.backends if not b.local)
                    return ServiceHop(
                        sp.service, fe.label, fe.proto, backends, ranges, bool(node_ips), inside,
                        elsewhere,
                    )
    return None


def explain_service(
    resources: Sequence[Resource], node: str, src: str, hop: ServiceHop,
    kernel_root: str | None = None, model: Model | None = None, from_node: bool = False,
    netns: str | None = None, attached: AttachedCheck | None = None,
    addresses: NodeAddresses | None = None,
) -> Answer:
    """A flow to a service, rendered: policy judges it on the backend NAT
    sends it to, so each backend is explained as its own flow; then the
    verdict over all of them. A flow from outside meets a host endpoint
    first, as the datapath judges every flow that arrives at one (untracked
    and preDNAT policy before NAT, its applyOnForward policy after, on
    every backend, this node's or another's): a NodePort's, that of the
    address it arrives for (and its failsafe ports); a cluster, external or
    load balancer IP's, the node's only host endpoint (_only_host_endpoint).
    `addresses`: as explain's."""  # fmt: skip
    host, port, proto = parse_target(hop.frontend)
    model = model if model is not None else build_model(resources, node)
    attached = _attached_check(kernel_root, netns, attached)
    shown: list[Finding] = []  # every finding the answer renders
    src_ip, src_ep = _resolve(model, src)
    if src_ep is not None and hop.inside:  # a pod of this node: inside the cluster
        hop = dataclasses.replace(hop, backends=hop.inside)
    if src_ep is not None:
        hop = dataclasses.replace(hop, elsewhere=frozenset())  # never masqueraded
    what = (f"NodePort {port} of service {hop.service} (taking {host} for an address of "
            f"this node)" if hop.node_port else f"service {hop.service}")  # fmt: skip
    lines = [f"{hop.frontend} is {what}: policy judges the flow on its backend "
             f"({len(hop.backends)})"]  # fmt: skip
    if hop.source_ranges is not None:
        addr = ipaddress.IPv4Address(src_ip)
        within = [r for r in hop.source_ranges if addr in ipaddress.IPv4Network(r)]
        if not within:
            listed = ", ".join(hop.source_ranges) or "no IPv4 range"
            lines.append(f"{addr} is outside its loadBalancerSourceRanges ({listed})")
            lines.append("Verdict: Deny (dropped before NAT, as kube-proxy drops it)")
            return Answer("\n".join(lines) + "\n", tuple(shown))
        lines.append(f"{addr} is within its loadBalancerSourceRanges ({within[0]})")
    host_ip = int(ipaddress.IPv4Address(host))
    # A pod of this node is NATed on its own interface, and the node's own
    # flow to a service address arrives nowhere: no host endpoint of this
    # node sees either arrive, before NAT or after.
    hep, to_host = None, False
    if hop.node_port and src_ep is None:
        hep, to_host = _host_side(model, host_ip, addresses) or _only_host_endpoint(model), True
    elif src_ep is None and not from_node:
        owner = _host_side(model, host_ip, addresses)  # an external IP of the node's own
        hep, to_host = owner or _only_host_endpoint(model), owner is not None
    if hop.node_port and src_ep is not None:
        lines.append(f"from {src_ep.name}, a pod of this node: NATed on its own interface, "
                     "no host endpoint's policy judges it")  # fmt: skip
    if hep is not None:
        early, steps, decided = _host_arrival(
            resources, node, model, hep, Packet(src_ip, proto, port, 40000), to_host
        )
        found = [*early, *_judge(steps, src_ip, host_ip, port, proto, kernel_root, attached)]
        lines += render(found).splitlines()[:-1]
        shown += found
        if any(f.action == "Deny" for f in found):
            lines.append("Verdict: Deny (before NAT)")
            return Answer("\n".join(lines) + "\n", tuple(shown))
        hep = None if decided else hep  # no host policy after NAT
    if not hop.backends:
        lines.append("Verdict: Reject (no usable backend: answered with ICMP port unreachable)")
        return Answer("\n".join(lines) + "\n", tuple(shown))
    allowed = 0
    for ip, be_port in hop.backends:
        lines.append(f"-> backend {ip}:{be_port}")
        if (ip, be_port) in hop.elsewhere:
            lines.append("  on another node: masqueraded, it leaves with this node's address "
                         "(the backend sees this node, not the client)")  # fmt: skip
        found = []
        if hep is not None:  # forwarded through the endpoint it arrived at
            found = _forwarded(model, hep, src_ip, ip, be_port, proto, kernel_root, attached)
        hairpin = src_ep is not None and ip == str(ipaddress.IPv4Address(src_ip))
        if hairpin and src_ep is not None:
            lines.append(f"  hairpin: {src_ep.name} reaches itself; its ingress sees {host} as "
                         "the peer (the source is translated to it)")  # fmt: skip
        try:
            # arrival=False: the host endpoint it arrived at was judged above
            found += explain(resources, node, src, f"{ip}:{be_port}/{hop.proto}", kernel_root,
                             model, host_ip if hairpin else None, False, from_node, netns,
                             attached, addresses)  # fmt: skip
        except NotOnThisNode:
            if not found:
                lines.append("  no endpoint of this node judges it: it passes")
                allowed += 1
                continue
            lines += ["  " + line for line in render(found).splitlines()[:-1]]
            shown += found
            if (ip, be_port) in hop.elsewhere:
                lines.append("  then it leaves this node for the backend, masqueraded: the "
                             "interface it leaves by does not judge it again")  # fmt: skip
            else:
                lines.append("  then it leaves this node for the backend (the policy of the "
                             "interface it leaves by is not explained)")  # fmt: skip
            allowed += all(f.action != "Deny" for f in found)
            continue
        shown_lines = render(found).splitlines()
        if len(hop.backends) == 1:
            shown_lines = shown_lines[:-1]  # its verdict is the one below
        lines += ["  " + line for line in shown_lines]
        shown += found
        allowed += all(f.action != "Deny" for f in found)
    total = len(hop.backends)
    if allowed == total:
        lines.append("Verdict: Allow" + (" (to every backend)" if total > 1 else ""))
    elif allowed == 0:
        lines.append("Verdict: Deny" + (" (to every backend)" if total > 1 else ""))
    else:
        lines.append(f"Verdict: Allow to {allowed} of {total} backends, Deny to the others")
    return Answer("\n".join(lines) + "\n", tuple(shown))


def _forwarded(
    model: Model, hep: Endpoint, src_ip: int, ip: str, port: int, proto: int,
    kernel_root: str | None, attached: AttachedCheck | None = None,
) -> list[Finding]:
    """A host endpoint's applyOnForward ingress verdict on a flow NAT sent
    to backend ip:port."""  # fmt: skip
    chain = model.chains[(hep.name, "forward-ingress")]
    if not chain.tiers:  # no program: the datapath passes (and records) the flow
        return [Finding(hep.name, "forward-ingress", "Allow", "no applyOnForward policy", "", 0,
                        True)]  # fmt: skip
    step = (hep, "forward-ingress", chain, Packet(src_ip, proto, port, 40000))
    be_ip = int(ipaddress.IPv4Address(ip))
    return _judge([step], src_ip, be_ip, port, proto, kernel_root, attached)


@dataclass(frozen=True, slots=True)
class ReversePath:
    """The reverse-path check's word on a flow: `text`, judged from this
    node's routes (a step before policy, which `dropped` ends) or not (a
    note)."""

    text: str
    judged: bool
    dropped: bool = False


def reverse_path(
    resources: Sequence[Resource], node: str, src: str, read_routes: bool,
    netns: str | None = None, model: Model | None = None,
) -> ReversePath | None:
    """The reverse-path check (bpfEnforceRPF) on a flow from `src`: the
    datapath checks every packet that arrives on a host interface, before
    policy, so a source that is neither a workload nor a host endpoint of
    this node is checked where it arrives. With `read_routes` (on the node:
    --kernel) it is judged from the route back to the source in `netns`;
    without, a note says so. None where the check does not apply."""  # fmt: skip
    from reconciler.compile.programs import rpf_mode
    from reconciler.config.felix import effective_config

    mode = rpf_mode(effective_config(resources, node))
    model = model if model is not None else build_model(resources, node)
    src_ip, src_ep = _resolve(model, src)
    if mode == "Disabled" or src_ep is not None or _host_of(model, src_ip) is not None:
        return None
    addr = str(ipaddress.IPv4Address(src_ip))
    if not read_routes:
        return ReversePath(
            f"Note: bpfEnforceRPF {mode} also checks the route back to {addr} where the "
            "packet arrives, before policy (--kernel, on the node, reads it).", judged=False,
        )  # fmt: skip
    from reconciler.kernel.routes import route_back

    return reverse_path_verdict(mode, addr, route_back(addr, netns))


def reverse_path_verdict(mode: str, src: str, back: RouteBack) -> ReversePath:
    """The check in `mode` (Strict or Loose) on a packet from `src`, given
    this node's route back to it. Strict wants the route back to leave by
    the interface the packet arrived on, Loose by any interface; a source
    this node owns, or one it has no usable route to, fails both."""
    head = f"Reverse-path check (bpfEnforceRPF {mode}, where it arrives, before policy):"
    if back.kind == "local":
        return ReversePath(f"{head} Deny: {src} is an address of this node's own", True, True)
    if back.kind != "unicast":
        return ReversePath(
            f"{head} Deny: this node has no usable route back to {src} ({back.kind})", True, True
        )
    if mode == "Strict":
        return ReversePath(f"{head} Allow if it arrives on {back.dev}, the interface the route "
                           f"back to {src} leaves by; Deny on any other", True)  # fmt: skip
    return ReversePath(f"{head} Allow: the route back to {src} leaves by {back.dev}", True)


KERNEL_DISAGREES = "DISAGREES"  # a loaded program's answer is not the configuration's
# how render and _judge say that a program decides otherwise than the configuration
_DISAGREE_MARKS = (f"({KERNEL_DISAGREES})", "agrees: NO")


@dataclass(frozen=True, slots=True)
class Explained:
    text: str
    disagrees: bool  # a program decides otherwise than the configuration


def explain_flow(
    resources: Sequence[Resource], node: str, src: str, dst: str,
    kernel_root: str | None = None, netns: str | None = None,
) -> Explained:
    """--explain's answer: the reverse-path check where it applies (from
    the routes in `netns` with `kernel_root`; never to the node's own
    traffic), then the policy each hop
    meets, to a service's backends or straight to `dst`; all from one
    policy model."""  # fmt: skip
    parse_target(dst)  # its errors quote what was typed, before a pod name is rewritten
    src = by_pod_name(resources, src)
    host, _, rest = dst.rpartition(":")
    if host:
        dst = f"{by_pod_name(resources, host)}:{rest}"
    model = build_model(resources, node)
    from_node = sent_by_node(model, src, kernel_root)
    hop = service_hop(resources, node, dst)
    attached = _attached_check(kernel_root, netns, None)  # one for the whole answer
    addresses = None if kernel_root is None else NodeAddresses(resources, node, kernel_root, netns)
    if hop is not None:
        answer = explain_service(resources, node, src, hop, kernel_root, model, from_node, netns,
                                 attached, addresses)  # fmt: skip
    else:
        found = explain(resources, node, src, dst, kernel_root, model, from_node=from_node,
                        netns=netns, attached=attached, addresses=addresses)  # fmt: skip
        answer = Answer(render(found, dst), tuple(found))
    text = _not_enforced(answer)
    if addresses is not None:  # which host endpoint judged an address no expectedIPs list
        text += "".join(held.note(addr) for addr, held in sorted(addresses.used.items()))
    if from_node and kernel_root is None and NODE_TO_WORKLOAD in text:
        text += node_address_guess(src)
    arrival = None
    if not from_node:  # the node's own packet arrives nowhere: no reverse-path check
        arrival = reverse_path(resources, node, src, kernel_root is not None, netns, model)
    if arrival is not None and not arrival.judged:
        text += arrival.text + "\n"
    elif arrival is not None:  # a step before policy; a drop there ends the flow
        after = "Verdict: Deny (dropped where it arrives, before policy)\n"
        text = arrival.text + "\n" + (after if arrival.dropped else text)
    disagrees = any(mark in text for mark in _DISAGREE_MARKS)
    if disagrees:  # the node enforces something else
        text += ("The loaded programs disagree with the configuration: the kernel drifted "
                 "or was applied from another source (reconcile --plan shows what differs).\n")
    return Explained(text, disagrees)


def _not_enforced(answer: Answer) -> str:
    """The answer's text with its last verdict line saying, when some
    interface the flow crosses runs no program of ours (a finding's
    `unattached`), that the verdict is the configuration's and not what the
    node does there."""
    ifaces = sorted({f.unattached for f in answer.findings if f.unattached})
    if not ifaces:
        return answer.text
    lines = answer.text.split("\n")
    last = max(i for i, line in enumerate(lines) if line.startswith("Verdict: "))
    lines[last] += f" (not enforced: no program of ours on {', '.join(ifaces)})"
    return "\n".join(lines)


def render(findings: Sequence[Finding], dst: str = "") -> str:
    """The findings, the overall verdict, and for an ICMP error `dst` the
    related_note."""
    lines = []
    for f in findings:
        where = f" (tier {f.tier})" if f.tier else ""
        lines.append(f"{f.endpoint} {f.direction}: {f.action} by {f.ref}{where}")
        lines += [f"  passed {p}" for p in f.passed]
        if f.prog_id:
            lines.append(
                f"  compiled program {f.prog_id:08x} agrees: "
                f"{'yes' if f.compiled_agrees else 'NO'}"
            )
        if f.kernel:
            lines.append(f"  kernel: {f.kernel}")
    allowed = all(f.action != "Deny" for f in findings)
    lines.append(f"Verdict: {'Allow' if allowed else 'Deny'}")
    return "\n".join(lines) + "\n" + (related_note(dst) if dst else "")
