"""Calico policy for this node's WorkloadEndpoints, resolved and evaluated. Pure.

`build_model` turns resources into endpoints with their effective labels and,
for each local endpoint and direction, a `Chain`: the tiers whose policies
select it (in order, each policy's rules resolved into concrete match data),
then its profiles. `evaluate` walks a chain the way Calico's dataplane does:
the first matching rule decides; Allow and Deny are final, Pass jumps to the
next tier, Log goes on; a tier that selected the endpoint ends in its
defaultAction; after the tiers come the profiles, then a drop. It is the
reference that `--explain` prints and that the class compiler
(reconciler/compile/policy.py) must agree with.

Only IPv4 is enforced: IPv6 nets and rules (ipVersion 6, ICMPv6) never match.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.config.calico_rules import RESERVED_TIERS
from reconciler.config.model import Resource
from reconciler.config.selector import Global, Selector, parse_cached
from reconciler.protocols import PROTOCOLS

Net = tuple[int, int]  # (network address as an int, prefix length), IPv4
Range = tuple[int, int]  # inclusive
ALL_NET: Net = (0, 0)

PORT_PROTOCOLS = frozenset({6, 17, 132, 136})
ICMP = 1
NS_LABEL = "projectcalico.org/namespace"
ORCH_LABEL = "projectcalico.org/orchestrator"
SA_LABEL = "projectcalico.org/serviceaccount"
NAME_LABEL = "projectcalico.org/name"
# the prefixes of the labels a namespace's and a service account's profile give
OWNER_PREFIXES = ("pcns.", "pcsa.")
NS_PROFILE = "kns."
SA_PROFILE = "ksa."
# the label the Kubernetes API server puts on every namespace
K8S_NAME_LABEL = "kubernetes.io/metadata.name"
DIRECTIONS = ("ingress", "egress")

ALLOW, DENY, PASS, LOG = "Allow", "Deny", "Pass", "Log"
NOMATCH = "NoMatch"  # preDNAT and untracked chains: nothing decided, the packet goes on

# A host endpoint's chains: where each applies, and the rules' direction.
HOST_CHAINS = {
    "ingress": "ingress",  # to the host itself
    "egress": "egress",  # from the host itself
    "forward-ingress": "ingress",  # forwarded, arriving (applyOnForward)
    "forward-egress": "egress",  # forwarded, leaving (applyOnForward)
    "prednat": "ingress",  # arriving, before service NAT (preDNAT)
    "untracked": "ingress",  # arriving, in XDP before conntrack (doNotTrack)
    "untracked-egress": "egress",  # leaving, in tc before conntrack (doNotTrack)
}
END_OF_PROFILES = "end of profiles (drop)"


class PolicyError(ValueError):
    """A rule we cannot enforce exactly: a plan-time error naming the rule."""


def net_of(text: str) -> Net | None:
    """An IPv4 CIDR (or bare address) as a Net; None for IPv6."""
    n = ipaddress.ip_network(text, strict=False)
    if n.version != 4:
        return None
    return int(n.network_address), n.prefixlen


def net_str(net: Net) -> str:
    return f"{ipaddress.IPv4Address(net[0])}/{net[1]}"


def net_contains(outer: Net, addr: int) -> bool:
    shift = 32 - outer[1]
    return (addr >> shift) == (outer[0] >> shift) if outer[1] else True


def proto_number(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)  # "17": Calico reads a quoted number as the number
    return PROTOCOLS[str(value)]


# ------------------------------------------------------------------ objects


@dataclass(frozen=True, slots=True)
class NamedPort:
    name: str
    proto: int
    port: int


@dataclass(frozen=True, slots=True)
class Peer:
    """Something selectors match and whose addresses a rule may name: a
    WorkloadEndpoint (on any node), a HostEndpoint or a (Global)NetworkSet."""

    ref: str
    kind: str
    namespace: str | None
    labels: Mapping[str, str]
    nets: tuple[Net, ...]
    ports: tuple[NamedPort, ...] = ()
    service_account: str | None = None
    sa_labels: Mapping[str, str] = field(default_factory=dict)
    # what a namespaceSelector matches of a workload: the pcns. labels of
    # every profile it names (None: its namespace's kns. profile's)
    ns_labels: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A WorkloadEndpoint on this node: its interface and what selects it."""

    peer: Peer
    name: str  # namespace/name
    interface: str
    profiles: tuple[str, ...]

    @property
    def namespace(self) -> str:
        return self.peer.namespace or ""


# ------------------------------------------------------------------ rules


@dataclass(frozen=True, slots=True)
class Alt:
    """One way a rule can match: all of these must hold. A rule is a list of
    alternatives (named ports resolve to several)."""

    include: tuple[frozenset[Net], ...] = ()  # the peer is in each
    exclude: tuple[frozenset[Net], ...] = ()  # and in none of these
    protos: frozenset[int] | None = None  # None: any
    not_protos: frozenset[int] = frozenset()
    dports: tuple[Range, ...] | None = None  # destination port (or ICMP type<<8|code)
    not_dports: tuple[Range, ...] = ()
    sports: tuple[Range, ...] | None = None
    not_sports: tuple[Range, ...] = ()

    def nets(self) -> Iterable[Net]:
        for s in (*self.include, *self.exclude):
            yield from s


@dataclass(frozen=True, slots=True)
class Rule:
    ref: str  # "policy/shop/web ingress rule 1"
    action: str
    alts: tuple[Alt, ...]


@dataclass(frozen=True, slots=True)
class TierChain:
    name: str
    default_action: str  # Deny or Pass
    rules: tuple[Rule, ...]  # every selecting policy's rules, in order
    policies: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """What decides one endpoint's traffic in one direction."""

    tiers: tuple[TierChain, ...]
    profiles: tuple[Rule, ...]
    end_action: str = DENY  # when nothing decided
    end_ref: str = END_OF_PROFILES

    def rules(self) -> Iterable[Rule]:
        for t in self.tiers:
            yield from t.rules
        yield from self.profiles


