"""Workload policy at scale: ours against a Calico-iptables-shaped baseline.

Three parts, each printing its figures and, where there is one, the baseline
measured in the same run:

1. `first_packet`: the amortized cost of a first packet through the real tc
   program (bpf/tc.c, BPF_PROG_TEST_RUN as bench/nat_bench.py runs it) on an
   endpoint whose ingress policy has 1, 100, 1,000 or 10,000 rules (each a
   distinct source /32 and a port, the allowing rule last), one whose rule
   names a set of 10,000 members, and the same endpoint without policy.
2. `connect_latency`: median TCP connect latency, pod to pod, with our policy
   at 1 / 1,000 / 10,000 rules and with Calico-iptables-shaped chains (N
   rules that do not match before the one that allows) at the same N, every
   world up at once and sampled interleaved.
   `node_path` (`--path-only`): the policy step as a user's first packet
   pays it, through the first hop's tc ingress program and then the
   destination's tc egress program, beside the same step on tc egress alone,
   for this tree and candidate conntrack layouts (and with `--baseline REV`,
   commit REV's datapath beside them).
3. `plan_apply`: 1,000 policies over 200 endpoints: cold apply, no-op plan,
   and a one-shot `--apply` of one changed policy (time to enforced);
   `--plan-only --baseline REV` runs commit REV's code beside this tree's on
   a second node, alternating.
"""

from __future__ import annotations

import random
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench.common import RECONCILE, cli_env, received_ctx, report
from reconciler.compile.policy import Program, compile_chain
from reconciler.compile.policy_model import Alt, Chain, Rule, TierChain
from reconciler.compile.policy_objects import endpoint_entry, program_entries
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import policy_types as pl
from reconciler.datapath.maps.codecs import managed_interface
from reconciler.datapath.maps.iface_types import IF_POLICY, IFSTATE
from reconciler.kernel import bpf as bpfsys

RULES = (1, 100, 1_000, 10_000)
SET_MEMBERS = 10_000
PORT = 8080
CLIENT_IP = IPv4Address("10.65.0.10")  # the peer the allowing rule names
SERVER_IP = IPv4Address("10.65.0.20")
OTHER_NET = IPv4Address("10.80.0.0")  # the sources of the rules that do not match
IF_MANAGED = 1  # bpf/lib/iface_types.h RCL_IF_WORKLOAD
TEST_RUN_IFINDEX = 1  # BPF_PROG_TEST_RUN without a ctx runs on the loopback device
AMORTIZED_REPEAT = 10_000
TC_ACT_UNSPEC, TC_ACT_SHOT = 0xFFFFFFFF, 2  # as BPF_PROG_TEST_RUN reports them (u32)


# The CLI runs this tree's code (an editable install may point elsewhere).
TREE = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def other_source(i: int) -> IPv4Address:
    return OTHER_NET + 1 + i


# ---------------------------------------------------------------- part 1: first packet


def rules_chain(n: int) -> Chain:
    """One tier, one policy of n ingress rules: n - 1 that allow TCP to PORT from
    a source /32 this flow does not come from, then the one it does."""
    sources = [other_source(i) for i in range(n - 1)] + [CLIENT_IP]
    rules = tuple(
        Rule(
            f"policy/bench/rules ingress rule {i + 1}",
            "Allow",
            (
                Alt(
                    include=(frozenset({(int(ip), 32)}),),
                    protos=frozenset({6}),
                    dports=((PORT, PORT),),
                ),
            ),
        )
        for i, ip in enumerate(sources)
    )
    return Chain((TierChain("default", "Deny", rules, ("policy/bench/rules",)),), ())


def set_chain(members: int) -> Chain:
    """One rule allowing TCP to PORT from a set of `members` /32s (the flow's
    source the last of them), as a GlobalNetworkSet named by a selector resolves."""
    nets = frozenset({(int(other_source(i)), 32) for i in range(members - 1)}) | {
        (int(CLIENT_IP), 32)
    }
    alt = Alt(include=(nets,), protos=frozenset({6}), dports=((PORT, PORT),))
    rule = Rule("policy/bench/set ingress rule 1", "Allow", (alt,))
    return Chain((TierChain("default", "Deny", (rule,), ("policy/bench/set",)),), ())


def deny_chain() -> Chain:
    """A policy that allows nothing this flow matches: every packet is judged and dropped."""
    alt = Alt(include=(frozenset({(int(other_source(0)), 32)}),), protos=frozenset({6}))
    rule = Rule("policy/bench/deny ingress rule 1", "Allow", (alt,))
    return Chain((TierChain("default", "Deny", (rule,), ("policy/bench/deny",)),), ())


def write_program(fds: dict[str, int], program: Program) -> int:
    """Write a compiled program's entries as apply would; returns how many."""
    by_map: dict[str, list[tuple[bytes, bytes | list[bytes]]]] = {}
    for name, text, attrs, _info in program_entries(program):
        key, value = entries.encode(name, text, attrs)
        by_map.setdefault(name, []).append((key, value))
    for name, items in by_map.items():
        bpfsys.map_update_many(fds[name], items)
    return sum(len(v) for v in by_map.values())


