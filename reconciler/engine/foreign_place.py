"""Objects not ours where ours must go, and what a plan leaves out for them.

Three kinds, each listed by observe as foreign and never touched:
- a tc filter at our priority on a hook we attach to (attaching would
  replace it: tc replaces by priority and handle);
- an `ingress` qdisc where our clsact must go (it holds the clsact's
  handle, and a filter of ours would land on it, the egress one nowhere);
- an XDP program of someone else's where ours must go
  (compile.host_policy.without_foreign_xdp leaves ours out).

A filter at our priority on a hook where ours is attached already blocks
nothing (ours is there), but may run first: reconcile.foreign_ahead warns
with `shares_our_priority`.

None stops the rest of the node. For the first two the interface they sit
on is left as it is (`leave_blocked`): none of our tc filters there is
attached, replaced or detached, so it is never half attached, and
kube-proxy's leftover chains stay while they are all that gives its pods
service NAT. Each object gets a warning that names it, says what it costs
and how to remove it; `blocked_in` and `held_by_foreign` find those
warnings in a plan again (saved plans included), for exit codes, the apply
record and --status. Pure."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.plan.address import Address
from reconciler.plan.diff import Change
from reconciler.plan.plan import Plan
from reconciler.plan.state import DesiredState, ObjKind, ObservedState

# In every warning about an object that holds our place (the XDP one is
# made by compile.host_policy.without_foreign_xdp, which says it too):
# how a plan's warnings are told apart from the rest.
WHERE_OURS_GO = "where ours must go"

# The kinds of foreign object (observe's names start so) that block an
# interface's tc hooks, as against the XDP ones that block its XDP hook alone.
_TC_KINDS = ("tc/", "qdisc/")


@dataclass(frozen=True, slots=True)
class Blocked:
    """One object not ours on `iface` where our tc filters must go."""

    foreign: str  # as observe names it: "tc/<iface>/<dir> prio <n> <name>", "qdisc/<iface> ingress"
    iface: str
    warning: str


def blocked_hooks(changes: Sequence[Change], observed: ObservedState) -> tuple[Blocked, ...]:
    """The objects not ours that sit where `changes` would attach a filter
    of ours: an `ingress` qdisc on the interface, or a filter at our
    priority on the hook. A change that only detaches is never blocked."""
    from reconciler.datapath.programs import TC_PRIO
    from reconciler.observe.kernel import foreign_qdisc

    foreign = set(observed.foreign)
    found: dict[str, Blocked] = {}
    for change in changes:
        if change.kind is not ObjKind.TC or change.after is None:
            continue
        hook = Address.parse(change.address)
        qdisc = foreign_qdisc(hook.iface)
        if qdisc in foreign:
            found[qdisc] = Blocked(qdisc, hook.iface, _qdisc_warning(qdisc, hook.iface))
        at_ours = f"{change.address} prio {TC_PRIO} "
        for taken in sorted(f for f in foreign if f.startswith(at_ours)):
            found[taken] = Blocked(taken, hook.iface, _filter_warning(taken, hook, TC_PRIO))
    return tuple(found[f] for f in sorted(found))


def _cost(iface: str) -> str:
    return (
        f"so {iface} gets no policy or service NAT of ours (our filters there are left as "
        "they are)"
    )


def _qdisc_warning(foreign: str, iface: str) -> str:
    return (
        f"{foreign}: an ingress qdisc that is not ours holds the tc hook {WHERE_OURS_GO} "
        f"(our clsact), {_cost(iface)}; remove it (tc qdisc del dev {iface} ingress; its "
        "filters go with it), then apply again; left alone"
    )


def _filter_warning(foreign: str, hook: Address, prio: int) -> str:
    return (
        f"{foreign}: a tc filter that is not ours holds our priority ({prio:#x}) "
        f"{WHERE_OURS_GO}, {_cost(hook.iface)}; remove it or free that priority (tc filter "
        f"del dev {hook.iface} {hook.direction} pref {prio}), then apply again; left alone"
    )


def shares_our_priority(foreign: str, hook: Address, prio: int) -> str:
    """The warning for a filter not ours at our priority on a hook where ours
    is already attached (not blocked: ours is there, with another handle).
    Which of the two runs first is the order they were added in, newest
    first, and no apply of ours can settle it: replacing ours keeps its
    place, and taking ours off to add it again would leave theirs alone on
    the hook in between."""
    return (
        f"{foreign}: a tc filter that is not ours shares our priority ({prio:#x}) on a hook "
        "of ours; the kernel runs the filters of one priority newest first, so if it was "
        "added after ours it decides packets before ours: what it accepts or drops our policy "
        "and service NAT never see; remove it by its handle (tc filter show dev "
        f"{hook.iface} {hook.direction} lists it; tc filter del dev {hook.iface} "
        f"{hook.direction} pref {prio} handle <its handle> bpf; the pref alone removes ours "
        f"too) or move it after ours (a priority above {prio}); left alone"
    )


def leave_blocked(
    changes: Sequence[Change],
    desired: DesiredState,
    observed: ObservedState,
    blocked: Sequence[Blocked],
) -> tuple[tuple[Change, ...], DesiredState]:
    """`changes` and `desired` without what the blocked interfaces' tc
    hooks need: their tc changes go, and the desired state holds their tc
    filters as the kernel has them now (none, or ours as they are), so the
    check after apply finds them as meant. While any interface is blocked,
    kube-proxy's leftover chains are kept too: they go once our programs
    are attached in their place (plan.diff's order), which on a blocked
    interface they are not. Map entries stay in: only our programs on an
    interface read its entries, so without the filters they decide nothing,
    and they are ready when the filters come."""
    ifaces = {b.iface for b in blocked}
    if not ifaces:
        return tuple(changes), desired

    def held(address: str, kind: ObjKind) -> bool:
        if kind is ObjKind.NETFILTER:
            return True
        return kind is ObjKind.TC and Address.parse(address).iface in ifaces

    objects = {a: o for a, o in desired.objects.items() if not held(a, o.kind)}
    objects.update({a: o for a, o in observed.objects.items() if held(a, o.kind)})
    kept = tuple(c for c in changes if not held(c.address, c.kind))
    return kept, dataclasses.replace(desired, objects=objects)


def held_by_foreign(plan: Plan) -> tuple[str, ...]:
    """The objects not ours (as observe names them) that the plan's warnings
    say hold the place of ours: tc and XDP alike."""
    return tuple(
        f for f in plan.foreign
        if any(w.startswith(f"{f}: ") and WHERE_OURS_GO in w for w in plan.warnings)
    )  # fmt: skip


def blocked_in(plan: Plan) -> tuple[str, ...]:
    """Those of held_by_foreign that block an interface's tc hooks."""
    return tuple(f for f in held_by_foreign(plan) if f.startswith(_TC_KINDS))


def blocked_ifaces(blocked: Sequence[str]) -> tuple[str, ...]:
    """The interfaces that objects blocking tc hooks (blocked_in) sit on."""
    return tuple(sorted({f.split(" ", 1)[0].split("/")[1] for f in blocked}))


def blocked_error(blocked: Sequence[str]) -> str:
    """What an apply that left blocked interfaces out reports and records."""
    return (
        f"not converged: objects not ours hold the place of ours on {len(blocked)} hook(s), "
        f"left out of the apply: {'; '.join(blocked)}; everything else was applied; remove "
        "them (reconcile --plan says how), then apply again"
    )