@dataclass(frozen=True, slots=True)
class Verdict:
    action: str  # Allow or Deny
    ref: str  # the rule, tier default or end of profiles that decided
    tier: str = ""
    # the tiers passed on the way, each "tier T: <the Pass rule or default>"
    passed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Packet:
    """What policy sees of a packet: the remote address and the L4 values
    (for ICMP, dport is type << 8 | code and sport 0)."""

    peer: int
    proto: int
    dport: int = 0
    sport: int = 0


def _in(value: int, ranges: Iterable[Range]) -> bool:
    return any(lo <= value <= hi for lo, hi in ranges)


def alt_matches(alt: Alt, p: Packet) -> bool:
    if any(not any(net_contains(n, p.peer) for n in s) for s in alt.include):
        return False
    if any(any(net_contains(n, p.peer) for n in s) for s in alt.exclude):
        return False
    if alt.protos is not None and p.proto not in alt.protos:
        return False
    if p.proto in alt.not_protos:
        return False
    has_l4 = p.proto in PORT_PROTOCOLS or p.proto == ICMP
    if alt.dports is not None and not (has_l4 and _in(p.dport, alt.dports)):
        return False
    if alt.not_dports and has_l4 and _in(p.dport, alt.not_dports):
        return False
    if alt.sports is not None and not (p.proto in PORT_PROTOCOLS and _in(p.sport, alt.sports)):
        return False
    return not (alt.not_sports and p.proto in PORT_PROTOCOLS and _in(p.sport, alt.not_sports))


def evaluate(chain: Chain, p: Packet) -> Verdict:
    """Calico's verdict for a packet on an endpoint with this chain."""
    passed: list[str] = []
    for tier in chain.tiers:
        decided = _walk(tier.rules, p)
        if decided is not None and decided.action != PASS:
            return Verdict(decided.action, decided.ref, tier.name, tuple(passed))
        if decided is None and tier.default_action == DENY:
            return Verdict(DENY, f"tier/{tier.name} default action", tier.name, tuple(passed))
        by = decided.ref if decided is not None else "its default action"
        passed.append(f"tier {tier.name}: Pass by {by}")
    decided = _walk(chain.profiles, p)
    if decided is not None and decided.action in (ALLOW, DENY):
        return Verdict(decided.action, decided.ref, "profiles", tuple(passed))
    where = "profiles" if chain.profiles else ""
    return Verdict(chain.end_action, chain.end_ref, where, tuple(passed))


def _walk(rules: Iterable[Rule], p: Packet) -> Rule | None:
    for rule in rules:
        if rule.action != LOG and any(alt_matches(a, p) for a in rule.alts):
            return rule
    return None


# ------------------------------------------------------------------ model


@dataclass(frozen=True, slots=True)
class Model:
    endpoints: tuple[Endpoint, ...]  # local WorkloadEndpoints
    chains: Mapping[tuple[str, str], Chain]  # (endpoint name, direction) -> chain
    peers: tuple[Peer, ...]
    # Local HostEndpoints (interface: its interfaceName, "*", or "" when
    # found by expectedIPs); their chains are keyed by HOST_CHAINS' names.
    host_endpoints: tuple[Endpoint, ...] = ()
    # policy label -> the local WorkloadEndpoints it selects, in endpoint
    # order (of the endpoints built: see build_model's `only`)
    selections: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def _labels(r: Resource) -> dict[str, str]:
    return {str(k): str(v) for k, v in r.labels.items()}


def _prefixed(labels: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """The labels whose key has `prefix`, without it: a profile's other
    labels are its endpoints' labels, not its owner's."""
    return {str(k)[len(prefix) :]: str(v) for k, v in labels.items() if str(k).startswith(prefix)}


def _nets(values: object) -> tuple[Net, ...]:
    out = []
    for v in values if isinstance(values, list) else []:
        n = net_of(str(v))
        if n is not None:
            out.append(n)
    return tuple(out)


def _order_key(order: object, name: str) -> tuple[int, float, str]:
    return (0, float(order), name) if isinstance(order, int | float) else (1, 0.0, name)


def policy_sort_name(resource: Resource) -> str:
    """What breaks a tie between two policies of one tier and one order:
    Felix compares their names, a NetworkPolicy's after its namespace and a
    slash (`shop/web` against a GlobalNetworkPolicy's `web`). Since v3.29.4
    a policy keeps the name it was created with, `default.` prefix or not,
    so the names compared are the ones written."""
    return f"{resource.namespace}/{resource.name}" if resource.namespace else resource.name


def _default_action(tiers: Mapping[str, Resource], name: str) -> str:
    """A tier's defaultAction: its resource's, else a reserved tier's own
    (adminnetworkpolicy and baselineadminnetworkpolicy Pass), else Deny."""
    tier = tiers.get(name)
    if tier is not None:
        return str(tier.spec.get("defaultAction") or DENY)
    return RESERVED_TIERS[name][1] if name in RESERVED_TIERS else DENY


def namespace_profile(namespace: Resource) -> Resource:
    """The kns.<name> profile Calico makes of a Kubernetes Namespace: its
    labels (and the one the API server adds) under the pcns. prefix, for
    namespaceSelector (which reads only the pcns. labels of a kns. profile,
    a written one too), and Allow both ways (a namespace's pods are open
    until a policy selects them). A Profile of that name in the
    repository is used instead."""
    labels = {**_labels(namespace), K8S_NAME_LABEL: namespace.name}
    body = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": f"{NS_PROFILE}{namespace.name}"},
        "spec": {
            "labelsToApply": {f"pcns.{k}": v for k, v in labels.items()},
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
        },
    }
    return Resource("Profile", f"{NS_PROFILE}{namespace.name}", None, body,
                    namespace.file, namespace.line, namespace.lines)  # fmt: skip


def service_account_profile_name(namespace: str, account: str) -> str:
    return f"{SA_PROFILE}{namespace}.{account}"


def service_account_profile(account: Resource) -> Resource:
    """The ksa.<namespace>.<name> profile Calico makes of a Kubernetes
    ServiceAccount: its labels under the pcsa. prefix, and its name as
    pcsa.projectcalico.org/name (Calico adds that one; the API server
    sets no label on a ServiceAccount), for a rule's serviceAccounts
    selector; no rules, so it decides nothing. A Profile of that name in
    the repository is used instead."""
    name = service_account_profile_name(account.namespace or "", account.name)
    labels = {**_labels(account), NAME_LABEL: account.name}
    body = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {"labelsToApply": {f"pcsa.{k}": v for k, v in labels.items()}},
    }
    return Resource("Profile", name, None, body, account.file, account.line, account.lines)


