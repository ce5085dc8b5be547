"""Addresses: what a plan calls each thing we own, parsed and rendered here only.

    map/<map>               a pinned map's shape        map/rcl_ct
    map/<map>/<key>         one entry of it             map/rcl_nat_fe/10.96.0.10:80/tcp
    prog/<set>@<hash>       a pinned program set        prog/tc@5f829b2cb369
    tc/<interface>/<dir>    our tc filter               tc/eth0/ingress
    xdp/<interface>         our XDP attachment          xdp/eth0
    cgroup/<hook>           our cgroup link             cgroup/connect4
    netfilter/<whose>       rules another agent left    netfilter/kube-proxy
    iptables/<chain>        a netfilter chain of ours   iptables/nat-outgoing

An entry's key is its map codec's text (reconciler.datapath.maps.codecs) and
may hold slashes; nothing else may. States, changes and saved plans keep the
rendered string (a plan holds 110,000 of them): build and read it with
`Address`, never by formatting or splitting it by hand.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from reconciler.datapath.maps.nat_types import MAP_NAT_BE
from reconciler.datapath.programs import TC_PARENTS

# netfilter/<whose>: kube-proxy's chains, left by it on a node it ran on
KUBE_PROXY_RULES = "kube-proxy"
# iptables/<chain>: our natOutgoing chain (IPPool natOutgoing)
NAT_OUTGOING = "nat-outgoing"


class AddressError(ValueError):
    """Text that is not an address."""


class Kind(enum.Enum):
    MAP = "map"
    PROG = "prog"
    TC = "tc"
    XDP = "xdp"
    CGROUP = "cgroup"
    NETFILTER = "netfilter"
    IPTABLES = "iptables"


_KINDS = {k.value: k for k in Kind}
_MAP, _PROG, _TC, _XDP, _CGROUP = Kind.MAP, Kind.PROG, Kind.TC, Kind.XDP, Kind.CGROUP
_NETFILTER, _IPTABLES = Kind.NETFILTER, Kind.IPTABLES


@dataclass(frozen=True, slots=True)
class Address:
    """One address. Each kind fills its own parts; the others stay empty."""

    kind: Kind
    map: str = ""  # MAP: the map's name
    key: str | None = None  # MAP: an entry's key text; None for the map itself
    prog: str = ""  # PROG: a program set reference (prog_ref), or a stray directory's name
    iface: str = ""  # TC, XDP: the interface
    direction: str = ""  # TC: ingress or egress
    hook: str = ""  # CGROUP: the hook (connect4, ...)
    name: str = ""  # NETFILTER: whose rules (kube-proxy); IPTABLES: which chain of ours

    def __post_init__(self) -> None:
        kind = self.kind
        if kind is _MAP:
            ok = _part(self.map) and (self.key is None or self.key != "")
        elif kind is _PROG:
            ok = _part(self.prog)
        elif kind is _TC:
            ok = _part(self.iface) and self.direction in TC_PARENTS
        elif kind is _XDP:
            ok = _part(self.iface)
        elif kind is _NETFILTER or kind is _IPTABLES:
            ok = _part(self.name)
        else:
            ok = _part(self.hook)
        if not ok:
            raise AddressError(f"not a valid {kind.value} address: {self!r}")

    # -- constructors ---------------------------------------------------
    @classmethod
    def of_map(cls, name: str) -> Address:
        return cls(_MAP, name)

    @classmethod
    def of_entry(cls, name: str, key: str) -> Address:
        return cls(_MAP, name, key)

    @classmethod
    def of_prog(cls, ref: str) -> Address:
        return cls(_PROG, "", None, ref)

    @classmethod
    def of_tc(cls, iface: str, direction: str) -> Address:
        return cls(_TC, "", None, "", iface, direction)

    @classmethod
    def of_xdp(cls, iface: str) -> Address:
        return cls(_XDP, "", None, "", iface)

    @classmethod
    def of_cgroup(cls, hook: str) -> Address:
        return cls(_CGROUP, "", None, "", "", "", hook)

    @classmethod
    def of_netfilter(cls, whose: str) -> Address:
        return cls(_NETFILTER, name=whose)

    @classmethod
    def of_iptables(cls, chain: str) -> Address:
        return cls(_IPTABLES, name=chain)

    # -- text without an instance (hot paths build thousands) -----------
    @staticmethod
    def entry_text(name: str, key: str) -> str:
        """What str(Address.of_entry(name, key)) gives, checked the same way."""
        if not _part(name) or not key:
            Address.of_entry(name, key)  # raises the AddressError
        return _render_map(name, key)

    @staticmethod
    def map_text(name: str) -> str:
        """What str(Address.of_map(name)) gives, checked the same way."""
        if not _part(name):
            Address.of_map(name)  # raises the AddressError
        return _render_map(name, None)

    @staticmethod
    def tc_text(iface: str, direction: str) -> str:
        """What str(Address.of_tc(iface, direction)) gives, checked the same way."""
        if not _part(iface) or direction not in TC_PARENTS:
            Address.of_tc(iface, direction)  # raises the AddressError
        return _render_tc(iface, direction)

    # -- the one parse and the one render -------------------------------
    @classmethod
    def parse(cls, text: str) -> Address:
        """The address `text` renders; AddressError when it is none."""
        head, sep, rest = text.partition("/")
        kind = _KINDS.get(head)
        if kind is None or not sep:
            raise AddressError(
                f"{text!r} is not an address "
                "(map/, prog/, tc/, xdp/, cgroup/, netfilter/ or iptables/...)"
            )
        try:
            if kind is Kind.MAP:
                name, sep, key = rest.partition("/")
                return cls(kind, map=name, key=key if sep else None)
            if kind is Kind.PROG:
                return cls(kind, prog=rest)
            if kind is Kind.TC:
                iface, _, direction = rest.partition("/")
                return cls(kind, iface=iface, direction=direction)
            if kind is Kind.XDP:
                return cls(kind, iface=rest)
            if kind is Kind.NETFILTER or kind is Kind.IPTABLES:
                return cls(kind, name=rest)
            return cls(kind, hook=rest)
        except AddressError:
            raise AddressError(f"{text!r} is not a valid {kind.value} address") from None

    def __str__(self) -> str:
        kind = self.kind
        if kind is _MAP:
            return _render_map(self.map, self.key)
        if kind is _PROG:
            return f"prog/{self.prog}"
        if kind is _TC:
            return _render_tc(self.iface, self.direction)
        if kind is _XDP:
            return f"xdp/{self.iface}"
        if kind is _NETFILTER or kind is _IPTABLES:
            return f"{kind.value}/{self.name}"
        return f"cgroup/{self.hook}"

    # -- reading ----------------------------------------------------------
    @property
    def prog_set(self) -> str:
        """PROG: the program set (a stray directory: its whole name)."""
        return split_prog_ref(self.prog)[0]

    @property
    def prog_hash(self) -> str:
        """PROG: the program set's hash ("" for a stray directory)."""
        return split_prog_ref(self.prog)[1]


def _render_map(name: str, key: str | None) -> str:
    """The text of a map (key None) or of one entry: str() and the *_text constructors."""
    return f"map/{name}" if key is None else f"map/{name}/{key}"


def _render_tc(iface: str, direction: str) -> str:
    return f"tc/{iface}/{direction}"


def _part(text: str) -> bool:
    return bool(text) and "/" not in text


def prog_ref(prog_set: str, phash: str) -> str:
    """How a program set is named in addresses, attrs and tc filter names."""
    return f"{prog_set}@{phash}"


def split_prog_ref(ref: str) -> tuple[str, str]:
    """prog_ref's parts: (set, hash); a name without '@' is (name, "")."""
    prog_set, _, phash = ref.partition("@")
    return prog_set, phash


def backend_ordinal(text: str) -> str | None:
    """The backend ordinal of a service NAT backend entry's address (its key
    is svc_id/ordinal); None for any other address."""
    address = Address.parse(text)
    if address.kind is not _MAP or address.map != MAP_NAT_BE or not address.key:
        return None
    return address.key.rsplit("/", 1)[-1]