# Every run a new flow to the endpoint: a fixed source (the peer the policy
# judges) and destination port; a fresh source port per run, the run's CPU
# and the high bits of its counter in the destination's low bytes, so no two
# runs share a conntrack key. Tail-calls the program under test.
PRELUDE = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
BPF_PROG_ARRAY(pol_prelude_next, 1);
BPF_PERCPU_ARRAY(pol_prelude_seq, u64, 1);
int pol_prelude(struct __sk_buff *skb)
{
	u32 zero = 0;
	u64 *seq = pol_prelude_seq.lookup(&zero);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (!seq || data + ETH_HLEN + sizeof(struct iphdr) + 4 > end)
		return TC_ACT_SHOT;
	struct iphdr *ip = data + ETH_HLEN;
	u16 *ports = data + ETH_HLEN + sizeof(struct iphdr);
	u64 n = ++*seq;
	u32 dst = __builtin_bswap32(ip->daddr) & 0xffff0000;
	dst |= ((u32)(n >> 16) & 0xff) << 8 | (bpf_get_smp_processor_id() & 0xff);
	ip->daddr = __builtin_bswap32(dst);
	ports[0] = __builtin_bswap16((u16)n);
	pol_prelude_next.call(skb, 0);
	return TC_ACT_SHOT; /* the tail call failed */
}
int pol_prelude_empty(struct __sk_buff *skb) { return TC_ACT_UNSPEC; }
"""


class Prelude:
    def __init__(self) -> None:
        from bcc import BPF

        self.bpf = BPF(text=PRELUDE.encode())
        self.fd = self.bpf.load_func(b"pol_prelude", BPF.SCHED_CLS).fd
        self.empty = self.bpf.load_func(b"pol_prelude_empty", BPF.SCHED_CLS).fd
        self.next = self.bpf[b"pol_prelude_next"].map_fd

    def run(self, target: int, repeat: int) -> bpfsys.TestRunResult:
        bpfsys.map_update(self.next, struct.pack("=I", 0), struct.pack("=I", target))
        from bench.nat_bench import tcp_syn

        frame = tcp_syn(CLIENT_IP, SERVER_IP, 10_000, PORT)
        # received on an interface, as a pod's packet is: the node's own would be exempt
        return bpfsys.prog_test_run(self.fd, frame, repeat, ctx=received_ctx(TEST_RUN_IFINDEX))

    def close(self) -> None:
        self.bpf.cleanup()


class PolicyTc:
    """bpf/tc.c loaded against a private bpffs dir (bench/nat_bench.py's
    TcProgram), its tc egress program (the pod's ingress policy) and the
    policy maps opened. Test runs use slot 0 (they carry no classid)."""

    def __init__(self, source: str | None = None) -> None:
        from bcc import BPF

        from bench.nat_bench import TcProgram

        self.tc = TcProgram(source)
        try:
            self.egress = self.tc.bpf.load_func(b"rcl_tc_egress", BPF.SCHED_CLS).fd
            for name in (pl.MAP_EP, pl.MAP_EXACT, pl.MAP_LPM, pl.MAP_VERDICT):
                self.tc.fds[name] = bpfsys.obj_get(f"{self.tc.root}/maps/{name}")
        except BaseException:
            self.tc.close()
            raise
        self.fds = self.tc.fds

    def flags(self, policy: bool) -> None:
        flags = IF_MANAGED | (IF_POLICY if policy else 0)
        for name, key, attrs in managed_interface(TEST_RUN_IFINDEX, flags=flags):
            bpfsys.map_update(self.fds[name], *entries.encode(name, key, attrs))

    def endpoint(self, prog_id: int) -> None:
        name, key, attrs = endpoint_entry("bench", TEST_RUN_IFINDEX, 0, prog_id, prog_id)
        bpfsys.map_update(self.fds[name], *entries.encode(name, key, attrs))

    def dropped(self) -> int:
        raw = bpfsys.map_lookup(self.fds["rcl_ifstate"], struct.pack("=I", 0))
        values = raw if isinstance(raw, list) else [raw]
        return sum(IFSTATE.unpack(v[: IFSTATE.size])[6] for v in values if v)

    def close(self) -> None:
        self.tc.close()


# The node path of a first packet in one test run: the first hop's tc
# ingress program (here a pod's veth without egress policy: service NAT's
# conntrack lookups of a new flow), then, by tail call, the destination pod's
# tc egress program (its ingress policy). Both hops run on the test run's
# device: the first hop's interface is slot 0, the destination's slot 1.
PATH_SOURCE_SLOT, PATH_DEST_SLOT = 0, 1
PATH_WRAPPER = r"""
BPF_PROG_ARRAY(rcl_bench_next, 1);
int rcl_bench_path(struct __sk_buff *skb)
{
	skb->tc_classid = 0;
	int rc = rcl_ingress(skb, 0);
	if (rc != TC_ACT_UNSPEC)
		return rc;
	skb->tc_classid = 1;
	rcl_bench_next.call(skb, 0);
	return TC_ACT_SHOT; /* the tail call failed */
}
"""


class NodePath:
    """bpf/tc.c (or `source`) with the node-path wrapper appended: the first
    hop (slot 0, managed, no policy) and the destination (slot 1, its policy
    flag switched per variant)."""

    def __init__(self, source: str | None = None) -> None:
        from bcc import BPF

        from reconciler.datapath.loader import BPF_DIR
        from reconciler.datapath.sources import flatten

        text = (source if source is not None else flatten(BPF_DIR / "tc.c")) + PATH_WRAPPER
        self.pol = PolicyTc(text)
        self.fds = self.pol.fds
        try:
            bpf = self.pol.tc.bpf
            self.path = bpf.load_func(b"rcl_bench_path", BPF.SCHED_CLS).fd
            nxt = bpf[b"rcl_bench_next"].map_fd
            bpfsys.map_update(nxt, struct.pack("=I", 0), struct.pack("=I", self.pol.egress))
            self.slot(PATH_SOURCE_SLOT, IF_MANAGED)
        except BaseException:
            self.pol.close()
            raise

    def slot(self, slot: int, flags: int) -> None:
        for name, key, attrs in managed_interface(TEST_RUN_IFINDEX, flags=flags, slot=slot):
            bpfsys.map_update(self.fds[name], *entries.encode(name, key, attrs))

    def destination(self, prog_id: int | None) -> None:
        """The destination's ingress policy: program prog_id, or none."""
        self.slot(PATH_DEST_SLOT, IF_MANAGED | (IF_POLICY if prog_id is not None else 0))
        if prog_id is not None:
            name, key, attrs = endpoint_entry("dst", TEST_RUN_IFINDEX, PATH_DEST_SLOT,
                                              prog_id, prog_id)  # fmt: skip
            bpfsys.map_update(self.fds[name], *entries.encode(name, key, attrs))

    def dropped(self) -> int:
        total = 0
        for slot in (PATH_SOURCE_SLOT, PATH_DEST_SLOT):
            raw = bpfsys.map_lookup(self.fds["rcl_ifstate"], struct.pack("=I", slot))
            values = raw if isinstance(raw, list) else [raw]
            total += sum(IFSTATE.unpack(v[: IFSTATE.size])[6] for v in values if v)
        return total

    def close(self) -> None:
        self.pol.close()


def _timed(prelude: Prelude, target: int, what: str, drops: Callable[[], int]) -> int:
    """One measured run (after a warm-up half as long): ns per first packet.
    Every packet must pass."""
    before = drops()
    prelude.run(target, AMORTIZED_REPEAT // 2)
    result = prelude.run(target, AMORTIZED_REPEAT)
    if result.retval != TC_ACT_UNSPEC or drops() != before:
        raise RuntimeError(f"{what}: a first packet was dropped")
    return result.duration_ns


def node_path(runs: int = 7, sources: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The policy step a user's first packet pays on the node path (first
    hop, then the destination's tc egress), policy on against off, beside the
    same step measured on the tc egress program alone; interleaved run by
    run. `sources`: datapath trees to measure side by side (name -> the
    flattened tc.c, None for this tree's)."""
    sources = sources or {"this tree": None}
    program = compile_chain(rules_chain(RULES[0]))
    top = compile_chain(rules_chain(RULES[-1]))
    deny = compile_chain(deny_chain())
    prelude = Prelude()
    paths: dict[str, NodePath] = {}
    try:
        for tree, text in sources.items():
            paths[tree] = path = NodePath(text)
            for prog in (program, top, deny):
                write_program(path.fds, prog)
            # Sanity: with the deny program every packet reaches the verdict and is dropped.
            path.destination(deny.prog_id)
            before = path.dropped()
            if (
                prelude.run(path.path, 1000).retval != TC_ACT_SHOT
                or path.dropped() - before != 1000
            ):
                raise RuntimeError(f"{tree}: the deny program did not judge every first packet")
        variants = {
            "node path, no policy": (None, "path"),
            f"node path, {RULES[0]} rule": (program.prog_id, "path"),
            f"node path, {RULES[-1]:,} rules": (top.prog_id, "path"),
            "tc egress alone, no policy": (None, "egress"),
            f"tc egress alone, {RULES[0]} rule": (program.prog_id, "egress"),
        }
        times: dict[tuple[str, str], list[int]] = {
            (tree, v): [] for tree in paths for v in variants
        }
        order = [(tree, v) for tree in paths for v in variants]
        for r in range(runs):
            # a new order each round: no tree or variant always follows the
            # same one (what ran before leaves the cache and its table in a
            # state of its own)
            random.Random(r).shuffle(order)
            for tree, v in order:
                path, (prog_id, where) = paths[tree], variants[v]
                path.destination(prog_id)
                if where == "egress":  # the destination's slot as the test run names it
                    path.slot(
                        PATH_SOURCE_SLOT, IF_MANAGED | (IF_POLICY if prog_id is not None else 0)
                    )
                    if prog_id is not None:
                        path.pol.endpoint(prog_id)
                    target = path.pol.egress
                else:
                    path.slot(PATH_SOURCE_SLOT, IF_MANAGED)
                    target = path.path
                times[(tree, v)].append(_timed(prelude, target, f"{tree}: {v}", path.dropped))
    finally:
        for path in paths.values():
            path.close()
        prelude.close()
    med = {k: float(statistics.median(t)) for k, t in times.items()}

    def step(tree: str, on: str, off: str) -> str:
        """Paired by round; then min(on) - min(off): where load only adds
        time, the fastest round of each is the closest to its own cost."""
        floor = min(times[(tree, on)]) - min(times[(tree, off)])
        return f"{paired(times[(tree, on)], times[(tree, off)])}; of the minimums {floor}"

    rows: list[tuple[str, Any, str]] = [
        (
            f"rounds (median; repeat={AMORTIZED_REPEAT:,}, every run a new flow)",
            runs,
            "trees and variants interleaved, shuffled each round",
        )
    ]
    one, many = f"{RULES[0]} rule", f"{RULES[-1]:,} rules"
    for tree in paths:
        for v in variants:
            rows.append((f"{tree}: first packet, {v}: ns (gross, median | min)",
                         f"{med[(tree, v)]:.0f} | {min(times[(tree, v)])}", ""))  # fmt: skip
        rows += [
            (f"{tree}: policy step on the node path ({one} - no policy): ns",
             step(tree, f"node path, {one}", "node path, no policy"), "target < 150 ns"),
            (f"{tree}: policy step on the node path ({many} - no policy): ns",
             step(tree, f"node path, {many}", "node path, no policy"), ""),
            (f"{tree}: policy step, tc egress alone ({one} - no policy): ns",
             step(tree, f"tc egress alone, {one}", "tc egress alone, no policy"),
             "the isolated figure"),
        ]  # fmt: skip
    trees, v0 = list(paths), "node path, no policy"
    for tree in trees[1:]:
        rows.append((f"{tree} - {trees[0]}: first packet, node path, no policy: ns",
                     paired(times[(tree, v0)], times[(trees[0], v0)]),
                     "a cost moved into (+) or out of (-) the path without policy"))  # fmt: skip
    return report("policy: first packet on the node path", rows)


def paired(on: list[int], off: list[int]) -> str:
    """The median over rounds of (on - off) measured in the same round, and
    the range: drift between rounds cancels out of each pair."""
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    return f"{statistics.median(diffs):.0f} (range {min(diffs)} to {max(diffs)})"


def first_packet(runs: int = 7) -> dict[str, Any]:
    """Part 1: every variant in one program's maps, switched by the endpoint's
    entry (or its interface's policy flag), interleaved run by run."""
    chains: dict[str, Chain] = {f"{n:,} rules": rules_chain(n) for n in RULES}
    chains[f"set of {SET_MEMBERS:,}"] = set_chain(SET_MEMBERS)
    chains["deny"] = deny_chain()
    prelude = Prelude()
    tc = PolicyTc()
    try:
        compiled: dict[str, tuple[Program, float, int]] = {}
        for name, chain in chains.items():
            start = time.perf_counter()
            program = compile_chain(chain)
            seconds = time.perf_counter() - start
            compiled[name] = (program, seconds, write_program(tc.fds, program))
        # Sanity: the deny program drops every run (each is judged), the others pass.
        tc.flags(True)
        tc.endpoint(compiled["deny"][0].prog_id)
        before = tc.dropped()
        if prelude.run(tc.egress, 1000).retval != TC_ACT_SHOT or tc.dropped() - before != 1000:
            raise RuntimeError("the deny program did not judge and drop every run")
        variants = ["no policy", *(n for n in chains if n != "deny")]
        times: dict[str, list[int]] = {v: [] for v in variants}
        anchor: list[int] = []
        for _ in range(runs):
            for v in variants:
                tc.flags(v != "no policy")
                if v != "no policy":
                    tc.endpoint(compiled[v][0].prog_id)
                times[v].append(_timed(prelude, tc.egress, v, tc.dropped))
            anchor.append(prelude.run(prelude.empty, AMORTIZED_REPEAT).duration_ns)
    finally:
        tc.close()
        prelude.close()
    floor = float(statistics.median(anchor))
    med = {v: float(statistics.median(t)) for v, t in times.items()}
    net = {v: m - floor for v, m in med.items()}
    one, top = f"{RULES[0]:,} rules", f"{RULES[-1]:,} rules"
    rows: list[tuple[str, Any, str]] = [
        (
            f"runs per variant (median; repeat={AMORTIZED_REPEAT:,}, every run a new flow)",
            runs,
            "variants interleaved, one program, one set of maps",
        )
    ]
    for v in variants:
        extra = ""
        if v in compiled:
            program, seconds, count = compiled[v]
            extra = (
                f"{len(program.addr_classes):,} address classes, {count:,} entries, "
                f"compiled in {seconds:.3f} s"
            )
        rows.append((f"first packet, {v}: ns (gross | net of prelude)",
                     f"{med[v]:.0f} | {net[v]:.0f}", extra))  # fmt: skip
    rows += [
        ("anchor: the prelude tail-calling an empty program: ns", floor, "subtracted in net"),
        (
            f"ratio first packet {top} / {one}: net | gross",
            f"{net[top] / net[one]:.3f} | {med[top] / med[one]:.3f}",
            "target <= 1.2",
        ),
        (
            f"ratio first packet set of {SET_MEMBERS:,} / {one}: net | gross",
            f"{net[f'set of {SET_MEMBERS:,}'] / net[one]:.3f} | "
            f"{med[f'set of {SET_MEMBERS:,}'] / med[one]:.3f}",
            "",
        ),
        (
            f"policy step added to the first packet ({one} - no policy): ns",
            med[one] - med["no policy"],
            "target < 150 ns",
        ),
        (
            f"policy step added to the first packet ({top} - no policy): ns",
            med[top] - med["no policy"],
            "",
        ),
    ]
    return report("policy tc program: first packet", rows)


# ---------------------------------------------------------------- part 2: connect latency

LATENCY_RULES = (1, 1_000, 10_000)


def _pods() -> tuple[Any, Any]:
    from sandbox.netns import Pod

    return Pod("cli", str(CLIENT_IP)), Pod("srv", str(SERVER_IP))


FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {bpfEnabled: true, bpfDataIfacePattern: "^eth"}
"""
WEP = """\
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {name}, namespace: bench, labels: {{app: {name}}}}}
spec:
  node: node-1
  interfaceName: cali-{name}
  ipNetworks: ["{ip}/32"]
  profiles: [kns.bench]
"""
PROFILE = """\
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.bench}
spec: {ingress: [{action: Allow}], egress: [{action: Allow}]}
"""


POLICY_RULES_MAX = 1_000  # rules per policy (the schema allows 1,024)


def policy_yaml(rules: int) -> str:
    """The server's ingress policies, in order, 1,000 rules each: rules - 1 that
    allow TCP to PORT from other sources, then the one that allows the client."""
    sources = [other_source(i) for i in range(rules - 1)] + [CLIENT_IP]
    docs = []
    for k in range(0, rules, POLICY_RULES_MAX):
        lines = [
            "---",
            "apiVersion: projectcalico.org/v3",
            "kind: NetworkPolicy",
            f"metadata: {{name: rules-{k // POLICY_RULES_MAX:02d}, namespace: bench}}",
            "spec:",
            f"  order: {k // POLICY_RULES_MAX}",
            '  selector: app == "srv"',
            "  types: [Ingress]",
            "  ingress:",
        ]
        lines += [
            f"  - {{action: Allow, protocol: TCP, source: {{nets: [{ip}/32]}}, "
            f"destination: {{ports: [{PORT}]}}}}"
            for ip in sources[k : k + POLICY_RULES_MAX]
        ]
        docs.append("\n".join(lines) + "\n")
    return "".join(docs)


def iptables_policy(rules: int, client: Any, server: Any) -> str:
    """`iptables-restore` input for the filter table, shaped as Calico's iptables
    dataplane renders the same policy: FORWARD -> cali-FORWARD -> the to-workload
    dispatch -> the endpoint's chain (established and related accepted first,
    invalid dropped, then the policy chain), where an Allow rule is a MARK rule
    and a RETURN on the mark; the endpoint's chain accepts marked packets and
    drops the rest. The client's chains allow (its profile allows all); a
    test run checks that the allowing rule's counter moves."""
    tw, fw = f"cali-tw-{server.host_iface}", f"cali-fw-{client.host_iface}"
    twc = f"cali-tw-{client.host_iface}"
    chains = ["cali-FORWARD", "cali-to-wl-dispatch", "cali-from-wl-dispatch", tw, twc, fw,
              "cali-pi-bench-rules"]  # fmt: skip
    body = [
        "-A FORWARD -j cali-FORWARD",
        "-A cali-FORWARD -i cali+ -j cali-from-wl-dispatch",
        "-A cali-FORWARD -o cali+ -j cali-to-wl-dispatch",
        f"-A cali-from-wl-dispatch -i {client.host_iface} -g {fw}",
        f"-A cali-to-wl-dispatch -o {server.host_iface} -g {tw}",
        f"-A cali-to-wl-dispatch -o {client.host_iface} -g {twc}",
        "-A cali-FORWARD -m mark --mark 0x10000/0x10000 -j ACCEPT",
    ]
    # From the client: allowed by its profile, marked, and on to the to-workload
    # dispatch (an ACCEPT here would end the FORWARD hook before it).
    body += [
        f"-A {fw} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {fw} -m conntrack --ctstate INVALID -j DROP",
        f"-A {fw} -j MARK --set-xmark 0x10000/0x10000",
        f"-A {fw} -j RETURN",
        f"-A {twc} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {twc} -m conntrack --ctstate INVALID -j DROP",
        f"-A {twc} -j ACCEPT",
    ]
    body += [
        f"-A {tw} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A {tw} -m conntrack --ctstate INVALID -j DROP",
        f"-A {tw} -j MARK --set-xmark 0x0/0x10000",
        f"-A {tw} -j cali-pi-bench-rules",
        f"-A {tw} -m mark --mark 0x10000/0x10000 -j ACCEPT",
        f"-A {tw} -j DROP",
    ]
    sources = [other_source(i) for i in range(rules - 1)] + [CLIENT_IP]
    for ip in sources:
        body += [
            f"-A cali-pi-bench-rules -p tcp -s {ip}/32 -m multiport --dports {PORT}"
            " -j MARK --set-xmark 0x10000/0x10000",
            "-A cali-pi-bench-rules -m mark --mark 0x10000/0x10000 -j RETURN",
        ]
    return "\n".join(["*filter", *(f":{c} - [0:0]" for c in chains), *body, "COMMIT", ""])