# The profile Calico provides whether or not anyone wrote it (libcalico-go's
# DefaultAllowProfile): Allow both ways. calico-kube-controllers names it on
# the host endpoints it makes for each node, so a repository that holds those
# endpoints as exported holds no Profile of that name.
DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"


def default_allow_profile() -> Resource:
    """Calico's built-in allow-all profile; a Profile of that name in the
    repository is used instead."""
    body = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": DEFAULT_ALLOW_PROFILE},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]},
    }
    return Resource("Profile", DEFAULT_ALLOW_PROFILE, None, body, "(built in)", 1)


def with_namespace_name(profile: Resource) -> Resource:
    """A written Profile as Calico would hold it: a kns.<name> profile
    always carries pcns.kubernetes.io/metadata.name = <name>, as the API
    server sets that label on every Namespace and no one can change it;
    a different value written there is overridden. Other profiles as
    written."""
    if not profile.name.startswith(NS_PROFILE):
        return profile
    ns = profile.name[len(NS_PROFILE) :]
    key = f"pcns.{K8S_NAME_LABEL}"
    spec = profile.spec
    labels = spec.get("labelsToApply")
    if isinstance(labels, Mapping) and labels.get(key) == ns:
        return profile
    given = dict(labels) if isinstance(labels, Mapping) else {}
    body = {**profile.body, "spec": {**spec, "labelsToApply": {**given, key: ns}}}
    return replace(profile, body=body)


class _Ctx:
    """Everything resolution needs, indexed once."""

    def __init__(self, resources: Sequence[Resource], node: str) -> None:
        namespaces = {r.name: r for r in resources if r.kind == "Namespace"}
        accounts = [service_account_profile(r) for r in resources if r.kind == "ServiceAccount"]
        self.profiles = {
            DEFAULT_ALLOW_PROFILE: default_allow_profile(),
            **{f"{NS_PROFILE}{n}": namespace_profile(r) for n, r in namespaces.items()},
            **{p.name: p for p in accounts},
            **{r.name: with_namespace_name(r) for r in resources if r.kind == "Profile"},
        }  # a profile written wins
        self.ns_labels: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        peers: list[Peer] = []
        local: list[Endpoint] = []
        hosts: list[Endpoint] = []
        for r in resources:
            if r.kind == "WorkloadEndpoint":
                peer = self._wep(r)
                peers.append(peer)
                iface = r.spec.get("interfaceName")
                if r.spec.get("node") == node and isinstance(iface, str) and iface != "*":
                    profiles = tuple(str(p) for p in r.spec.get("profiles") or ())
                    local.append(Endpoint(peer, f"{r.namespace}/{r.name}", iface, profiles))
            elif r.kind == "HostEndpoint":
                labels = self._with_profiles(_labels(r), r.spec.get("profiles"))
                nets = _nets(r.spec.get("expectedIPs"))
                ports = self._ports(r.spec.get("ports"))
                peer = Peer(r.ref, r.kind, None, labels, nets, ports)
                peers.append(peer)
                if r.spec.get("node") == node:
                    profiles = tuple(str(p) for p in r.spec.get("profiles") or ())
                    iface = str(r.spec.get("interfaceName") or "")
                    hosts.append(Endpoint(peer, r.name, iface, profiles))
            elif r.kind in ("NetworkSet", "GlobalNetworkSet"):
                labels = _labels(r)
                if r.namespace is not None:
                    # as Calico's: the namespace label, and what its namespace's
                    # profile gives (its kns.<ns> profile is the set's profile)
                    labels = self._with_profiles(labels, [f"{NS_PROFILE}{r.namespace}"])
                    labels[NS_LABEL] = r.namespace
                peers.append(Peer(r.ref, r.kind, r.namespace, labels, _nets(r.spec.get("nets"))))
        self.peers = tuple(peers)
        self.local = tuple(sorted(local, key=lambda e: e.name))
        self.hosts = tuple(sorted(hosts, key=lambda e: e.name))
        self.services = service_endpoints(resources)

    def namespace_labels(self, ns: str, profiles: Sequence[str] = ()) -> dict[str, str]:
        """The labels a namespaceSelector matches of an endpoint in `ns`
        naming `profiles`: as Felix evaluates the pcns.-prefixed selector
        over the labels it inherits, the pcns. labels of every profile it
        names, the first that gives one winning, then those of kns.<ns> if
        not named; the namespace's two name labels are always its own."""
        key = (ns, tuple(profiles))
        got = self.ns_labels.get(key)
        if got is None:
            kns = f"{NS_PROFILE}{ns}"
            got = {}
            for name in (*profiles, kns) if kns not in profiles else profiles:
                prof = self.profiles.get(name)
                raw = prof.spec.get("labelsToApply") if prof else None
                for k, v in _prefixed(raw or {}, "pcns.").items():
                    got.setdefault(k, v)
            got.update({K8S_NAME_LABEL: ns, NAME_LABEL: ns})
            self.ns_labels[key] = got
        return got

    def service_account_labels(self, ns: str, account: str) -> dict[str, str]:
        """The labels a serviceAccounts selector matches of a pod running
        as `account` in `ns`: the pcsa. labels of its ksa.<ns>.<account>
        profile (made of its ServiceAccount, or written), and the account's
        name as projectcalico.org/name, which Calico's profile always has."""
        prof = self.profiles.get(service_account_profile_name(ns, account))
        raw = (prof.spec.get("labelsToApply") if prof else None) or {}
        return {**_prefixed(raw, "pcsa."), NAME_LABEL: account}

    def peer_namespace_labels(self, peer: Peer) -> Mapping[str, str]:
        if peer.ns_labels is not None:
            return peer.ns_labels
        return self.namespace_labels(peer.namespace or "")

    def _with_profiles(self, own: dict[str, str], profiles: object) -> dict[str, str]:
        """An endpoint's labels as Felix's label inheritance index reads
        them: its own label wins, else the first of its profiles (in the
        order it names them) that gives the label."""
        inherited: dict[str, str] = {}
        for name in profiles if isinstance(profiles, list) else []:
            prof = self.profiles.get(str(name))
            if prof is not None:
                for k, v in (prof.spec.get("labelsToApply") or {}).items():
                    inherited.setdefault(str(k), str(v))
        return {**inherited, **own}

    @staticmethod
    def _ports(values: object) -> tuple[NamedPort, ...]:
        out = []
        for p in values if isinstance(values, list) else []:
            if isinstance(p, Mapping) and p.get("name"):
                proto = proto_number(p["protocol"])
                if proto is not None:
                    out.append(NamedPort(str(p["name"]), proto, int(p["port"])))
        return tuple(out)

    def _wep(self, r: Resource) -> Peer:
        ns = r.namespace or ""
        # A pod's own namespace and service account labels are dropped, as
        # Calico drops them: a pod cannot claim another namespace's labels.
        own = {k: v for k, v in _labels(r).items() if not k.startswith(OWNER_PREFIXES)}
        labels = self._with_profiles(own, r.spec.get("profiles"))
        labels[NS_LABEL] = ns
        labels[ORCH_LABEL] = str(r.spec.get("orchestrator") or "k8s")
        # the spec's service account, else the label (which the spec overrides)
        sa = r.spec.get("serviceAccountName") or own.get(SA_LABEL)
        sa_labels: dict[str, str] = {}
        if sa:
            labels[SA_LABEL] = str(sa)
            sa_labels = self.service_account_labels(ns, str(sa))
        nets = _nets(r.spec.get("ipNetworks"))
        named = r.spec.get("profiles")
        ns_labels = self.namespace_labels(ns, [str(p) for p in named or ()])
        return Peer(r.ref, r.kind, ns, labels, nets, self._ports(r.spec.get("ports")),
                    str(sa) if sa else None, sa_labels, ns_labels)  # fmt: skip


