"""The program sets this node runs: the flags they are built with, the hash
that names a build, and the maps and settings every build shares. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.compile.fragment import Fragment
from reconciler.compile.interfaces import ifstate_slots
from reconciler.datapath.maps import host_types, policy_types
from reconciler.datapath.maps import nat_types as nat
from reconciler.datapath.maps.codecs import GLOBAL_KEY
from reconciler.datapath.maps.iface_types import MAP_GLOBALS, MAP_REJECT_TAT, MAP_WEP_SRC
from reconciler.datapath.maps.nat_types import ct_buckets_for
from reconciler.datapath.programs import HOST_PROGRAMS, TC_PROGRAMS
from reconciler.plan.address import Address, prog_ref
from reconciler.plan.state import Obj, ObjKind

# program sets (reconciler.datapath.programs.SOURCES)
TC_SET, HOST_SET, CONNECT_SET, XDP_SET = "tc", "host", "connect", "xdp"


def build_flags(
    bpffs_root: str, config: Mapping[str, Any], hz: int | None = None
) -> tuple[str, ...]:
    """Compiler flags: pin paths and map sizes are compiled into the programs,
    and the kernel's tick rate when known (the datapath's clock reads jiffies
    then; bpf/lib/nat_maps.h rcl_now)."""
    return (
        f'-DRCL_MAPS_DIR="{bpffs_root}/maps"',
        f"-DRCL_IFSTATE_SIZE={ifstate_slots(config)}",
        f"-DRCL_NAT_FE_SIZE={int(config['bpfMapSizeNATFrontend'])}",
        f"-DRCL_NAT_BE_SIZE={int(config['bpfMapSizeNATBackend'])}",
        f"-DRCL_NAT_AFF_SIZE={int(config['bpfMapSizeNATAffinity'])}",
        f"-DRCL_CT_BUCKETS={ct_buckets_for(int(config['bpfMapSizeConntrack']))}",
        *tick_flags(hz),
    )


def tick_flags(hz: int | None) -> tuple[str, ...]:
    """-DRCL_HZ when the tick is a whole number of nanoseconds (not HZ=300)."""
    return (f"-DRCL_HZ={hz}",) if hz and 1_000_000_000 % hz == 0 else ()


def program_hash(source_digest: str, flags: Sequence[str]) -> str:
    return hashlib.sha256((source_digest + "\0".join(flags)).encode()).hexdigest()[:12]


def _globals(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "log_level": {"Off": 0, "Info": 1, "Debug": 2}.get(str(config["bpfLogLevel"]), 0),
        "endpoint_to_host": str(config["defaultEndpointToHostAction"]),
        "rpf": rpf_mode(config),
        # encapsulation from workloads (bpf/lib/policy.h rcl_pol_encap_refused)
        "vxlan_port": int(config["vxlanPort"]),
        "vxlan_from_workloads": _allowed(config["allowVXLANPacketsFromWorkloads"]),
        "ipip_from_workloads": _allowed(config["allowIPIPPacketsFromWorkloads"]),
    }


def _allowed(flag: Any) -> str:
    return "Allow" if flag is True else "Drop"


def rpf_mode(config: Mapping[str, Any]) -> str:
    """bpfEnforceRPF as the datapath takes it: Disabled, Strict or Loose (the
    schema admits any case, and an empty value means Calico's default)."""
    value = str(config.get("bpfEnforceRPF") or "").lower()
    return {"disabled": "Disabled", "strict": "Strict"}.get(value, "Loose")


MAP_SIZES = {  # map -> the FelixConfiguration field that sizes it
    nat.MAP_NAT_FE: "bpfMapSizeNATFrontend",
    nat.MAP_NAT_BE: "bpfMapSizeNATBackend",
    nat.MAP_NAT_AFF: "bpfMapSizeNATAffinity",
    nat.MAP_CT: "bpfMapSizeConntrack",
}
FIXED_MAPS = {
    MAP_GLOBALS: 1,
    MAP_REJECT_TAT: 1,
    policy_types.MAP_FRAG: policy_types.FRAG_SIZE,
    nat.MAP_NAT_GLOBALS: 1,
    nat.MAP_NAT_STATS: nat.NAT_STATS_SIZE,
    nat.MAP_NAT_SRC: nat.DEFAULT_SIZES[nat.MAP_NAT_SRC],
    nat.MAP_CTLB_UDP_REV: nat.DEFAULT_SIZES[nat.MAP_CTLB_UDP_REV],
    **policy_types.SIZES,
    **host_types.SIZES,
}
# Maps with an entry per rcl_ifstate slot, sized as it is.
SLOT_MAPS = (policy_types.MAP_EP, host_types.MAP_HEP, host_types.MAP_XDP_STATS, MAP_WEP_SRC)


@dataclass(frozen=True, slots=True)
class Programs:
    """One build of the program sets: its compiler flags and the hash that names it."""

    flags: tuple[str, ...]
    hash: str

    @property
    def tc_ref(self) -> str:
        return prog_ref(TC_SET, self.hash)

    @property
    def host_ref(self) -> str:
        return prog_ref(HOST_SET, self.hash)

    @property
    def connect_ref(self) -> str:
        return prog_ref(CONNECT_SET, self.hash)

    @property
    def xdp_ref(self) -> str:
        return prog_ref(XDP_SET, self.hash)


def programs_for(
    bpffs_root: str, config: Mapping[str, Any], source_digest: str, hz: int | None
) -> Programs:
    flags = build_flags(bpffs_root, config, hz)
    return Programs(flags, program_hash(source_digest, flags))


def compile_programs(
    config: Mapping[str, Any], programs: Programs, host_endpoints: bool = False
) -> Fragment:
    """The tc program set, and the host set when the node has `host_endpoints`;
    the maps their builds create (rcl_ifstate aside:
    reconciler.compile.interfaces) and their global settings."""
    objects = [
        Obj(str(Address.of_prog(programs.tc_ref)), ObjKind.PROG, {"programs": sorted(TC_PROGRAMS)})
    ]
    if host_endpoints:
        host_attrs = {"programs": sorted(HOST_PROGRAMS)}
        objects.append(Obj(str(Address.of_prog(programs.host_ref)), ObjKind.PROG, host_attrs))
    slots = ifstate_slots(config)
    for name in SLOT_MAPS:
        objects.append(Obj(Address.map_text(name), ObjKind.MAP, {"max_entries": slots}))
    for name, size in FIXED_MAPS.items():
        objects.append(Obj(Address.map_text(name), ObjKind.MAP, {"max_entries": size}))
    for name, field_name in MAP_SIZES.items():
        size = requested = int(config[field_name])
        setting = f"{field_name}: {requested:,}"
        if name == nat.MAP_CT:  # a table of whole buckets (reconciler/datapath/conntrack.py)
            size = ct_buckets_for(requested)
            setting += f", {size:,} buckets of {nat.CT_WAYS} entries"
        info = {"setting": setting}
        objects.append(Obj(Address.map_text(name), ObjKind.MAP, {"max_entries": size}, info))
    objects.append(
        Obj(Address.entry_text(MAP_GLOBALS, GLOBAL_KEY), ObjKind.ENTRY, _globals(config))
    )
    return Fragment(tuple(objects))