def _start_server(sb: Any, pod: Any) -> subprocess.Popen[str]:
    from bench.nat_bench import SERVER

    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.pod_ns(pod)}", sys.executable, "-c", SERVER, str(PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("server did not start")
    return proc


def _allow_rule_packets(sb: Any) -> int:
    """Packets the iptables world's last (allowing) MARK rule matched."""
    out = subprocess.run(
        ["nsenter", f"--net=/run/netns/{sb.node}", "iptables", "-L", "cali-pi-bench-rules",
         "-v", "-n", "-x"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    marks = [line.split() for line in out.splitlines() if "MARK" in line]
    return int(marks[-1][0])


def connect_latency(samples: int = 400) -> dict[str, Any]:
    """Part 2: a sandbox node per world and N, all up at once, sampled interleaved."""
    from bench.nat_bench import connect_probe
    from sandbox.netns import Sandbox

    client, server = _pods()
    tag = uuid.uuid4().hex[:4]
    boxes = {
        (world, n): Sandbox(prefix=f"rclp{world[:3]}{n}{tag}")
        for n in LATENCY_RULES
        for world in ("iptables", "ours")
    }
    servers: list[subprocess.Popen[str]] = []
    rows: list[tuple[str, Any, str]] = []
    with tempfile.TemporaryDirectory(prefix="rclbpol-") as tmp:
        try:
            for (world, n), sb in boxes.items():
                sb.up(pods=[client, server])
                servers.append(_start_server(sb, server))
                if world == "iptables":
                    subprocess.run(
                        ["nsenter", f"--net=/run/netns/{sb.node}", "iptables-restore"],
                        input=iptables_policy(n, client, server),
                        text=True,
                        check=True,
                        capture_output=True,
                    )
                    continue
                config = Path(tmp) / f"config-{n}"
                config.mkdir()
                (config / "felix.yaml").write_text(FELIX)
                (config / "weps.yaml").write_text(
                    PROFILE + "".join(WEP.format(name=p.name, ip=p.ip) for p in (client, server))
                )
                (config / "policy.yaml").write_text(policy_yaml(n))
                args = ["--config", str(config), *sb.target_args(f"{tmp}/state-{n}")]
                start = time.perf_counter()
                subprocess.run([RECONCILE, "--apply", "--no-cache", *args], check=True,
                               capture_output=True, env=cli_env(TREE))  # fmt: skip
                rows.append((f"ours: cold --apply with {n:,} rules: s",
                             time.perf_counter() - start, ""))  # fmt: skip
            target = {"pod": (str(server.ip), PORT)}
            probe = {
                f"{world}@{n}": (f"/run/netns/{sb.pod_ns(client)}", target)
                for (world, n), sb in boxes.items()
            }
            raw = connect_probe(probe, samples)
            for (world, n), sb in boxes.items():
                if world == "iptables" and _allow_rule_packets(sb) < samples:
                    raise RuntimeError(f"iptables@{n}: the connects did not reach the allow rule")
        finally:
            for proc in servers:
                proc.kill()
                proc.wait()
            for sb in boxes.values():
                sb.down()
    med = {k: statistics.median(v["pod"]) * 1e6 for k, v in raw.items()}
    lo, hi = LATENCY_RULES[0], LATENCY_RULES[-1]
    rows.append(("connect samples per world (median)", samples, "worlds interleaved"))
    for n in LATENCY_RULES:
        rows.append(
            (
                f"{n:,} rules: connect us iptables | ours",
                f"{med[f'iptables@{n}']:8.1f} | {med[f'ours@{n}']:8.1f}",
                f"vs {lo} rule: iptables {med[f'iptables@{n}'] - med[f'iptables@{lo}']:+.1f} us, "
                f"ours {med[f'ours@{n}'] - med[f'ours@{lo}']:+.1f} us",
            )
        )
    rows.append(
        (
            f"ours: connect at {hi:,} rules - at {lo} rule: us",
            med[f"ours@{hi}"] - med[f"ours@{lo}"],
            "target within 5 us",
        )
    )
    return report("policy connect latency", rows)


# ---------------------------------------------------------------- part 3: plan and apply

APPS = 50  # distinct label values: 4 endpoints each, 20 policies select each endpoint


def scale_wep(i: int) -> str:
    return (
        "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\n"
        f"metadata: {{name: pod-{i}, namespace: bench, labels: {{app: app-{i % APPS}, "
        f"role: r{i % 7}}}}}\n"
        f"spec: {{node: node-1, interfaceName: cali{i:04d}, "
        f"ipNetworks: [10.66.{i // 256}.{i % 256}/32], profiles: [kns.bench],\n"
        "  ports: [{name: http, protocol: TCP, port: 8080}]}\n"
    )


def scale_policy(i: int, port: int) -> str:
    """Policy i: selects one app's endpoints; ingress from the next app's on a
    port of its own and from a net on the named port, egress to a set."""
    return textwrap.dedent(f"""\
        ---
        apiVersion: projectcalico.org/v3
        kind: NetworkPolicy
        metadata: {{name: pol-{i:04d}, namespace: bench}}
        spec:
          order: {i}
          selector: app == "app-{i % APPS}"
          types: [Ingress, Egress]
          ingress:
          - action: Allow
            protocol: TCP
            source: {{selector: app == "app-{(i + 1) % APPS}"}}
            destination: {{ports: [{port}]}}
          - action: Allow
            protocol: TCP
            source: {{nets: [10.{100 + i // 256}.{i % 256}.0/24]}}
            destination: {{ports: [http]}}
          egress:
          - action: Allow
            destination: {{selector: role == "r{i % 7}"}}
        """)


def plan_apply(
    count: int = 200, policies: int = 1_000, edits: int = 5, baseline: str | None = None
) -> dict[str, Any]:
    """Part 3: 1,000 policies over 200 endpoints in a sandbox node. With
    `baseline` (a commit), a second node runs that commit's code (unpacked
    as bench/layout_bench.py does) on the same configuration and every
    figure alternates the two, so both see the same machine."""
    import random

    from bench.layout_bench import REPO, launcher, unpack
    from bench.plan_bench import build_links
    from sandbox.netns import Sandbox

    rows: list[tuple[str, Any, str]] = []
    tag = uuid.uuid4().hex[:4]
    with tempfile.TemporaryDirectory(prefix="rclbpol-") as tmp:
        sides = {"ours": launcher(REPO)}
        if baseline:
            sides[baseline] = unpack(baseline, Path(tmp) / "baseline")
        nodes = {who: Sandbox(prefix=f"rclbpol{n}{tag}") for n, who in enumerate(sides)}
        try:
            ports = {i: 9000 + i % 100 for i in range(policies)}
            configs, runs = {}, {}
            for who, sb in nodes.items():
                sb.up()
                build_links(sb, count)
                config = configs[who] = Path(tmp) / f"config-{len(configs)}"
                config.mkdir()
                (config / "felix.yaml").write_text(FELIX)
                weps = PROFILE + "".join(scale_wep(i) for i in range(count))
                (config / "weps.yaml").write_text(weps)
                for i in range(policies):
                    (config / f"pol-{i:04d}.yaml").write_text(scale_policy(i, ports[i]))
                env = {"XDG_CACHE_HOME": f"{tmp}/cache-{len(runs)}"}
                args = ["--config", str(config), *sb.target_args(f"{tmp}/state-{len(runs)}")]
                runs[who] = (sides[who], args, env)

            def timed(who: str, *extra: str, ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
                cmd, args, env = runs[who]
                start = time.perf_counter()
                proc = subprocess.run([*cmd, *extra, *args], capture_output=True, text=True,
                                      env=cli_env(env))  # fmt: skip
                seconds = time.perf_counter() - start
                if proc.returncode not in ok:
                    raise RuntimeError(f"{who} {extra}: exit {proc.returncode}: "
                                       f"{proc.stderr[-2000:]}")  # fmt: skip
                return seconds, proc.stdout

            def each(*extra: str, ok: tuple[int, ...] = (0,)) -> dict[str, tuple[float, str]]:
                return {who: timed(who, *extra, ok=ok) for who in sides}

            def edit(i: int) -> None:
                for config in configs.values():
                    (config / f"pol-{i:04d}.yaml").write_text(scale_policy(i, ports[i]))

            times: dict[str, dict[str, list[float]]] = {}

            def note(figure: str, got: dict[str, tuple[float, str]]) -> str:
                for who, (seconds, _) in got.items():
                    times.setdefault(figure, {}).setdefault(who, []).append(seconds)
                return got["ours"][1]

            out = note("cold --apply (no cache): s", each("--apply", "--no-cache"))
            cold_changes = out.strip().splitlines()[-2][:60]
            each("--apply")  # fills the caches, as a node following its repository has
            for _ in range(3):
                note("no-op --plan (with cache): s, median of 3", each("--plan"))
            for _ in range(3):
                note("no-op --apply (with cache): s, median of 3", each("--apply"))
            changes = []
            for n, i in enumerate(random.Random(3).sample(range(policies), 2 * edits)):
                ports[i] += 1000
                edit(i)
                if n < edits:
                    note(f"one changed policy: --plan: s, median of {edits}",
                         each("--plan", ok=(2,)))  # fmt: skip
                    ports[i] -= 1000
                    edit(i)
                    continue
                out = note(f"one changed policy: --apply (time to enforced): s, median of {edits}",
                           each("--apply"))  # fmt: skip
                changes.append(out.strip().splitlines()[-2])
            for figure, by in times.items():
                note_text = cold_changes if figure.startswith("cold") else ""
                ours = by["ours"]
                if len(ours) > 1:
                    note_text = f"range {min(ours):.3f}-{max(ours):.3f}"
                if baseline:
                    base = by[baseline]
                    note_text += f"; {baseline}: {statistics.median(base):.3f} s"
                    if len(base) > 1:
                        note_text += f" (range {min(base):.3f}-{max(base):.3f})"
                if "time to enforced" in figure:
                    note_text += "; target < 0.5 s"
                rows.append((figure, statistics.median(ours), note_text))
            rows.append(("one changed policy: what the apply changed", changes[-1][:70], ""))
        finally:
            for sb in nodes.values():
                sb.down()
    return report(f"policy plan: {policies:,} policies over {count} endpoints", rows)


# Ablations of the policy step (`--ablate`): each replaces one piece of the
# flattened source and must find it there.
# "pair in one bucket": policy keys (pad[0] set) take their bucket from a
# hash that swapping the two ends leaves alike, so a flow's forward and
# reverse entries share a bucket (tag and key stay exact): the idea of one
# bucket for both directions, measured before it is built.
_PAIR_BUCKET = (
    "\tat->h32 = (__u32)h;\n\tat->tag = (__u8)(h >> 56);\n",
    "\tat->h32 = (__u32)h;\n\tat->tag = (__u8)(h >> 56);\n"
    "\tif ((b >> 40) & 0xff) {\n"
    "\t\t__u64 s = ((a ^ (a >> 32)) & 0xffffffffULL) |\n"
    "\t\t\t(((b ^ (b >> 16)) & 0xffffULL) << 32) | (((b >> 32) & 0xff) << 48);\n"
    "\t\tat->h32 = (__u32)rcl_fmix64(s ^ RCL_CT_SEED);\n"
    "\t}\n",
)
# The verdict's parts, each variant the tc egress program with no conntrack
# (no lookup, nothing recorded): the packet parsed and its endpoint found,
# and no verdict asked; the address class asked (one hash lookup) and the
# packet allowed on it; and the whole verdict with its three kernel hash
# lookups replaced by reads of buckets of our own in an array map (the
# conntrack table's, by a hash of the same keys; timing only: the packet is
# allowed whatever it reads), what tables of our own would cost.
_NO_CT_LOOKUP = ("\tif (!f->trackable)\n\t\treturn RCL_POL_NEW;", "\treturn RCL_POL_NEW;")
_NO_CT_RECORD = ("\tif (!f->trackable)\n\t\treturn 1;\n\tif (!*now)", "\treturn 1;\n\tif (!*now)")
_NO_VERDICT = (
    "__u32 rule = RCL_POL_RULE_FORCED;\n\tif (f->trackable && !rcl_pol_echo_request(f)",
    "__u32 rule = RCL_POL_RULE_FORCED;\n\treturn 1;\n"
    "\tif (f->trackable && !rcl_pol_echo_request(f)",
)
_ADDRESS_CLASS_ONLY = (
    "\t__u32 aclass = rcl_pol_class(prog, RCL_POL_K_ADDR, 0, 0, peer, &aflags);\n",
    "\t__u32 aclass = rcl_pol_class(prog, RCL_POL_K_ADDR, 0, 0, peer, &aflags);\n"
    "\t*rule = aclass;\n\treturn RCL_POL_ALLOW;\n",
)
_ARRAY_VERDICT = (
    "static __always_inline int rcl_pol_decide(__u32 prog, __u32 peer, __u8 proto, __u16 dval,\n"
    "\t\t\t\t\t  __u16 sval, __u32 *rule)\n{",
    "static __always_inline __u32 rcl_bench_bucket_read(__u64 a, __u64 b)\n{\n"
    "\t__u64 h = rcl_fmix64(rcl_fmix64(a ^ RCL_CT_SEED) ^ b);\n"
    "\t__u32 idx = rcl_ct_scale((__u32)h, RCL_CT_BUCKETS);\n"
    "\tstruct rcl_ct_bucket *bk = rcl_ct.lookup(&idx);\n"
    "\tif (!bk)\n\t\treturn 0;\n"
    "\t__u64 *w = (__u64 *)bk;\n"
    "#pragma unroll\n"
    "\tfor (int i = 0; i < 4; i++)\n\t\tif (w[2 * i] == a)\n\t\t\treturn (__u32)w[2 * i + 1];\n"
    "\treturn (__u32)w[1];\n}\n"
    "static __always_inline int rcl_pol_decide(__u32 prog, __u32 peer, __u8 proto, __u16 dval,\n"
    "\t\t\t\t\t  __u16 sval, __u32 *rule)\n{\n"
    "\t__u32 ac = rcl_bench_bucket_read((__u64)prog << 32 | peer, 0);\n"
    "\t__u32 pc = rcl_bench_bucket_read((__u64)prog << 32 | proto << 16 | dval, 1);\n"
    "\t*rule = rcl_bench_bucket_read((__u64)prog << 32 | ac, pc);\n"
    "\treturn RCL_POL_ALLOW;\n}\n"
    "static __always_inline int rcl_pol_decide_kernel_maps(__u32 prog, __u32 peer, __u8 proto,\n"
    "\t\t\t\t\t\t      __u16 dval, __u16 sval, __u32 *rule)\n{",
)
ABLATIONS = {
    "full": [],
    "pair in one bucket": [_PAIR_BUCKET],
    "no conntrack find before the claims": [
        ("if (rcl_ct_find(&f->key, &hit) &&", "if (0 && rcl_ct_find(&f->key, &hit) &&")
    ],
    "verdict only (no conntrack record)": [
        ("\tif (!f->trackable)\n\t\treturn 1;\n\tif (!*now)", "\treturn 1;\n\tif (!*now)")
    ],
    "verdict only, no conntrack lookup": [
        ("\tif (!f->trackable)\n\t\treturn 1;\n\tif (!*now)", "\treturn 1;\n\tif (!*now)"),
        ("\tif (!f->trackable)\n\t\treturn RCL_POL_NEW;", "\treturn RCL_POL_NEW;"),
    ],
    "no conntrack, parse and endpoint only": [_NO_CT_LOOKUP, _NO_VERDICT],
    "no conntrack, address class only": [_NO_CT_LOOKUP, _NO_CT_RECORD, _ADDRESS_CLASS_ONLY],
    "no conntrack, verdict from array buckets (timing only)": [
        _NO_CT_LOOKUP, _NO_CT_RECORD, _ARRAY_VERDICT
    ],
    "verdict from array buckets, conntrack kept (timing only)": [_ARRAY_VERDICT],
}


# Candidates measured on the node path beside this tree (`--path-only`).
# "flow in one bucket": every key's bucket from a hash symmetric in the
# flow's two ends and blind to the key space (tag and key stay exact), so
# the first hop's NAT lookups of a new flow (its forward key, and the reverse
# key it checks for a stale NAT entry) and the policy point's lookup and
# both of its records share one bucket: one cache miss at the first hop, a
# header line already in cache at the policy point.
_FLOW_BUCKET = (
    "\t__u64 h = rcl_fmix64(rcl_fmix64(a ^ RCL_CT_SEED) ^ b);\n\tat->a = a;\n\tat->b = b;\n"
    "\tat->h32 = (__u32)h;\n\tat->tag = (__u8)(h >> 56);\n",
    "\t__u64 proto = (b >> 32) & 0xff;\n"
    "\t__u64 src = (a & 0xffffffffULL) | (b & 0xffffULL) << 32 | proto << 48;\n"
    "\t__u64 dst = (a >> 32) | ((b >> 16) & 0xffffULL) << 32 | proto << 48;\n"
    "\t__u64 ms = rcl_fmix64(src ^ RCL_CT_SEED), md = rcl_fmix64(dst ^ RCL_CT_SEED);\n"
    "\tat->a = a;\n\tat->b = b;\n\tat->h32 = (__u32)(ms + md);\n"
    "\tat->tag = (__u8)((ms - md) >> 56) ^ (__u8)(((b >> 40) & 0xff) * 0x6b);\n",
)
# "policy key in its NAT key's bucket": the bucket from the hash of the key
# with its key space zeroed (the tag from the whole key, as before), so the
# policy point's lookup and records land in the buckets the first hop's NAT
# lookups just read, and NAT keys stay where they are.
_NAT_BUCKET = (
    "\t__u64 h = rcl_fmix64(rcl_fmix64(a ^ RCL_CT_SEED) ^ b);\n\tat->a = a;\n\tat->b = b;\n"
    "\tat->h32 = (__u32)h;\n",
    "\t__u64 inner = rcl_fmix64(a ^ RCL_CT_SEED);\n\t__u64 h = rcl_fmix64(inner ^ b);\n"
    "\tat->a = a;\n\tat->b = b;\n"
    "\tat->h32 = (__u32)rcl_fmix64(inner ^ (b & ~(0xffULL << 40)));\n",
)
# "one entry per flow (timing only)": the reverse entry is not written, as
# a flow kept in one entry under a canonical key would not write it; its
# replies are judged anew, so only its time means anything.
_ONE_ENTRY = [
    ("\tif (rcl_ct_reserve(&ps->key2, *now, &rc))\n\t\treturn 1;", "\tif (0)\n\t\treturn 1;"),
    ("\trcl_ct_fill(&rc, ps->key2.proto, v, *now);\n\tif (fwd_ok) {", "\tif (fwd_ok) {"),
]
PATH_CANDIDATES = {
    "this tree": [],
    "flow in one bucket": [_FLOW_BUCKET],
    "policy key in its NAT key's bucket": [_NAT_BUCKET],
    "one entry per flow (timing only)": _ONE_ENTRY,
    "verdict only (no conntrack record)": ABLATIONS["verdict only (no conntrack record)"],
}


def edited(base: str, name: str, edits: list[tuple[str, str]]) -> str:
    """`base` with each (old, new) replaced; every old must be there."""
    text = base
    for old, new in edits:
        if old not in text:
            raise RuntimeError(f"variant {name!r}: {old!r} is not in the source")
        text = text.replace(old, new)
    return text


def path_sources() -> dict[str, str | None]:
    """This tree's tc.c and the candidates', for node_path."""
    from reconciler.datapath.loader import BPF_DIR
    from reconciler.datapath.sources import flatten

    base = flatten(BPF_DIR / "tc.c")
    return {
        name: edited(base, name, edits) if edits else None
        for name, edits in PATH_CANDIDATES.items()
    }


def baseline_source(rev: str, dest: Path) -> str:
    """Commit rev's tc.c, flattened (its bpf/ unpacked under dest)."""
    from bench.layout_bench import REPO
    from reconciler.datapath.sources import flatten

    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "bpf"],
                             capture_output=True, check=True).stdout  # fmt: skip
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return flatten(dest / "bpf" / "tc.c")


def ablate(runs: int = 7, rules: int = 1) -> dict[str, Any]:
    """The first packet with pieces of the policy step taken out, interleaved."""
    from reconciler.datapath.loader import BPF_DIR
    from reconciler.datapath.sources import flatten

    base = flatten(BPF_DIR / "tc.c")
    program = compile_chain(rules_chain(rules))
    prelude = Prelude()
    progs: dict[str, PolicyTc] = {}
    try:
        for name, edits in ABLATIONS.items():
            progs[name] = tc = PolicyTc(edited(base, name, edits))
            write_program(tc.fds, program)
            tc.endpoint(program.prog_id)
            tc.flags(True)
        progs["no policy"] = progs["full"]
        times: dict[str, list[int]] = {name: [] for name in progs}
        anchor = []
        for _ in range(runs):
            order = list(progs.items())
            random.shuffle(order)  # no variant always runs after the same one
            for name, tc in order:
                tc.flags(name != "no policy")
                prelude.run(tc.egress, AMORTIZED_REPEAT // 2)
                times[name].append(prelude.run(tc.egress, AMORTIZED_REPEAT).duration_ns)
            anchor.append(prelude.run(prelude.empty, AMORTIZED_REPEAT).duration_ns)
    finally:
        for name, tc in progs.items():
            if name != "no policy":
                tc.close()
        prelude.close()
    rows: list[tuple[str, Any, str]] = [
        (f"first packet, {rules:,} rules, {name}: ns", float(statistics.median(t)),
         f"min {min(t)}")  # fmt: skip
        for name, t in times.items()
    ]
    rows.append(("anchor: prelude + empty program: ns", float(statistics.median(anchor)), ""))
    return report("policy ablation: first packet", rows)


def main(quick: bool = False) -> dict[str, Any]:
    if "--plan-only" in sys.argv:
        # `--baseline REV`: the same figures from commit REV's code, alternating
        at = sys.argv.index("--baseline") + 1 if "--baseline" in sys.argv else 0
        return plan_apply(edits=3 if quick else 5, baseline=sys.argv[at] if at else None)
    if "--latency-only" in sys.argv:
        return connect_latency(samples=100 if quick else 400)
    if "--ablate" in sys.argv:
        runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 7
        return ablate(runs=3 if quick else runs)
    if "--path-only" in sys.argv:
        # `--baseline REV`: commit REV's datapath measured beside, interleaved
        sources = path_sources()
        if "--baseline" in sys.argv:
            rev = sys.argv[sys.argv.index("--baseline") + 1]
            with tempfile.TemporaryDirectory(prefix="rclbpol-") as tmp:
                sources = {rev: baseline_source(rev, Path(tmp)), **sources}
        return node_path(runs=5 if quick else 21, sources=sources)
    out = first_packet(runs=3 if quick else 7)
    out |= node_path(runs=5 if quick else 21, sources=path_sources())
    if "--first-only" in sys.argv:
        return out
    out |= connect_latency(samples=100 if quick else 400)
    out |= plan_apply(edits=3 if quick else 5)
    return out


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
