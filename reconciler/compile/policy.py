"""Class compiler: one endpoint's policy chain -> lookup tables. Pure.

The datapath never walks rules. Every CIDR the chain mentions (nets, and the
addresses of what selectors and sets pick) splits the IPv4 space into
classes: addresses with the same longest matching prefix are in exactly the
same sets, so a class is that prefix. (protocol, destination port or ICMP
type<<8|code) splits the same way into port classes, and source ports into
source classes when a rule uses them. A verdict table then gives, for each
(address class, port class, source class), the action and the rule that
decides it, filled rule by rule in chain order: a rule writes only the cells
it matches that nothing earlier decided (Pass marks them passed for the rest
of its tier), so the work is the cells each rule matches, not classes x
rules. The most common verdict is the program's default and is not stored
cell by cell.

A program is named by a hash of its content: endpoints with the same chain
share one, and a change is a new program beside the old one (see
reconciler/compile/policy_objects.py for how it is switched).
"""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reconciler.compile.policy_model import (
    ALL_NET,
    DENY,
    LOG,
    PASS,
    PORT_PROTOCOLS,
    Alt,
    Chain,
    Net,
    Packet,
    Range,
    Verdict,
    net_contains,
)
from reconciler.datapath.maps.policy_types import (
    ACTION_DENY,
    ACTION_NAMES,
    ACTIONS,
    ANY_CLASS,
)


@dataclass(frozen=True, slots=True)
class PortClass:
    proto: int | None  # None: every protocol no rule names
    lo: int
    hi: int


@dataclass(frozen=True, slots=True)
class Program:
    """One (endpoint, direction)'s compiled policy."""

    prog_id: int
    addr_classes: tuple[Net, ...]  # class id -> its prefix
    port_classes: tuple[PortClass, ...]
    sport_classes: tuple[PortClass, ...]  # () unless a rule matches source ports
    cells: tuple[tuple[tuple[int, int, int], tuple[int, int]], ...]  # (a, p, s) -> (action, ref)
    default: tuple[int, int]
    refs: tuple[str, ...]  # ref index -> "policy/ns/name ingress rule 1" or a tier end
    origins: tuple[str, ...]  # per address class: what named it (for plans)

    def verdict(self, a: int, p: int, s: int) -> tuple[int, int]:
        return dict(self.cells).get((a, p, s), self.default)

    # -- lookups as the datapath does them ------------------------------
    def addr_class(self, addr: int) -> int:
        best, best_len = 0, -1
        for i, net in enumerate(self.addr_classes):
            if net[1] > best_len and net_contains(net, addr):
                best, best_len = i, net[1]
        return best

    def port_class(self, proto: int, value: int, source: bool = False) -> int:
        classes = self.sport_classes if source else self.port_classes
        for i, c in enumerate(classes):
            if c.proto == proto and c.lo <= value <= c.hi:
                return i
        return 0

    def lookup(self, p: Packet) -> tuple[int, int]:
        s = self.port_class(p.proto, p.sport, True) if self.sport_classes else 0
        return self.verdict(self.addr_class(p.peer), self.port_class(p.proto, p.dport), s)


def _intervals(cuts: set[int]) -> list[Range]:
    """Elementary intervals of [0, 65535] split before every cut."""
    points = sorted(c for c in cuts if 0 < c <= 0xFFFF)
    out, lo = [], 0
    for c in points:
        out.append((lo, c - 1))
        lo = c
    out.append((lo, 0xFFFF))
    return out


def _port_classes(alts: Sequence[Alt], source: bool) -> list[PortClass]:
    protos: set[int] = set()
    cuts: dict[int, set[int]] = {}
    for a in alts:
        named = set(a.protos or ()) | set(a.not_protos)
        if not source:
            protos |= named
        ranges = (a.sports or ()) + a.not_sports if source else (a.dports or ()) + a.not_dports
        if ranges:
            for proto in a.protos or ():
                protos.add(proto)
                for lo, hi in ranges:
                    cuts.setdefault(proto, set()).update((lo, hi + 1))
    if source and not cuts:
        return []
    classes = [PortClass(None, 0, 0xFFFF)]
    for proto in sorted(protos):
        classes += [PortClass(proto, lo, hi) for lo, hi in _intervals(cuts.get(proto, set()))]
    return classes


def _ports_match(a: Alt, c: PortClass, source: bool) -> bool:
    """Does the alternative match this class of its dimension? The protocol
    is judged by the destination dimension only: a source class stands for
    (protocol, source port) pairs whose protocol that dimension decides."""
    if c.proto is None:
        return (a.sports if source else a.dports) is None and (source or a.protos is None)
    if not source and a.protos is not None and c.proto not in a.protos:
        return False
    if not source and c.proto in a.not_protos:
        return False
    has_l4 = c.proto in PORT_PROTOCOLS or (c.proto == 1 and not source)
    ranges, not_ranges = (a.sports, a.not_sports) if source else (a.dports, a.not_dports)
    if ranges is not None and not (has_l4 and any(lo <= c.lo and c.hi <= hi for lo, hi in ranges)):
        return False
    return not (not_ranges and has_l4 and any(lo <= c.lo and c.hi <= hi for lo, hi in not_ranges))


