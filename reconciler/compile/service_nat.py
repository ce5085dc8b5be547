"""Service NAT: Services and EndpointSlices into the NAT tables, and the
NAT settings every program reads (conntrack timeouts, connect-time LB mode,
the node's network namespace).
Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.compile import nat_tables
from reconciler.compile.connect_lb import CTLB_MODES, ctlb_mode, host_at_connect
from reconciler.compile.fragment import Fragment
from reconciler.compile.programs import MAP_SIZES
from reconciler.compile.services import node_zone, service_fragments, service_ids
from reconciler.config import felix
from reconciler.config.model import Resource
from reconciler.datapath.maps.codecs import GLOBAL_KEY
from reconciler.datapath.maps.nat_types import MAP_NAT_BE, MAP_NAT_FE, MAP_NAT_GLOBALS
from reconciler.plan.address import Address
from reconciler.plan.state import Obj, ObjKind


def with_auto_timeouts(
    config: Mapping[str, Any], nf_timeouts: Mapping[str, int] | None
) -> Mapping[str, Any]:
    """`config` with each bpfConntrackTimeouts timer set to `Auto` given the
    node's conntrack timeout (`nf_timeouts`, Host.nf_timeouts), as Felix
    reads the sysctl; a timer the kernel has none for stays Auto, which
    means Calico's default."""
    timers = config["bpfConntrackTimeouts"]
    known = nf_timeouts or {}
    resolved = {k: f"{known[k]}s" if v == "Auto" and k in known else v for k, v in timers.items()}
    return config if resolved == timers else {**config, "bpfConntrackTimeouts": resolved}


def _nat_globals(config: Mapping[str, Any], netns_cookie: int | None) -> dict[str, Any]:
    t = config["bpfConntrackTimeouts"]

    def secs(key: str) -> int:
        # 'Auto' with no kernel timeout to take (with_auto_timeouts): the default.
        value = t[key] if t[key] != "Auto" else felix.DEFAULTS["bpfConntrackTimeouts"][key]
        return max(1, round(felix.parse_duration(str(value))))

    host = host_at_connect(config, netns_cookie)
    return {
        "tcp_syn_sent_s": secs("tcpSynSent"),
        "tcp_established_s": secs("tcpEstablished"),
        "tcp_fin_s": secs("tcpFinsSeen"),
        "tcp_rst_s": secs("tcpResetSeen"),
        "udp_s": secs("udpTimeout"),
        "generic_s": secs("genericTimeout"),
        "ctlb": CTLB_MODES[ctlb_mode(config)],
        "host_nat": int(host),
        # the low 32 bits: what the connect programs compare
        "host_netns": (netns_cookie or 0) & 0xFFFFFFFF if host else 0,
    }


def excluded_from_nat(config: Mapping[str, Any]) -> tuple[str, ...]:
    """FelixConfiguration's bpfExcludeCIDRsFromNAT: service addresses within
    these get no NAT frontend (neither in tc nor at connect time)."""
    return tuple(str(c) for c in config.get("bpfExcludeCIDRsFromNAT") or ())


def compile_service_nat(
    resources: Sequence[Resource],
    node: str,
    node_ips: Sequence[str],
    config: Mapping[str, Any],
    file_ids: Mapping[str, str] | None = None,
    context: str = "",
    others: Fragment | None = None,
    netns_cookie: int | None = None,
) -> tuple[Fragment, nat_tables.NatIndex | None]:
    """NAT frontends and backends, packed per service, as raw bytes (100k+
    entries at scale, compared at C speed), and the NAT settings entry.

    With `file_ids` (path -> blob id of every source file) also the NatIndex
    that lets a later change to Services and EndpointSlices alone be applied
    to the state (reconciler.compile.nat_tables.update); it keeps the
    warnings and errors of every other fragment (`others`), which such a
    change leaves as they are, and `context` names every other input."""
    ids = service_ids(resources)
    excluded = excluded_from_nat(config)
    zone = node_zone(resources, node)
    fragments = service_fragments(resources, node, node_ips, ids, excluded, zone)
    sizes = (int(config[MAP_SIZES[MAP_NAT_FE]]), int(config[MAP_SIZES[MAP_NAT_BE]]))
    folded = nat_tables.fold(fragments, sizes)
    index = None
    if file_ids is not None:
        index = nat_tables.build_index(
            resources, file_ids, context, folded, ids, sizes, node, node_ips,
            others.warnings if others else (), others.errors if others else (), excluded, zone,
        )  # fmt: skip
    settings = Obj(
        Address.entry_text(MAP_NAT_GLOBALS, GLOBAL_KEY),
        ObjKind.ENTRY,
        _nat_globals(config, netns_cookie),
    )
    fragment = Fragment(
        (settings,), folded.tables, folded.table_info, folded.warnings, folded.errors,
        folded.health_checks,
    )  # fmt: skip
    return fragment, index