def given(value: object) -> str | None:
    """A selector-valued field's text, None when it is unset. Calico's Go
    types hold every selector (a policy's selector, namespaceSelector and
    serviceAccountSelector; a rule side's selector, notSelector,
    namespaceSelector and serviceAccounts.selector) as a plain string with
    omitempty, so "" and a field left out are one value once decoded, and
    libcalico-go acts on each only when it is not "" (a Helm chart that
    renders `namespaceSelector: ""` means no namespaceSelector)."""
    return None if value is None or value == "" else str(value)


def _sel(text: object) -> Selector | None:
    """The parsed selector; None when unset (a policy's own selector unset
    is all(), a rule side's is no constraint: each caller says which)."""
    text = given(text)
    return None if text is None else parse_cached(text)


def _accounts(entity: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A rule side's serviceAccounts, None when it constrains nothing: with
    no names and no selector Calico makes no selector of it (`{}`, `names:
    []`, `selector: ""`), so it does not narrow the side to pods."""
    sa = entity.get("serviceAccounts")
    if not isinstance(sa, Mapping) or (not sa.get("names") and given(sa.get("selector")) is None):
        return None
    return sa


@dataclass(frozen=True, slots=True)
class _Policy:
    resource: Resource
    tier: str
    key: tuple[int, float, str]
    label: str  # policy/<ns>/<name> or policy/<name>


def _policy_types(spec: Mapping[str, Any]) -> set[str]:
    if spec.get("types"):
        return {str(t).lower() for t in spec["types"]}
    if spec.get("egress") and not spec.get("ingress"):
        return {"egress"}
    return {"ingress", "egress"} if spec.get("egress") else {"ingress"}


@dataclass(frozen=True, slots=True)
class _Selecting:
    """What decides whether a policy applies to an endpoint, read from the
    resource once (build_model asks it for every endpoint)."""

    never: bool  # doNotTrack / preDNAT: host endpoints only
    selector: Selector | None
    namespace: str | None  # a NetworkPolicy's: it selects only there
    ns_selector: Selector | None
    ns_global: bool
    sa_selector: Selector | None

    @classmethod
    def of(cls, pol: Resource) -> _Selecting:
        spec = pol.spec
        ns_sel = _sel(spec.get("namespaceSelector"))
        return cls(
            bool(spec.get("doNotTrack") or spec.get("preDNAT")),
            _sel(spec.get("selector")),
            pol.namespace if pol.kind == "NetworkPolicy" else None,
            ns_sel,
            ns_sel is not None and any(isinstance(n, Global) for n in ns_sel.walk()),
            _sel(spec.get("serviceAccountSelector")),
        )

    def matches(self, ctx: _Ctx, ep: Endpoint) -> bool:
        if self.never:
            return False
        if self.selector is not None and not self.selector.matches(ep.peer.labels):
            return False
        if self.namespace is not None and self.namespace != ep.namespace:
            return False
        if self.ns_selector is not None:
            if self.ns_global:
                return False  # global(): non-namespaced endpoints only
            if not self.ns_selector.matches(ctx.peer_namespace_labels(ep.peer)):
                return False
        return self.sa_selector is None or (
            ep.peer.service_account is not None and self.sa_selector.matches(ep.peer.sa_labels)
        )


def _selects(ctx: _Ctx, pol: Resource, ep: Endpoint) -> bool:
    return _Selecting.of(pol).matches(ctx, ep)


def _selects_host(pol: Resource, ep: Endpoint, chain: str) -> bool:
    """Does a policy apply to a host endpoint at this chain? Only global
    policies select host endpoints; doNotTrack policies are its untracked
    chain, preDNAT ones its preDNAT chain, applyOnForward ones also its
    forward chains."""
    spec = pol.spec
    if pol.kind != "GlobalNetworkPolicy":
        return False
    untracked, pre = bool(spec.get("doNotTrack")), bool(spec.get("preDNAT"))
    if chain.startswith("untracked"):
        if not untracked:
            return False
    elif chain == "prednat":
        if not pre:
            return False
    elif untracked or pre or chain.startswith("forward") and not spec.get("applyOnForward"):
        return False
    ns_sel = _sel(spec.get("namespaceSelector"))
    if ns_sel is not None and not any(isinstance(n, Global) for n in ns_sel.walk()):
        return False  # a namespace: never a host endpoint's
    if given(spec.get("serviceAccountSelector")) is not None:
        return False
    sel = _sel(spec.get("selector"))
    return sel is None or sel.matches(ep.peer.labels)


def _host_chain(chain: str, tiers: list[TierChain], profiles: list[Rule]) -> Chain:
    """A host endpoint chain's own ending: the normal chains end as a
    workload's (profiles, then a drop); forwarded traffic passes once every
    tier passed it; preDNAT and untracked chains have no tier ends and go on
    when nothing matched."""
    if chain in ("ingress", "egress"):
        return Chain(tuple(tiers), tuple(profiles))
    if chain.startswith("forward"):
        return Chain(tuple(tiers), (), ALLOW, "end of tiers (forwarded: allow)")
    open_tiers = tuple(TierChain(t.name, PASS, t.rules, t.policies) for t in tiers)
    return Chain(open_tiers, (), NOMATCH, f"no {chain} rule matched (go on)")


POLICY_KINDS = frozenset({"GlobalNetworkPolicy", "NetworkPolicy"})


def policy_label(r: Resource) -> str:
    """How plans and chains name a policy: policy/<ns>/<name> or policy/<name>."""
    return f"policy/{r.namespace}/{r.name}" if r.namespace else f"policy/{r.name}"


def selections_of(
    resources: Sequence[Resource], node: str, policies: Sequence[Resource]
) -> dict[str, tuple[str, ...]]:
    """policy label -> the local WorkloadEndpoints each of `policies` selects."""
    ctx = _Ctx(resources, node)
    out = {}
    for pol in policies:
        sel = _Selecting.of(pol)
        out[policy_label(pol)] = tuple(ep.name for ep in ctx.local if sel.matches(ctx, ep))
    return out


PEER_KINDS = frozenset({"WorkloadEndpoint", "NetworkSet", "GlobalNetworkSet"})


def peer_facts(peer: Peer) -> tuple[Any, ...]:
    """What resolution reads of a peer, as plain values (stored with marshal)."""
    return (peer.kind, peer.namespace, dict(peer.labels), [list(n) for n in peer.nets],
            [[p.name, p.proto, p.port] for p in peer.ports], peer.service_account,
            dict(peer.sa_labels),
            None if peer.ns_labels is None else dict(peer.ns_labels))  # fmt: skip


def peer_of(ref: str, facts: Sequence[Any]) -> Peer:
    """The Peer that peer_facts gave `facts` for (facts stored without
    namespace labels give a peer read by its namespace's kns. profile)."""
    kind, ns, labels, nets, ports, sa, sa_labels, *rest = facts
    return Peer(ref, kind, ns, labels, tuple((int(a), int(b)) for a, b in nets),
                tuple(NamedPort(str(n), int(pr), int(po)) for n, pr, po in ports), sa,
                sa_labels, rest[0] if rest else None)  # fmt: skip


def peers_of(resources: Sequence[Resource], node: str) -> tuple[dict[str, Peer], dict[str, str]]:
    """Every peer selectors match (WorkloadEndpoints of every node, sets,
    HostEndpoints) by ref, in the model's order; and each local
    WorkloadEndpoint's interface."""
    ctx = _Ctx(resources, node)
    return {p.ref: p for p in ctx.peers}, {ep.name: ep.interface for ep in ctx.local}


SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# A Service's endpoints as rules match them: per EndpointSlice, its IPv4
# addresses and its ports (protocol number, port).
ServiceSlices = tuple[tuple[frozenset[int], tuple[tuple[int, int], ...]], ...]


def service_endpoints(resources: Iterable[Resource]) -> dict[tuple[str, str], ServiceSlices]:
    """(namespace, service) -> its EndpointSlices' addresses and ports, every
    endpoint whatever its conditions (a rule names the Service's pods, not
    those NAT would pick now)."""
    found: dict[tuple[str, str], list[tuple[frozenset[int], tuple[tuple[int, int], ...]]]] = {}
    for r in resources:
        owner = r.labels.get(SERVICE_NAME_LABEL) if r.kind == "EndpointSlice" else None
        if not isinstance(owner, str) or r.body.get("addressType") != "IPv4":
            continue
        addrs: set[int] = set()
        for ep in r.body.get("endpoints") or ():
            for text in ep.get("addresses") or () if isinstance(ep, Mapping) else ():
                try:
                    addrs.add(int(ipaddress.IPv4Address(text)))
                except ValueError:
                    continue
        ports = tuple(sorted(
            (PROTOCOLS[str(p.get("protocol") or "TCP")], int(p["port"]))
            for p in r.body.get("ports") or ()
            if isinstance(p, Mapping) and isinstance(p.get("port"), int)
            and str(p.get("protocol") or "TCP") in PROTOCOLS
        ))  # fmt: skip
        found.setdefault((r.namespace or "", owner), []).append((frozenset(addrs), ports))
    return {ref: tuple(slices) for ref, slices in found.items()}


def service_refs(resources: Iterable[Resource]) -> frozenset[tuple[str, str]]:
    """The Services policy rules name (`services` on either side), as
    (namespace, name): a rule's resolution reads their EndpointSlices."""
    out = set()
    for r in resources:
        if r.kind not in POLICY_KINDS:
            continue
        for direction in DIRECTIONS:
            for raw in r.spec.get(direction) or ():
                for side in ("source", "destination"):
                    match = ((raw.get(side) or {}) if isinstance(raw, Mapping) else {}).get(
                        "services"
                    )
                    if isinstance(match, Mapping) and match.get("name"):
                        ns = match.get("namespace") or r.namespace or ""
                        out.add((str(ns), str(match["name"])))
    return frozenset(out)


def origins_of(peers: Iterable[Peer]) -> dict[Net, str]:
    """Which object named each address, for plans: the first peer that has it."""
    out: dict[Net, str] = {}
    for peer in peers:
        for net in peer.nets:
            out.setdefault(net, f"ipset {peer.ref}")
    return out


def reading(
    resources: Sequence[Resource], node: str, candidates: Sequence[Resource], peers: Sequence[Peer]
) -> list[Resource]:
    """Those of `candidates` (policies, profiles) whose rules could resolve
    differently for `peers`: a selector, notSelector, namespaceSelector or
    serviceAccounts on either side picks one of them, or a remote named port
    could be one of theirs."""
    ctx = _Ctx(resources, node)
    ctx.peers = tuple(peers)
    resolver = _Resolver(ctx)
    out = []
    for res in candidates:
        if any(_entity_reads(resolver, res, raw.get(side) or {})
               for direction in DIRECTIONS for raw in res.spec.get(direction) or ()
               for side in ("source", "destination")):  # fmt: skip
            out.append(res)
    return out


def _entity_reads(resolver: _Resolver, res: Resource, entity: Mapping[str, Any]) -> bool:
    if any(resolver._peers(entity, res, f) for f in ("selector", "notSelector")):
        return True
    named = any(_port_range(p) is None for f in ("ports", "notPorts") for p in entity.get(f) or ())
    return named and bool(resolver._peers({"selector": "all()"}, res, "selector"))


def build_model(
    resources: Sequence[Resource], node: str, only: Collection[str] | None = None
) -> Model:
    """Every local endpoint's chains (with `only`, the chains of those
    WorkloadEndpoints and of every host endpoint); raises PolicyError for a
    rule that cannot be enforced."""
    ctx = _Ctx(resources, node)
    tiers = {r.name: r for r in resources if r.kind == "Tier"}
    tier_order = {name: _order_key(t.spec.get("order"), name) for name, t in tiers.items()}
    for name, (order, _) in RESERVED_TIERS.items():  # Calico's own tiers exist without a resource
        tier_order.setdefault(name, _order_key(order, name))
    policies = []
    for r in resources:
        if r.kind in POLICY_KINDS:
            tier = str(r.spec.get("tier") or "default")
            policies.append(
                _Policy(r, tier, _order_key(r.spec.get("order"), policy_sort_name(r)),
                        policy_label(r))
            )  # fmt: skip
    policies.sort(key=lambda p: (tier_order.get(p.tier, _order_key(None, p.tier)), p.key))
    resolver = _Resolver(ctx)
    chains: dict[tuple[str, str], Chain] = {}
    selecting = [(pol, _Selecting.of(pol.resource), _policy_types(pol.resource.spec))
                 for pol in policies]  # fmt: skip
    selections: dict[str, list[str]] = {}
    for ep in ctx.local:
        if only is not None and ep.name not in only:
            continue
        applies = [(pol, types) for pol, sel, types in selecting if sel.matches(ctx, ep)]
        for pol, _types in applies:
            selections.setdefault(pol.label, []).append(ep.name)
        for direction in DIRECTIONS:
            chain_tiers: list[TierChain] = []
            by_tier: dict[str, list[_Policy]] = {}
            for pol, types in applies:
                if direction in types:
                    by_tier.setdefault(pol.tier, []).append(pol)
            for tier_name, pols in by_tier.items():  # policies are sorted by tier already
                rules: list[Rule] = []
                for pol in pols:
                    rules += resolver.rules(pol.resource, pol.label, direction, ep)
                default = _default_action(tiers, tier_name)
                chain_tiers.append(
                    TierChain(tier_name, default, tuple(rules), tuple(p.label for p in pols))
                )
            prof_rules: list[Rule] = []
            for name in ep.profiles:
                prof = ctx.profiles.get(name)
                if prof is not None:
                    prof_rules += resolver.rules(prof, f"profile/{name}", direction, ep)
            chains[(ep.name, direction)] = Chain(tuple(chain_tiers), tuple(prof_rules))
    for ep in ctx.hosts:
        for chain_name, direction in HOST_CHAINS.items():
            chain_tiers = []
            by_tier = {}
            for pol in policies:
                if direction in _policy_types(pol.resource.spec) and _selects_host(
                    pol.resource, ep, chain_name
                ):
                    by_tier.setdefault(pol.tier, []).append(pol)
            for tier_name, pols in by_tier.items():
                rules = []
                for pol in pols:
                    rules += resolver.rules(pol.resource, pol.label, direction, ep)
                default = _default_action(tiers, tier_name)
                chain_tiers.append(
                    TierChain(tier_name, default, tuple(rules), tuple(p.label for p in pols))
                )
            prof_rules = []
            if chain_name in ("ingress", "egress"):
                for name in ep.profiles:
                    prof = ctx.profiles.get(name)
                    if prof is not None:
                        prof_rules += resolver.rules(prof, f"profile/{name}", direction, ep)
            chains[(ep.name, chain_name)] = _host_chain(chain_name, chain_tiers, prof_rules)
    chosen = ctx.local if only is None else tuple(ep for ep in ctx.local if ep.name in only)
    return Model(chosen, chains, ctx.peers, ctx.hosts,
                 {label: tuple(names) for label, names in selections.items()})  # fmt: skip


class _Resolver:
    """Rules into alternatives of concrete match data, for one local endpoint."""

    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx
        self._sets: dict[tuple[Any, ...], tuple[Peer, ...]] = {}
        self._rules: dict[tuple[Any, ...], tuple[Rule, ...]] = {}
        self._needs: dict[tuple[str, str], tuple[bool, bool]] = {}

    def rules(self, res: Resource, label: str, direction: str, ep: Endpoint) -> list[Rule]:
        """Resolved once per policy and direction, and again only for endpoints
        that differ in what resolution reads of them: their addresses (when a
        rule constrains the local side's) and their named ports (when a rule
        names a local port)."""
        needs = self._needs.get((label, direction))
        if needs is None:
            needs = self._needs[(label, direction)] = _local_needs(res, direction)
        key = (label, direction, ep.peer.nets if needs[0] else None,
               ep.peer.ports if needs[1] else None)  # fmt: skip
        got = self._rules.get(key)
        if got is None:
            out = []
            for i, raw in enumerate(res.spec.get(direction) or ()):
                ref = f"{label} {direction} rule {i + 1}"
                alts = self._rule(raw, ref, res, direction, ep)
                out.append(Rule(ref, str(raw["action"]), tuple(alts)))
            got = self._rules[key] = tuple(out)
        return list(got)

    def _peers(
        self, entity: Mapping[str, Any], res: Resource, selector_field: str
    ) -> tuple[Peer, ...] | None:
        """The objects an entity's (not)selector, namespaceSelector and
        serviceAccounts pick, in the policy's scope; None: no such constraint."""
        sel_text = given(entity.get(selector_field))
        ns_text = given(entity.get("namespaceSelector")) if selector_field == "selector" else None
        sa = _accounts(entity) if selector_field == "selector" else None
        # In a NetworkPolicy any selector field, notSelector too, limits the
        # entity to endpoints of the policy's namespace (as Calico scopes it).
        scoped = (
            selector_field == "selector"
            and res.kind == "NetworkPolicy"
            and given(entity.get("notSelector")) is not None
        )
        if sel_text is None and ns_text is None and sa is None and not scoped:
            return None
        key = (selector_field, sel_text, ns_text, repr(sa), res.namespace, res.kind)
        got = self._sets.get(key)
        if got is not None:
            return got
        sel, ns_sel = _sel(sel_text), _sel(ns_text)
        is_global = ns_sel is not None and any(isinstance(n, Global) for n in ns_sel.walk())
        sa_names = set(sa.get("names") or ()) if isinstance(sa, Mapping) else None
        sa_sel = _sel(sa.get("selector")) if isinstance(sa, Mapping) else None
        picked = []
        for p in self.ctx.peers:
            if selector_field == "selector":
                if is_global:
                    if p.namespace is not None:
                        continue
                elif ns_sel is not None:
                    if p.namespace is None or not ns_sel.matches(
                        self.ctx.peer_namespace_labels(p)
                    ):
                        continue
                elif res.kind == "NetworkPolicy" and p.namespace != res.namespace:
                    continue
            if sel is not None and not sel.matches(p.labels):
                continue
            if sa is not None:
                if p.service_account is None:
                    continue
                if sa_names and p.service_account not in sa_names:
                    continue
                if sa_sel is not None and not sa_sel.matches(p.sa_labels):
                    continue
            picked.append(p)
        got = tuple(picked)
        self._sets[key] = got
        return got

    def _rule(
        self, raw: Mapping[str, Any], ref: str, res: Resource, direction: str, ep: Endpoint
    ) -> list[Alt]:
        for unsupported in ("http",):
            if raw.get(unsupported):
                raise PolicyError(
                    f"{ref}: '{unsupported}' match cannot be enforced by this dataplane"
                )
        local_side = "destination" if direction == "ingress" else "source"
        if (raw.get(local_side) or {}).get("services"):  # (validation refuses it too)
            raise PolicyError(f"{ref}: {local_side}.services names the local endpoint's side")
        if raw.get("ipVersion") == 6:
            return []
        proto = proto_number(raw.get("protocol"))
        not_proto = proto_number(raw.get("notProtocol"))
        if proto == 58 and raw.get("ipVersion") != 4:
            return []  # ICMPv6: never IPv4 traffic (with ipVersion 4: IPv4's protocol 58)
        if raw.get("notICMP") is not None and proto != ICMP:
            # Calico accepts it, but its dataplanes read an ICMP type and
            # code from ICMP packets alone: what it matches is not defined.
            raise PolicyError(
                f"{ref}: notICMP with protocol {raw.get('protocol', '(none)')!s}: "
                "an ICMP type is only defined for ICMP packets, so this dataplane cannot "
                "enforce it; set protocol: ICMP, or move notICMP to a rule that does"
            )
        base = Alt(
            protos=None if proto is None else frozenset({proto}),
            not_protos=frozenset() if not_proto is None else frozenset({not_proto}),
        )
        if raw.get("icmp") is not None:
            base = _replace(base, dports=(_icmp_range(raw["icmp"]),))
        if raw.get("notICMP") is not None:
            base = _replace(base, not_dports=(_icmp_range(raw["notICMP"]),))
        local_side = "destination" if direction == "ingress" else "source"
        alts = [base]
        for side in ("source", "destination"):
            entity = raw.get(side) or {}
            if any(entity.get(f) and not _nets(entity[f]) for f in ("nets", "notNets")):
                return []  # IPv6 nets alone: the rule is not an IPv4 rule (as Calico filters it)
            ports_field = "dports" if side == "destination" else "sports"
            if side == local_side:
                if not self._local_matches(entity, res, ref, side, ep):
                    return []
                ranges = self._local_ports(entity.get("ports"), proto, ep)
                not_ranges = self._local_ports(entity.get("notPorts"), proto, ep)
                alts = [_with_ports(a, ports_field, ranges, not_ranges or ()) for a in alts]
            else:
                alts = self._remote(alts, entity, res, ref, side, proto, ports_field)
        return [a for a in alts if not _empty(a)]

    def _entity_sets(
        self, entity: Mapping[str, Any], res: Resource, ref: str, side: str
    ) -> tuple[list[frozenset[Net]], list[frozenset[Net]], tuple[Peer, ...] | None]:
        include: list[frozenset[Net]] = []
        exclude: list[frozenset[Net]] = []
        if entity.get("nets") is not None:
            include.append(frozenset(_nets(entity["nets"])))
        if entity.get("notNets"):
            exclude.append(frozenset(_nets(entity["notNets"])))
        peers = self._peers(entity, res, "selector")
        if peers is not None:
            include.append(frozenset(n for p in peers for n in p.nets))
        not_peers = self._peers(entity, res, "notSelector")
        if not_peers is not None:
            exclude.append(frozenset(n for p in not_peers for n in p.nets))
        return include, [e for e in exclude if e], peers

    def _local_matches(
        self, entity: Mapping[str, Any], res: Resource, ref: str, side: str, ep: Endpoint
    ) -> bool:
        include, exclude, _ = self._entity_sets(entity, res, ref, side)
        if not include and not exclude:
            return True
        results = set()
        for addr, _plen in ep.peer.nets or ((0, 32),):
            ok = all(any(net_contains(n, addr) for n in s) for s in include) and not any(
                any(net_contains(n, addr) for n in s) for s in exclude
            )
            results.add(ok)
        if len(results) > 1:
            raise PolicyError(
                f"{ref}: {side} matches some of {ep.name}'s addresses and not others; "
                "this dataplane cannot enforce that"
            )
        return results.pop()

    def _local_ports(
        self, ports: object, proto: int | None, ep: Endpoint
    ) -> tuple[Range, ...] | None:
        if not ports:
            return None  # absent or empty: any port
        out: list[Range] = []
        for p in ports if isinstance(ports, list) else []:
            numeric = _port_range(p)
            if numeric is not None:
                out.append(numeric)
            else:
                out += [
                    (np.port, np.port) for np in ep.peer.ports if np.name == p and np.proto == proto
                ]
        return tuple(out)

    def _remote(
        self,
        alts: list[Alt],
        entity: Mapping[str, Any],
        res: Resource,
        ref: str,
        side: str,
        proto: int | None,
        ports_field: str,
    ) -> list[Alt]:
        services = entity.get("services")
        if isinstance(services, Mapping):
            # The Service's endpoints (validation keeps selectors and nets
            # off such a side): their addresses, and as a destination each
            # address with its slice's ports.
            ns = str(services.get("namespace") or res.namespace or "")
            slices = self.ctx.services.get((ns, str(services.get("name"))), ())
            if side == "destination":
                return _to_service(alts, slices, proto)
            include = [frozenset((a, 32) for addrs, _ in slices for a in addrs)]
            exclude: list[frozenset[Net]] = []
            peers: tuple[Peer, ...] | None = ()
        else:
            include, exclude, peers = self._entity_sets(entity, res, ref, side)
        alts = [
            _replace(a, include=a.include + tuple(include), exclude=a.exclude + tuple(exclude))
            for a in alts
        ]
        ports = entity.get("ports")
        not_ports = entity.get("notPorts")
        not_ranges: list[Range] = []
        for p in not_ports or ():
            r = _port_range(p)
            if r is None:
                raise PolicyError(f"{ref}: {side}.notPorts names port '{p}' of remote endpoints; "
                                  "this dataplane cannot enforce that")  # fmt: skip
            not_ranges.append(r)
        if not ports:
            return [_with_ports(a, ports_field, None, tuple(not_ranges)) for a in alts]
        numeric = [r for r in (_port_range(p) for p in ports) if r is not None]
        named = [str(p) for p in ports if _port_range(p) is None]
        out = []
        if numeric:
            out += [_with_ports(a, ports_field, tuple(numeric), tuple(not_ranges)) for a in alts]
        if named:
            # A named port is where each matching peer has it: (its address, its number).
            candidates = (
                peers
                if peers is not None
                else self._peers({"selector": "all()"}, res, "selector") or ()
            )
            by_port: dict[int, set[Net]] = {}
            for peer in candidates:
                for np in peer.ports:
                    if np.name in named and np.proto == proto:
                        by_port.setdefault(np.port, set()).update(peer.nets)
            for number, nets in sorted(by_port.items()):
                for a in alts:
                    out.append(
                        _with_ports(
                            _replace(a, include=a.include + (frozenset(nets),)),
                            ports_field, ((number, number),), tuple(not_ranges),
                        )
                    )  # fmt: skip
        return out


def _to_service(alts: list[Alt], slices: ServiceSlices, proto: int | None) -> list[Alt]:
    """Alternatives that match a flow to one of a Service's endpoints on one
    of its ports (each slice's addresses with that slice's ports), within
    the rule's own protocol."""
    by_port: dict[tuple[int, int], set[int]] = {}
    for addrs, ports in slices:
        for port in ports:
            by_port.setdefault(port, set()).update(addrs)
    out = []
    for (port_proto, number), members in sorted(by_port.items()):
        if proto is not None and port_proto != proto:
            continue
        nets = frozenset((a, 32) for a in members)
        for a in alts:
            out.append(_replace(a, include=a.include + (nets,),
                                protos=frozenset({port_proto}), dports=((number, number),)))
    return out  # (no slice, or no port of the rule's protocol: nothing matches)


_LOCAL_ADDRESS_FIELDS = ("nets", "notNets", "selector", "notSelector", "namespaceSelector",
                         "serviceAccounts")  # fmt: skip


def _local_needs(res: Resource, direction: str) -> tuple[bool, bool]:
    """Does resolving this resource's rules read the local endpoint's addresses,
    and its named ports?"""
    side = "destination" if direction == "ingress" else "source"
    addrs = ports = False
    for raw in res.spec.get(direction) or ():
        entity = raw.get(side) or {}
        addrs |= any(entity.get(f) not in (None, "") for f in _LOCAL_ADDRESS_FIELDS)
        for field_name in ("ports", "notPorts"):
            ports |= any(_port_range(p) is None for p in entity.get(field_name) or ())
    return addrs, ports


def _replace(a: Alt, **kw: Any) -> Alt:
    import dataclasses

    return dataclasses.replace(a, **kw)


def _with_ports(
    a: Alt, field_name: str, ranges: tuple[Range, ...] | None, not_ranges: tuple[Range, ...]
) -> Alt:
    if field_name == "dports":
        return _replace(
            a,
            dports=ranges if ranges is not None else a.dports,
            not_dports=a.not_dports + not_ranges,
        )
    return _replace(
        a, sports=ranges if ranges is not None else a.sports, not_sports=a.not_sports + not_ranges
    )


def _empty(a: Alt) -> bool:
    """An alternative nothing can match (an empty set to be in, no ports)."""
    return any(not s for s in a.include) or (a.dports == ()) or (a.sports == ())


def _port_range(p: object) -> Range | None:
    if isinstance(p, int):
        return (p, p)
    text = str(p)
    if text.isdigit():
        return (int(text), int(text))
    lo, sep, hi = text.partition(":")
    if sep and lo.isdigit() and hi.isdigit():
        return (int(lo), int(hi))
    return None


def _icmp_range(icmp: Mapping[str, Any]) -> Range:
    t = int(icmp.get("type", 0)) if icmp.get("type") is not None else None
    if t is None:
        return (0, 0xFFFF)
    if icmp.get("code") is None:
        return (t << 8, (t << 8) | 0xFF)
    return ((t << 8) | int(icmp["code"]), (t << 8) | int(icmp["code"]))