class _AddrIndex:
    def __init__(self, nets: Iterable[Net]) -> None:
        self.classes = sorted(set(nets) | {ALL_NET})
        self.index = {n: i for i, n in enumerate(self.classes)}
        self.starts = [n[0] for n in self.classes]

    def below(self, net: Net) -> range:
        """Class ids of `net` and every more specific class inside it."""
        i = self.index[net]
        end = net[0] + (1 << (32 - net[1])) - 1
        return range(i, bisect.bisect_right(self.starts, end))

    def members(self, alt: Alt) -> Iterable[int]:
        if not alt.include and not alt.exclude:
            return range(len(self.classes))
        got: set[int] | None = None
        for s in alt.include:
            ids = {c for n in s for c in self.below(n)}
            got = ids if got is None else got & ids
        if got is None:
            got = set(range(len(self.classes)))
        for s in alt.exclude:
            got -= {c for n in s for c in self.below(n)}
        return got


def compile_chain(chain: Chain, origins: dict[Net, str] | None = None) -> Program:
    rules = list(chain.rules())
    alts = [a for r in rules for a in r.alts]
    addr = _AddrIndex(n for a in alts for n in a.nets())
    ports = _port_classes(alts, False)
    sports = _port_classes(alts, True)
    n_s = max(1, len(sports))
    refs: list[str] = [r.ref for r in rules]
    decided: dict[tuple[int, int, int], tuple[int, int]] = {}
    universe_size = len(addr.classes) * len(ports) * n_s

    def matched(alt: Alt) -> Iterable[tuple[int, int, int]]:
        p_ids = [i for i, c in enumerate(ports) if _ports_match(alt, c, False)]
        s_ids = [i for i, c in enumerate(sports) if _ports_match(alt, c, True)] if sports else [0]
        if not p_ids or not s_ids:
            return
        for a_id in addr.members(alt):
            for p_id in p_ids:
                for s_id in s_ids:
                    yield (a_id, p_id, s_id)

    def walk(tier_rules: Sequence[int]) -> set[tuple[int, int, int]]:
        passed: set[tuple[int, int, int]] = set()
        for idx in tier_rules:
            rule = rules[idx]
            if rule.action == LOG:
                continue
            for alt in rule.alts:
                for cell in matched(alt):
                    if cell in decided or cell in passed:
                        continue
                    if rule.action == PASS:
                        passed.add(cell)
                    else:
                        decided[cell] = (ACTIONS[rule.action], idx)
        return passed

    def every_cell() -> Iterable[tuple[int, int, int]]:
        for a_id in range(len(addr.classes)):
            for p_id in range(len(ports)):
                for s_id in range(n_s):
                    yield (a_id, p_id, s_id)

    start = 0
    for tier in chain.tiers:
        ids = list(range(start, start + len(tier.rules)))
        start += len(tier.rules)
        passed = walk(ids)
        if tier.default_action == DENY and len(decided) + len(passed) < universe_size:
            refs.append(f"tier/{tier.name} default action")
            tier_end = (ACTION_DENY, len(refs) - 1)
            for cell in every_cell():
                if cell not in decided and cell not in passed:
                    decided[cell] = tier_end
    profile_ids = list(range(start, start + len(chain.profiles)))
    # Pass in a profile decides nothing: the chain's end decides it.
    walk(profile_ids)
    refs.append(chain.end_ref)
    end = (ACTIONS[chain.end_action], len(refs) - 1)
    counts = Counter(decided.values())
    if len(decided) < universe_size:
        counts[end] += universe_size - len(decided)
    default = max(counts.items(), key=lambda kv: (kv[1], -kv[0][1]))[0] if counts else end
    cells = []
    for cell in every_cell() if len(decided) < universe_size else sorted(decided):
        value = decided.get(cell, end)
        if value != default:
            cells.append((cell, value))
    cells.sort()
    names = origins or {}
    program = Program(
        0,
        tuple(addr.classes),
        tuple(ports),
        tuple(sports),
        tuple(cells),
        default,
        tuple(refs),
        tuple(names.get(n, "") for n in addr.classes),
    )
    return _named(program)


def _named(p: Program) -> Program:
    content = repr((p.addr_classes, p.port_classes, p.sport_classes, p.cells, p.default, p.refs))
    h = int.from_bytes(hashlib.blake2b(content.encode(), digest_size=4).digest(), "little")
    if h in (0, ANY_CLASS):
        h = 1
    import dataclasses

    return dataclasses.replace(p, prog_id=h)


def verdict_of(program: Program, p: Packet) -> Verdict:
    """The compiled program's answer, in the model's terms (for tests and --explain)."""
    action, ref = program.lookup(p)
    return Verdict(ACTION_NAMES[action], program.refs[ref])
