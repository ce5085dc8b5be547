"""Service NAT at scale, ours vs a kube-proxy-shaped iptables baseline.

Three parts, each printing ours and the baseline side by side:

1. `tc_program`: per-packet cost of bpf/tc.c (BPF_PROG_TEST_RUN) at 10, 1,000
   and 10,000 services.
2. `worlds`: two sandbox nodes, one with KUBE-* iptables rules, one converged by
   `reconcile --apply`; rule sync time and TCP connect latency, sample by sample.
3. `scale` (inside `worlds` at the largest scale): cold apply from YAML, warm
   no-op plan, one changed service.
"""

from __future__ import annotations

import ctypes
import json
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench import iptables_world as ipt
from bench import services_gen as gen
from bench.common import RECONCILE, cli_env, report
from reconciler.datapath import conntrack as ct_table
from reconciler.datapath import ct_handover
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import nat_types as nl
from reconciler.datapath.maps.codecs import managed_interface
from reconciler.kernel import bpf as bpfsys
from reconciler.plan.address import Address
from sandbox.nat_stats import read_stat
from sandbox.netns import Pod, Sandbox
from tests.support import conntrack_table
from tests.support import nat_records as nr

SCALES = (10, 1_000, 10_000)
ENDPOINTS = 10
CT_SIZE = 65536  # conntrack entries: every first-packet sample adds two
# Map sizes as FelixConfiguration fields, for reconciler.compile.programs.build_flags.
MAP_CONFIG = {
    "bpfMapSizeIfState": 1000,
    "bpfMapSizeNATFrontend": 65536,
    "bpfMapSizeNATBackend": 262144,
    "bpfMapSizeNATAffinity": 65536,
    "bpfMapSizeConntrack": CT_SIZE,
}
TEST_RUN_IFINDEX = 1  # BPF_PROG_TEST_RUN without a ctx runs on the loopback device
CLIENT_NET = IPv4Address("10.70.0.0")
TCP_SYN = 0x02


# ---------------------------------------------------------------- part 1: tc program


def _csum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_syn(
    src: IPv4Address, dst: IPv4Address, sport: int, dport: int, flags: int = TCP_SYN
) -> bytes:
    """An Ethernet + IPv4 + TCP frame, a SYN unless `flags` say otherwise (the
    L4 checksum is only updated, never checked)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src.packed, dst.packed
    )
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return bytes.fromhex("020000000002020000000001") + b"\x08\x00" + ip + tcp


def nat_entries(count: int, start: int = 0) -> tuple[list[tuple[bytes, bytes]], ...]:
    """rcl_nat_fe and rcl_nat_be items for services [start, count), as the compiler lays
    them out: one frontend (VIP:80/tcp) and ENDPOINTS backends per service."""
    fe, be = [], []
    for i in range(start, count):
        svc_id = i + 1
        fe.append(
            (
                nr.FrontendKey(gen.vip(i), 80, nl.Proto.TCP).encode(),
                nr.Frontend(svc_id, ENDPOINTS, ENDPOINTS).encode(),  # every backend local
            )
        )
        for k in range(ENDPOINTS):
            be.append(
                (
                    nr.BackendKey(svc_id, k).encode(),
                    nr.Backend(gen.endpoint_ip(i, k), gen.TARGET_PORT).encode(),
                )
            )
    return fe, be


class TcProgram:
    """bpf/tc.c compiled by bcc against a private bpffs dir, its maps opened.
    With `conntrack_of`, it uses that program's conntrack table (pinned into
    its own dir too) instead of a new one: a node has one table."""

    def __init__(self, source: str | None = None, conntrack_of: TcProgram | None = None) -> None:
        from bcc import BPF

        from reconciler.compile.programs import build_flags
        from reconciler.datapath.loader import BPF_DIR, kernel_hz
        from reconciler.datapath.sources import flatten

        self.root = f"/sys/fs/bpf/rclbnat-{uuid.uuid4().hex[:8]}"
        bpfsys.ensure_bpffs(f"{self.root}/maps")
        self.bpf = None
        self.fds: dict[str, int] = {}
        try:
            if conntrack_of is not None:  # bcc opens a pinned map that is there
                bpfsys.obj_pin(conntrack_of.fds[nl.MAP_CT], f"{self.root}/maps/{nl.MAP_CT}")
            ct_handover.stage(Path(self.root) / "maps", None)  # bound as rcl_ct_prev
            text = source if source is not None else flatten(BPF_DIR / "tc.c")
            flags = build_flags(self.root, MAP_CONFIG, kernel_hz())
            self.bpf = BPF(text=text.encode(), cflags=[*flags, f"-I{BPF_DIR}"])
            self.prog_fd = self.bpf.load_func(b"rcl_tc_ingress", BPF.SCHED_CLS).fd
            self._fill_jumps(text)
            names = (
                "rcl_ifstate",
                nl.MAP_NAT_FE,
                nl.MAP_NAT_BE,
                nl.MAP_CT,
                nl.MAP_NAT_STATS,
            )
            self.fds = {n: bpfsys.obj_get(f"{self.root}/maps/{n}") for n in names}
            self.manage(1)  # a workload interface
        except BaseException:
            self.close()
            raise

    def _fill_jumps(self, text: str) -> None:
        """The tail calls a masqueraded flow takes, as the loader wires them,
        where the source has them (an older tree's may not)."""
        from bcc import BPF

        from reconciler.datapath.programs import JUMP_TABLES

        table, targets = JUMP_TABLES["tc"]
        jumps = self.bpf[table.encode()]
        if "int rcl_tc_masq(" not in text:
            return
        for index, name in enumerate(targets):
            if name in ("rcl_tc_masq", "rcl_tc_ingress") and index < len(jumps):
                fd = self.bpf.load_func(name.encode(), BPF.SCHED_CLS).fd
                jumps[ctypes.c_int(index)] = ctypes.c_int(fd)

    def manage(self, flags: int) -> None:
        """What the reconciler writes for the test run's interface (slot 0)
        managed with role `flags`: its state and a zeroed counters entry."""
        for name, key, attrs in managed_interface(TEST_RUN_IFINDEX, flags=flags):
            bpfsys.map_update(self.fds[name], *entries.encode(name, key, attrs))

    def close(self) -> None:
        for fd in self.fds.values():
            bpfsys.close(fd)
        self.fds = {}
        if self.bpf is not None:
            self.bpf.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def fill(self, services: int) -> float:
        """Write the NAT maps for `services` services; seconds spent in map writes."""
        fe, be = nat_entries(services)
        start = time.perf_counter()
        bpfsys.map_update_many(self.fds[nl.MAP_NAT_BE], be)
        bpfsys.map_update_many(self.fds[nl.MAP_NAT_FE], fe)
        return time.perf_counter() - start

    def stat(self, which: nl.NatStat) -> int:
        return read_stat(self.fds[nl.MAP_NAT_STATS], which)

    def run(self, frame: bytes, repeat: int = 1) -> bpfsys.TestRunResult:
        return bpfsys.prog_test_run(self.prog_fd, frame, repeat)


ANCHORS = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
struct ct_key { u32 src; u32 dst; u16 sport; u16 dport; u8 proto; u8 pad[3]; };
struct ct_val { u64 words[5]; };
BPF_TABLE("lru_hash", struct ct_key, struct ct_val, anchor_ct, CT_SIZE);
BPF_TABLE("percpu_array", u32, u64, anchor_seq, 1);
int anchor_empty(struct __sk_buff *skb) { return TC_ACT_UNSPEC; }
/* One conntrack-shaped LRU insert with a fresh key per run: what every new
 * flow paid twice (forward and reverse entry) while conntrack was a kernel
 * LRU map (Calico and Cilium keep theirs in kernel hash maps too). */
int anchor_ct_write(struct __sk_buff *skb)
{
	u32 zero = 0;
	u64 *seq = anchor_seq.lookup(&zero);
	if (!seq)
		return TC_ACT_UNSPEC;
	*seq += 1;
	struct ct_key k = {};
	struct ct_val v = {};
	k.src = (u32)*seq;
	k.dst = (u32)(*seq >> 32) ^ bpf_get_smp_processor_id();
	anchor_ct.update(&k, &v);
	return TC_ACT_UNSPEC;
}
"""


class Anchors:
    """The harness's floor (an empty tc program) and the price of one kernel
    LRU-map insert on this kernel, measured beside our program."""

    def __init__(self) -> None:
        from bcc import BPF

        self.bpf = BPF(text=ANCHORS.encode(), cflags=[f"-DCT_SIZE={CT_SIZE}"])
        self.empty = self.bpf.load_func(b"anchor_empty", BPF.SCHED_CLS).fd
        self.ct_write = self.bpf.load_func(b"anchor_ct_write", BPF.SCHED_CLS).fd

    def close(self) -> None:
        self.bpf.cleanup()


# BPF_PROG_TEST_RUN with repeat=N runs one packet N times, and after the first
# run it is no longer a first packet (the program rewrote it). This prelude
# makes every run a new flow: it gives the packet a fresh source (a per-CPU
# counter), points it back at a VIP, and tail-calls the program under test.
# Its own cost is measured with an empty program as the tail-call target.
PRELUDE = r"""
#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
struct prelude_cfg { u32 vip_first; u32 services; u32 fixed; u32 pad; };
BPF_PROG_ARRAY(prelude_next, 1);
BPF_ARRAY(prelude_cfg, struct prelude_cfg, 1);
BPF_PERCPU_ARRAY(prelude_seq, u64, 1);
int prelude(struct __sk_buff *skb)
{
	u32 zero = 0;
	struct prelude_cfg *cfg = prelude_cfg.lookup(&zero);
	u64 *seq = prelude_seq.lookup(&zero);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (!cfg || !seq || !cfg->services || data + ETH_HLEN + sizeof(struct iphdr) + 4 > end)
		return TC_ACT_SHOT;
	struct iphdr *ip = data + ETH_HLEN;
	u16 *ports = data + ETH_HLEN + sizeof(struct iphdr);
	u64 n = ++*seq;
	u32 idx = cfg->fixed ? cfg->fixed - 1 : bpf_get_prandom_u32() % cfg->services;
	/* sources from 10.71.0.1: never one of the sampled flows (10.70.x.x) */
	ip->saddr = __builtin_bswap32(0x0a470001 + (u32)(n >> 15));
	ip->daddr = __builtin_bswap32(cfg->vip_first + idx);
	ports[0] = __builtin_bswap16(10000 + (u16)(n & 0x7fff));
	ports[1] = __builtin_bswap16(80);
	prelude_next.call(skb, 0);
	return TC_ACT_SHOT; /* the tail call failed */
}
int prelude_target_empty(struct __sk_buff *skb) { return TC_ACT_UNSPEC; }
"""
AMORTIZED_REPEAT = 10_000
# The issue's own anchor: an empty program cost 26 ns in this harness on the
# day its figures were taken. This VM's speed swings by half within a day.
ISSUE_EMPTY_NS = 26


class Prelude:
    """PRELUDE loaded once; aimed at a program and a set of VIPs per measurement."""

    def __init__(self) -> None:
        from bcc import BPF

        self.bpf = BPF(text=PRELUDE.encode())
        self.fd = self.bpf.load_func(b"prelude", BPF.SCHED_CLS).fd
        self.empty = self.bpf.load_func(b"prelude_target_empty", BPF.SCHED_CLS).fd
        self.next = self.bpf[b"prelude_next"].map_fd
        self.cfg = self.bpf[b"prelude_cfg"].map_fd

    def run(self, target: int, services: int, fixed: int | None, repeat: int) -> int:
        """Kernel ns per run: each run a new flow to a random VIP (or service `fixed`)."""
        bpfsys.map_update(self.next, struct.pack("=I", 0), struct.pack("=I", target))
        first = int(gen.vip(0))
        cfg = struct.pack("=4I", first, services, 0 if fixed is None else fixed + 1, 0)
        bpfsys.map_update(self.cfg, struct.pack("=I", 0), cfg)
        frame = tcp_syn(CLIENT_NET + 1, gen.vip(0), 10_000, gen.SERVICE_PORT)
        return bpfsys.prog_test_run(self.fd, frame, repeat).duration_ns

    def close(self) -> None:
        self.bpf.cleanup()


def amortized_first_packets(
    progs: dict[int, TcProgram], prelude: Prelude, runs: int = 7
) -> tuple[dict[int, dict[str, float]], float]:
    """Median over `runs` of the per-run ns of repeat=AMORTIZED_REPEAT prelude runs,
    each run a first packet: to a random service, and to the last service every
    time; plus the prelude's own cost (tail-calling an empty program).

    Every measured run follows an unmeasured one of the same kind: the run
    before it may have been a random run over 10,000 services, which sweeps
    megabytes of NAT map entries through the cache, and re-filling the cache
    with the conntrack table would otherwise fall on whichever run came next."""
    times: dict[int, dict[str, list[int]]] = {s: {"random": [], "same": []} for s in progs}
    anchor: list[int] = []
    for _ in range(runs):
        for scale, tc in progs.items():
            for kind, fixed in (("random", None), ("same", scale - 1)):
                prelude.run(tc.prog_fd, scale, fixed, AMORTIZED_REPEAT // 2)  # warm-up
                before = tc.stat(nl.NatStat.DNAT_NEW)
                times[scale][kind].append(prelude.run(tc.prog_fd, scale, fixed, AMORTIZED_REPEAT))
                if tc.stat(nl.NatStat.DNAT_NEW) - before != AMORTIZED_REPEAT:
                    raise RuntimeError(f"{scale}: prelude runs missed the new-flow NAT path")
        anchor.append(prelude.run(prelude.empty, 1, None, AMORTIZED_REPEAT))
    out = {s: {k: float(statistics.median(v)) for k, v in t.items()} for s, t in times.items()}
    return out, float(statistics.median(anchor))


# conntrack entries: 293 KiB (fits in cache), the bench's 4.6 MiB, Calico's default (36 MiB)
CT_SIZES = (4_096, 65_536, 512_000)


def first_packet_by_table_size(prelude: Prelude, runs: int = 11) -> dict[int, float]:
    """Amortized first packet (10 services, same service) with conntrack tables
    of CT_SIZES entries, interleaved: how much of a first packet is the memory
    latency of the table's buckets. Returns the medians net of the prelude."""
    progs: dict[int, TcProgram] = {}
    saved = MAP_CONFIG["bpfMapSizeConntrack"]
    try:
        for size in CT_SIZES:
            MAP_CONFIG["bpfMapSizeConntrack"] = size
            progs[size] = TcProgram()
            progs[size].fill(10)
        times: dict[int, list[int]] = {size: [] for size in progs}
        anchor: list[int] = []
        for _ in range(runs):
            for size, tc in progs.items():
                prelude.run(tc.prog_fd, 10, 9, AMORTIZED_REPEAT // 2)  # warm-up, as above
                times[size].append(prelude.run(tc.prog_fd, 10, 9, AMORTIZED_REPEAT))
            anchor.append(prelude.run(prelude.empty, 1, None, AMORTIZED_REPEAT))
        floor = statistics.median(anchor)
        return {size: statistics.median(t) - floor for size, t in times.items()}
    finally:
        MAP_CONFIG["bpfMapSizeConntrack"] = saved
        for tc in progs.values():
            tc.close()


def _client(n: int) -> tuple[IPv4Address, int]:
    """A distinct (source ip, source port) per sample: always a fresh flow."""
    return CLIENT_NET + 1 + n // 50_000, 10_000 + n % 50_000


def measure_packets(
    progs: dict[int, TcProgram], samples: int, anchors: Anchors, seed: int = 1
) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """Median kernel-reported ns per packet on each path, for each program (keyed by its
    service count), and the anchors' figures. Samples alternate between programs so
    machine noise hits all alike."""
    rng = random.Random(seed)
    paths = ("first", "first_same", "hit", "plain")
    times = {s: {p: list[int]() for p in paths} for s in progs}
    floor: dict[str, list[int]] = {"empty": [], "ct_write": []}
    before = {s: tc.stat(nl.NatStat.DNAT_NEW) for s, tc in progs.items()}
    # First packets: a fresh flow (distinct source port) to a random service every time,
    # and to the same (last) service every time: the difference is cache misses.
    # The programs share one conntrack table: each scale gets clients of its own.
    for n in range(samples):
        for i, (scale, tc) in enumerate(progs.items()):
            src, sport = _client(2 * (n * len(progs) + i))
            src2, sport2 = _client(2 * (n * len(progs) + i) + 1)
            frame = tcp_syn(src, gen.vip(rng.randrange(scale)), sport, gen.SERVICE_PORT)
            times[scale]["first"].append(tc.run(frame).duration_ns)
            frame = tcp_syn(src2, gen.vip(scale - 1), sport2, gen.SERVICE_PORT)
            times[scale]["first_same"].append(tc.run(frame).duration_ns)
    for scale, tc in progs.items():
        if tc.stat(nl.NatStat.DNAT_NEW) - before[scale] != 2 * samples:
            raise RuntimeError(f"{scale}: first-packet samples missed the new-flow NAT path")
    # Conntrack hit: one flow to the last service, a fresh copy of its packet each time.
    src, sport = _client(2 * samples * len(progs))
    hit = {s: tcp_syn(src, gen.vip(s - 1), sport, gen.SERVICE_PORT) for s in progs}
    plain = tcp_syn(src, gen.BACKEND_IP, sport, gen.TARGET_PORT)  # to a pod IP: no NAT
    for scale, tc in progs.items():
        tc.run(hit[scale])
        before[scale] = tc.stat(nl.NatStat.DNAT_CT)
    for _ in range(samples):
        for scale, tc in progs.items():
            times[scale]["hit"].append(tc.run(hit[scale]).duration_ns)
            times[scale]["plain"].append(tc.run(plain).duration_ns)
    out: dict[int, dict[str, float]] = {}
    for scale, tc in progs.items():
        if tc.stat(nl.NatStat.DNAT_CT) - before[scale] != samples:
            raise RuntimeError(f"{scale}: conntrack-hit samples missed the conntrack entry")
        out[scale] = {path: statistics.median(t) for path, t in times[scale].items()}
        # repeat=1000 re-runs the packet the first run rewrote: from then on it is
        # client -> backend, i.e. the non-service path, timer cost amortised.
        out[scale]["repeat1000"] = float(tc.run(hit[scale], repeat=1000).duration_ns)
    # The anchors in a loop of their own: beside ours they would evict its cache lines.
    for _ in range(samples):
        floor["empty"].append(bpfsys.prog_test_run(anchors.empty, plain).duration_ns)
        floor["ct_write"].append(bpfsys.prog_test_run(anchors.ct_write, plain).duration_ns)
    anchor = {name: float(statistics.median(t)) for name, t in floor.items()}
    for name, fd in (("empty", anchors.empty), ("ct_write", anchors.ct_write)):
        anchor[f"{name}_repeat"] = float(bpfsys.prog_test_run(fd, plain, 10_000).duration_ns)
    return out, anchor


def tc_program(samples: int = 3000) -> tuple[dict[str, Any], dict[int, float]]:
    """Benchmark 1: one program per scale, measured side by side. Also returns the
    seconds spent writing each scale's NAT map contents."""
    progs: dict[int, TcProgram] = {}
    fill: dict[int, float] = {}
    anchors = Anchors()
    prelude = Prelude()
    try:
        for scale in SCALES:  # one conntrack table for all, as on a node
            progs[scale] = TcProgram(conntrack_of=progs.get(SCALES[0]))
            fill[scale] = progs[scale].fill(scale)
        figures, anchor = measure_packets(progs, samples, anchors)
        amortized, prelude_ns = amortized_first_packets(progs, prelude)
        for tc in progs.values():
            tc.close()
        progs = {}
        by_size = first_packet_by_table_size(prelude)
    finally:
        for tc in progs.values():
            tc.close()
        anchors.close()
        prelude.close()
    lo, hi = figures[SCALES[0]], figures[SCALES[-1]]
    rows: list[tuple[str, Any, str]] = [
        ("samples per path (median of repeat=1 runs)", samples, "scales interleaved")
    ]
    for scale in SCALES:
        f = figures[scale]
        rows += [
            (
                f"{scale:,} services: first packet (ct create + DNAT): ns",
                f["first"],
                "random service",
            ),
            (
                f"{scale:,} services: first packet, same service each time: ns",
                f["first_same"],
                "",
            ),
            (f"{scale:,} services: conntrack hit (DNAT): ns", f["hit"], ""),
            (f"{scale:,} services: non-service packet: ns", f["plain"], ""),
            (
                f"{scale:,} services: repeat=1000 on one flow: ns",
                f["repeat1000"],
                "= non-service path after run 1",
            ),
        ]
    for scale in SCALES:
        a = amortized[scale]
        rows.append(
            (
                f"{scale:,} services: first packet, amortized (repeat={AMORTIZED_REPEAT:,}, "
                "every run a new flow): random | same service: ns",
                f"{a['random']:.0f} | {a['same']:.0f}",
                f"net of the prelude: {a['random'] - prelude_ns:.0f} | "
                f"{a['same'] - prelude_ns:.0f}",
            )
        )
    alo, ahi = amortized[SCALES[0]], amortized[SCALES[-1]]
    rows += [
        (
            f"amortized first packet, net, by conntrack table size ({size:,} entries, "
            f"{ct_table.buckets_for(size) * ct_table.BUCKET // 1024:,} KiB): ns",
            ns,
            "10 services, same service; the bench's table is 65,536 entries",
        )
        for size, ns in by_size.items()
    ]
    rows += [
        (
            "anchor: the prelude tail-calling an empty program, amortized: ns",
            prelude_ns,
            "subtracted in the net figures",
        ),
        (
            "ratio amortized first packet 10,000 / 10 services: random | same service",
            f"{ahi['random'] / alo['random']:.2f} | {ahi['same'] / alo['same']:.2f}",
            f"target <= 1.15 and < 500 ns ({ahi['same'] - prelude_ns:.0f} ns net, same service)",
        ),
        (
            "ratio first packet 10,000 / 10 services",
            hi["first"] / lo["first"],
            f"random service, repeat=1 ({hi['first']:.0f} ns, the harness's floor included);"
            " the target's figures are the amortized ones",
        ),
        (
            "ratio first packet, same service, 10,000 / 10 services",
            hi["first_same"] / lo["first_same"],
            "random - same = cache misses",
        ),
        ("ratio conntrack hit 10,000 / 10 services", hi["hit"] / lo["hit"], ""),
        ("ratio non-service 10,000 / 10 services", hi["plain"] / lo["plain"], ""),
        (
            "repeat=1 timer overhead (non-service repeat=1 - repeat=1000): ns",
            hi["plain"] - hi["repeat1000"],
            "included in every median above",
        ),
        (
            "anchor: empty tc program, repeat=1 | repeat=10000: ns",
            f"{anchor['empty']:.0f} | {anchor['empty_repeat']:.0f}",
            "the harness's floor, measured beside ours",
        ),
        (
            "amortized first packet, 10,000 services, same service, at the issue's "
            "machine speed: ns",
            (ahi["same"] - prelude_ns) * ISSUE_EMPTY_NS / anchor["empty_repeat"],
            f"net figure x {ISSUE_EMPTY_NS} / this run's empty program (repeat=10000); "
            "a rough cross-day scale",
        ),
        (
            "anchor: one conntrack-shaped LRU insert, repeat=1 | repeat=10000: ns",
            f"{anchor['ct_write']:.0f} | {anchor['ct_write_repeat']:.0f}",
            "program with one map update",
        ),
        (
            "first packet net of the floor, 10 | 10,000 services (same service): ns",
            f"{lo['first_same'] - anchor['empty']:.0f} | {hi['first_same'] - anchor['empty']:.0f}",
            f"two kernel LRU inserts alone: ~{2 * (anchor['ct_write'] - anchor['empty']):.0f}",
        ),
        (
            f"map fill, {SCALES[-1]:,} services ({SCALES[-1] * (ENDPOINTS + 1):,} entries): s",
            fill[SCALES[-1]],
            "bpfsys.map_update_many",
        ),
    ]
    return report("nat tc program: per packet", rows), fill


def _first_packet_variants(
    variants: dict[str, Callable[[TcProgram, int], None]], map_name: str, runs: int,
    again: bytes | None = None, source: str | None = None,
    counted: dict[str, nl.NatStat] | None = None,
) -> dict[str, float]:
    """The amortized first packet (10 services, the last one each time) under
    each variant, interleaved over `runs` rounds: a variant is a function
    that sets the program up, given it and an fd of its pinned map
    `map_name`. Medians, ns net of the prelude. Every run must take the
    new-flow NAT path. With `again`, also that frame run AMORTIZED_REPEAT
    times in a row under each variant ("<variant>, again": gross ns, the
    same packet each run). `source`: the tc.c text to build instead of
    this tree's. `counted`: a variant's runs must also count this (all but
    1% of them)."""
    times: dict[str, list[int]] = {name: [] for name in variants}
    repeated: dict[str, list[int]] = {f"{name}, again": [] for name in variants}
    anchor: list[int] = []
    prelude = Prelude()
    tc: TcProgram | None = None
    fd = -1
    try:
        tc = TcProgram(source)
        tc.fill(10)
        fd = bpfsys.obj_get(f"{tc.root}/maps/{map_name}")
        for _ in range(runs):
            for name, set_up in variants.items():
                set_up(tc, fd)
                prelude.run(tc.prog_fd, 10, 9, AMORTIZED_REPEAT // 2)  # warm-up
                before = tc.stat(nl.NatStat.DNAT_NEW)
                also = (counted or {}).get(name)
                before_also = tc.stat(also) if also is not None else 0
                times[name].append(prelude.run(tc.prog_fd, 10, 9, AMORTIZED_REPEAT))
                if tc.stat(nl.NatStat.DNAT_NEW) - before != AMORTIZED_REPEAT:
                    raise RuntimeError(f"{name}: runs missed the new-flow NAT path")
                if also is not None and tc.stat(also) - before_also < AMORTIZED_REPEAT * 0.99:
                    raise RuntimeError(f"{name}: runs missed {also.name}")
                if again is not None:
                    result = tc.run(again, AMORTIZED_REPEAT)
                    if result.retval != 0xFFFFFFFF:  # TC_ACT_UNSPEC: passed
                        raise RuntimeError(f"{name}: the repeated packet did not pass")
                    repeated[f"{name}, again"].append(result.duration_ns)
            anchor.append(prelude.run(prelude.empty, 1, None, AMORTIZED_REPEAT))
    finally:
        if fd >= 0:
            bpfsys.close(fd)
        if tc is not None:
            tc.close()
        prelude.close()
    floor = float(statistics.median(anchor))
    out = {name: float(statistics.median(t)) - floor for name, t in times.items()}
    out.update({name: float(statistics.median(t)) for name, t in repeated.items() if t})
    return out


def source_check(runs: int = 9) -> dict[str, Any]:
    """What a workload's source check (rcl_wep_src) adds to a first packet:
    the same program, flows and service with the interface flagged a data
    interface (no check), a workload whose slot holds no entry and a
    workload whose entry admits the clients (the source read and
    compared)."""
    from reconciler.datapath.maps.iface_types import MAP_WEP_SRC, U32

    def variant(flags: int, entry: bool) -> Callable[[TcProgram, int], None]:
        def set_up(tc: TcProgram, wep_fd: int) -> None:
            tc.manage(flags)
            if entry:  # the clients' network (CLIENT_NET) as the workload's own
                value = entries.wep_src_value(TEST_RUN_IFINDEX, "10.64.0.0/10")
            else:
                value = entries.wep_src_value(0, "")  # an unused slot
            # slot 0: the slot a test run's packet names (it has no classid)
            bpfsys.map_update(wep_fd, U32.pack(0), value)

        return set_up

    net = _first_packet_variants(
        {"data interface, no check": variant(2, False), "workload, no entry": variant(1, False),
         "workload, its entry": variant(1, True)},
        MAP_WEP_SRC, runs,
    )  # fmt: skip
    base = net["data interface, no check"]
    rows: list[tuple[str, Any, str]] = [
        (f"first packet, {name}: ns net", round(ns), f"{ns - base:+.0f} ns against no check")
        for name, ns in net.items()
    ]
    return report("nat tc program: workload source check", rows)


def rpf_check(runs: int = 9) -> dict[str, Any]:
    """What bpfEnforceRPF adds to a packet arriving on a data interface: the
    same program, flows and service on a data interface with the
    reverse-path check Disabled, Loose and Strict. Measured inside a private
    namespace whose loopback (a test run's device) forwards and routes the
    clients back through itself, so both modes pass every packet after
    their FIB lookup."""
    from reconciler.datapath.maps.iface_types import MAP_GLOBALS
    from reconciler.kernel import rtnetlink

    def variant(mode: str) -> Callable[[TcProgram, int], None]:
        def set_up(tc: TcProgram, globals_fd: int) -> None:
            tc.manage(2)
            attrs = {"log_level": 0, "endpoint_to_host": "Drop", "rpf": mode}
            bpfsys.map_update(globals_fd, *entries.encode(MAP_GLOBALS, "0", attrs))

        return set_up

    netns = f"rclbrpf-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "route", "add", "10.64.0.0/10", "dev", "lo"],  # CLIENT_NET
                    ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/lo/forwarding"]):  # fmt: skip
            subprocess.run(["nsenter", f"--net=/run/netns/{netns}", *cmd], check=True)
        # a packet like the one before it (a flow's next): to a pod, not a service
        again = tcp_syn(CLIENT_NET + 1, gen.BACKEND_IP, 10_000, gen.TARGET_PORT)
        # the prelude's flows come from one client to one address for 65,536
        # runs: they find the verdict remembered; a build that never finds
        # it pays the FIB lookup every time
        from reconciler.datapath.loader import BPF_DIR
        from reconciler.datapath.sources import flatten

        text = flatten(BPF_DIR / "tc.c")
        if "now < seen->until)" not in text:
            raise RuntimeError("rpf_check: the remembered-verdict test is not in tc.c")
        forgetful = text.replace("now < seen->until)", "0)")
        modes = ("Disabled", "Loose", "Strict")
        with rtnetlink.entered(netns):
            got = _first_packet_variants({m: variant(m) for m in modes}, MAP_GLOBALS, runs, again)
            cold = _first_packet_variants({m: variant(m) for m in modes}, MAP_GLOBALS, runs,
                                          source=forgetful)  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    rows: list[tuple[str, Any, str]] = []
    for label, table, suffix, unit in (
        ("first packet, the verdict remembered", got, "", "net"),
        ("first packet, every one looked up", cold, "", "net"),
        ("the same packet again", got, ", again", "gross"),
    ):
        base = table[f"Disabled{suffix}"]
        for mode in modes:
            ns = table[f"{mode}{suffix}"]
            rows.append((f"{label}, {mode}: ns {unit}", round(ns),
                         f"{ns - base:+.0f} ns against Disabled"))  # fmt: skip
    return report("nat tc program: reverse-path check (bpfEnforceRPF)", rows)


MASQ_BASELINE = "e8f8bff"  # the tree before masquerade
TCP_ACK = 0x10


def _later_packets(source: str | None, local: int, samples: int) -> float:
    """Median ns (gross) of a later packet of one flow to a service whose
    backends are here (`local` = ENDPOINTS) or elsewhere (0), each run a
    fresh copy of the flow's ACK, on a data interface."""
    tc = TcProgram(source)
    try:
        tc.fill(10)
        tc.manage(2)
        fe = nr.Frontend(10, ENDPOINTS, local)
        key = nr.FrontendKey(gen.vip(9), 80, nl.Proto.TCP)
        bpfsys.map_update(tc.fds[nl.MAP_NAT_FE], key.encode(), fe.encode())
        client = CLIENT_NET + 7
        tc.run(tcp_syn(client, gen.vip(9), 33_333, gen.SERVICE_PORT))  # the flow begins
        ack = tcp_syn(client, gen.vip(9), 33_333, gen.SERVICE_PORT, TCP_ACK)
        before = tc.stat(nl.NatStat.DNAT_CT)
        times = [tc.run(ack).duration_ns for _ in range(samples)]
        if tc.stat(nl.NatStat.DNAT_CT) - before != samples:
            raise RuntimeError("later packets missed the flow's conntrack entry")
        return float(statistics.median(times))
    finally:
        tc.close()


def masquerade(runs: int = 9, baseline: str = MASQ_BASELINE) -> dict[str, Any]:
    """What masquerade costs, on a data interface (traffic from outside):
    the amortized first packet to a service whose backends are on this node
    (no masquerade) and elsewhere (masqueraded: a port claimed, two more
    conntrack entries, the FIB's source, a tail call), in this tree and in
    commit `baseline`'s (which has no masquerade: its "elsewhere" is plain
    DNAT); and a packet to a port of the masquerade's range that is no
    reply of a masqueraded flow (looked up, then tc ingress again), against
    one to a port below it. Each round clears conntrack first: 15,000 new
    flows a round on one service's 10 backends, 1,500 per backend, so some
    port claims meet a taken port and try another."""
    from bench.policy_bench import baseline_source
    from reconciler.kernel import rtnetlink

    def variant(local: int) -> Callable[[TcProgram, int], None]:
        def set_up(tc: TcProgram, fe_fd: int) -> None:
            tc.manage(2)  # a data interface
            conntrack_table.clear(tc.fds[nl.MAP_CT])
            for i in range(10):
                fe = nr.Frontend(i + 1, ENDPOINTS, local)
                key = nr.FrontendKey(gen.vip(i), 80, nl.Proto.TCP)
                bpfsys.map_update(fe_fd, key.encode(), fe.encode())

        return set_up

    variants = {"here": variant(ENDPOINTS), "elsewhere": variant(0)}
    # from a backend to a client port: no service flow, so NAT passes it
    to_masq_port = tcp_syn(gen.BACKEND_IP, CLIENT_NET + 1, gen.TARGET_PORT, 62_000)
    below = tcp_syn(gen.BACKEND_IP, CLIENT_NET + 1, gen.TARGET_PORT, 40_000)
    netns = f"rclbmasq-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    got: dict[str, dict[str, float]] = {}
    try:
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "addr", "add", "192.168.77.1/32", "dev", "lo"],  # the FIB's source
                    ["ip", "route", "add", "10.0.0.0/8", "dev", "lo"],  # clients, backends
                    ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/lo/forwarding"]):  # fmt: skip
            subprocess.run(["nsenter", f"--net=/run/netns/{netns}", *cmd], check=True)
        with tempfile.TemporaryDirectory() as tmp:
            sources = {"this tree": None, baseline: baseline_source(baseline, Path(tmp))}
            with rtnetlink.entered(netns):
                for name, source in sources.items():
                    counted = {"elsewhere": nl.NatStat.MASQ_NEW} if source is None else None
                    a = _first_packet_variants(variants, nl.MAP_NAT_FE, runs, to_masq_port,
                                               source=source, counted=counted)  # fmt: skip
                    b = _first_packet_variants({"here": variants["here"]}, nl.MAP_NAT_FE, runs,
                                               below, source=source)  # fmt: skip
                    later = {f"later, {v}": _later_packets(source, local, 30 * runs)
                             for v, local in (("here", ENDPOINTS), ("elsewhere", 0))}  # fmt: skip
                    got[name] = {**a, "below": b["here, again"], **later}
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
    ours, base = got["this tree"], got[baseline]
    rows: list[tuple[str, Any, str]] = [
        ("first packet, backend here: ns net", round(ours["here"]),
         f"{baseline}: {base['here']:.0f} ns ({ours['here'] - base['here']:+.0f})"),
        ("first packet, backend elsewhere (masqueraded): ns net", round(ours["elsewhere"]),
         f"{baseline} (plain DNAT): {base['elsewhere']:.0f} ns "
         f"({ours['elsewhere'] - base['elsewhere']:+.0f})"),
        ("a later packet, backend here: ns gross", round(ours["later, here"]),
         f"{baseline}: {base['later, here']:.0f} ns "
         f"({ours['later, here'] - base['later, here']:+.0f})"),
        ("a later packet, backend elsewhere (masqueraded): ns gross",
         round(ours["later, elsewhere"]),
         f"{baseline} (plain DNAT): {base['later, elsewhere']:.0f} ns "
         f"({ours['later, elsewhere'] - base['later, elsewhere']:+.0f})"),
        ("a packet to a port below 61000: ns gross", round(ours["below"]),
         f"{baseline}: {base['below']:.0f} ns ({ours['below'] - base['below']:+.0f})"),
        ("a packet to a masquerade port, no reply: ns gross", round(ours["here, again"]),
         f"{baseline}: {base['here, again']:.0f} ns "
         f"({ours['here, again'] - base['here, again']:+.0f})"),
    ]  # fmt: skip
    return report("nat tc program: masquerade (data interface)", rows)


# ---------------------------------------------------------------- part 2: two worlds

CLIENT = Pod("cli", str(gen.CLIENT_IP))
BACKEND = Pod("srv", str(gen.BACKEND_IP))
BACKEND_ADDRS = ENDPOINTS + 1  # one spare address, for the "one changed service" edit
# The kernel completes handshakes by itself; the server drains its accept queue on a
# timer instead of blocking in accept(), so no connect pays for waking it on another CPU.
SERVER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4096)
s.setblocking(False)
print("ready", flush=True)
while True:
    time.sleep(0.05)
    try:
        while True:
            s.accept()[0].close()
    except BlockingIOError:
        pass
"""


def _start_server(sb: Sandbox) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{sb.pod_ns(BACKEND)}",
            sys.executable,
            "-c",
            SERVER,
            str(gen.TARGET_PORT),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError("backend server did not start")
    return proc


def run_rss(
    cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)
) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one command. GNU time measures the RSS:
    a child forked straight from this (bcc-loaded, large) process would report ours."""
    with tempfile.NamedTemporaryFile("w+") as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *cmd],
            capture_output=True,
            text=True,
            env=cli_env(env),
        )
        wall = time.perf_counter() - start
        if proc.returncode not in ok:
            raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr[-3000:]}")
        return wall, int(rss.read().split()[-1]) / 1024, proc.stdout


class Ours:
    """Our world: the reconcile CLI converging a sandbox node from a config dir."""

    def __init__(self, sb: Sandbox, tmp: Path) -> None:
        self.sb = sb
        self.config = tmp / "config"
        self.env = {"XDG_CACHE_HOME": str(tmp / "cache")}
        self.args = [
            "--config",
            str(self.config),
            "--node",
            gen.NODE,
            "--netns",
            sb.node,
            "--bpffs-root",
            sb.bpffs_root,
            "--cgroup",
            sb.cgroup,
            "--state-dir",
            str(tmp / "state"),
        ]
        gen.write_node(
            self.config,
            (CLIENT.name, gen.CLIENT_IP),
            (BACKEND.name, BACKEND_ADDRS),
            conntrack_size=CT_SIZE,
        )

    def run(self, mode: str, *extra: str, ok: tuple[int, ...] = (0,)) -> tuple[float, float, str]:
        return run_rss([RECONCILE, mode, *self.args, *extra], self.env, ok)

    def services(self, count: int) -> None:
        gen.write_services(self.config, count, ENDPOINTS)


def connect_probe(
    worlds: dict[str, tuple[str, dict[str, tuple[str, int]]]], samples: int, warmup: int = 20
) -> dict[str, dict[str, list[float]]]:
    """Per-connect seconds (connect + close) from each world's client namespace to each of
    its targets ({world: (netns path, {target: addr})}). One child switches namespaces with
    setns, so worlds and targets alternate sample by sample. Every connect gets its own
    source port: a reused one can meet a stale NAT reverse entry (see the report)."""
    if (samples + warmup) * 3 > 45000:
        raise ValueError("too many samples for distinct source ports")
    spec = json.dumps({"worlds": worlds, "samples": samples, "warmup": warmup})
    out = subprocess.run(
        [sys.executable, "-c", PROBE, spec], capture_output=True, text=True, timeout=900
    )
    if out.returncode:
        raise RuntimeError(f"connect probe failed: {out.stderr[-2000:]}")
    result: dict[str, dict[str, list[float]]] = json.loads(out.stdout)
    return result


PROBE = """
import ctypes, json, socket, sys, time
spec = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
worlds = [(w, open(path), targets) for w, (path, targets) in spec["worlds"].items()]
names = list(worlds[0][2])
out = {w: {t: [] for t in names} for w, _, _ in worlds}
for n in range(spec["warmup"] + spec["samples"]):
    order = worlds[n % len(worlds):] + worlds[:n % len(worlds)]  # rotate: no position bias
    for j, t in enumerate(names):
        for w, fh, targets in order:
            if libc.setns(fh.fileno(), 0x40000000):  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), "setns")
            s = socket.socket()
            s.settimeout(3)
            s.bind(("0.0.0.0", 20000 + n * len(names) + j))  # never reuse a 4-tuple
            start = time.perf_counter()
            try:
                s.connect(tuple(targets[t]))
            except OSError as exc:
                sys.exit(f"{w}: connect to {t} {targets[t]}: {exc}")
            s.close()
            if n >= spec["warmup"]:
                out[w][t].append(time.perf_counter() - start)
print(json.dumps(out))
"""


def _med_us(values: list[float]) -> float:
    return statistics.median(values) * 1e6


def _edit_one_service(ours: Ours, i: int) -> tuple[str, bytes, bytes]:
    """Move service i's last endpoint to the backend pod's spare address. Returns
    the address of the one map entry that must change, its key and new value."""
    from reconciler.compile.services import _stable_ids
    from reconciler.datapath.maps.codecs import be_key, be_suffix, be_value

    path = gen.service_path(ours.config, i)
    old, new = gen.endpoint_ip(i, ENDPOINTS - 1), gen.endpoint_ip(i, ENDPOINTS)
    path.write_text(path.read_text().replace(f"[{old}]", f"[{new}]"))
    port_key = f"{gen.NAMESPACE}/{gen.name(i)}:http/tcp"
    svc_id = _stable_ids([port_key])[port_key]
    address = str(Address.of_entry("rcl_nat_be", be_suffix(svc_id, ENDPOINTS - 1)))
    return address, be_key(svc_id, ENDPOINTS - 1), be_value(str(new), gen.TARGET_PORT)


EDITS = 5  # distinct one-service edits per measurement (a repeated edit would hit a cache)


def _watch_passes(ours: Ours, services: list[int]) -> tuple[list[float], list[float]]:
    """A `reconcile --watch` process converging one edit at a time: seconds from the
    file write until the kernel holds the new entry, and the pass times it logged."""
    proc = subprocess.Popen(
        [RECONCILE, "--watch", "--interval", "300", *ours.args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(ours.env),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))  # type: ignore[union-attr]
    reader.start()
    fd = bpfsys.obj_get(f"{ours.sb.bpffs_root}/maps/{nl.MAP_NAT_BE}")
    latency: list[float] = []
    try:
        deadline = time.monotonic() + 120
        while not any("pass done" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)  # the first pass after start-up: imports and a no-op plan
        for i in services:
            before = len(lines)
            _, key, value = _edit_one_service(ours, i)
            start = time.perf_counter()
            while bpfsys.map_lookup(fd, key) != value:
                if time.perf_counter() - start > 30:
                    raise RuntimeError(f"--watch did not converge service {i}: {lines[-5:]}")
                time.sleep(0.002)
            latency.append(time.perf_counter() - start)
            while not any("pass done" in line for line in lines[before:]):
                time.sleep(0.01)
            time.sleep(1.0)  # let it write its caches while idle, as it would between pushes
    finally:
        bpfsys.close(fd)
        proc.terminate()
        proc.wait(timeout=30)
        reader.join()
    # log lines: "<UTC time> INFO pass done in 0.123s: <result>"
    passes = [float(m.group(1)) for line in lines if (m := _PASS_DONE.search(line))]
    return latency, passes[1 : 1 + len(services)]


_PASS_DONE = re.compile(r"\bpass done in ([0-9.]+)s\b")


def at_scale(ours: Ours, services: int, seed: int = 7) -> list[tuple[str, Any, str]]:
    """Benchmark 3 on a node already converged to `services` services (by a cold
    apply without caches). One cached apply first, as a node that has been
    following its repository has done: it records what the kernel holds."""
    ours.run("--apply")  # fills the validation and state caches, records the applied state
    noop = statistics.median(ours.run("--plan")[0] for _ in range(3))
    rng = random.Random(seed)
    picks = rng.sample(range(services), 3 * EDITS)
    plans, applies, rss, only = [], [], 0.0, True
    for i in picks[:EDITS]:  # plan + apply + verify, one command
        address, _, _ = _edit_one_service(ours, i)
        seconds, peak, out = ours.run("--apply", "--json")
        applies.append(seconds)
        rss = max(rss, peak)
        result = json.loads(out)
        written = [
            r["address"]
            for r in result["results"]
            if r["address"].startswith("map/") and r["result"] != "unchanged"
        ]
        only &= written == [address] and result["converged"]
    for i in picks[EDITS : 2 * EDITS]:  # plan only: the change stays pending, so undo it
        path = gen.service_path(ours.config, i)
        text = path.read_text()
        address, _, _ = _edit_one_service(ours, i)
        seconds, _, out = ours.run("--plan", ok=(2,))  # as a person runs it: text
        plans.append(seconds)
        only &= [line.split()[1] for line in out.splitlines() if line.startswith("    ~")] == [
            address
        ]
        path.write_text(text)
    latency, passes = _watch_passes(ours, picks[2 * EDITS :])
    return [
        ("warm no-op --plan: s (median of 3, with cache)", noop, "target < 1 s"),
        (
            f"one changed service: --plan: s (median of {EDITS} edits)",
            statistics.median(plans),
            f"range {min(plans):.3f}-{max(plans):.3f}",
        ),
        (
            f"one changed service: --apply (plan + apply + verify): s (median of {EDITS})",
            statistics.median(applies),
            f"range {min(applies):.3f}-{max(applies):.3f}; peak RSS {rss:,.0f} MiB",
        ),
        (
            f"one changed service: --watch pass (plan + apply + verify): s (median of {EDITS})",
            statistics.median(passes),
            f"range {min(passes):.3f}-{max(passes):.3f}; target < 0.5 s",
        ),
        (
            "one changed service: --watch, file written -> entry in the kernel: s",
            statistics.median(latency),
            "includes the file event and 0.05 s of event coalescing",
        ),
        (
            "one changed service: only that map entry planned and written, every time",
            "yes" if only else "NO",
            "",
        ),
    ]


def worlds(samples: int = 400, fill: dict[int, float] | None = None) -> dict[str, Any]:
    """Benchmarks 2 and 3: an iptables node and our node per scale, all up at once so
    connect samples alternate between every world and scale."""
    tag = uuid.uuid4().hex[:4]
    boxes = {
        (world, scale): Sandbox(prefix=f"rclb{world[:3]}{scale}{tag}")
        for scale in SCALES
        for world in ("iptables", "ours")
    }
    servers: list[subprocess.Popen[str]] = []
    endpoints = [gen.endpoint_ip(0, k) for k in range(ENDPOINTS)]
    rows: list[tuple[str, Any, str]] = []
    with tempfile.TemporaryDirectory(prefix="rclbnat-") as tmpdir:
        try:
            for sb in boxes.values():
                _populate(sb)
                servers.append(_start_server(sb))
            for scale in SCALES:
                text, count = ipt.rules(scale, endpoints)
                node = boxes["iptables", scale].node
                start = time.perf_counter()
                ipt.restore(node, text)
                ipt_s = time.perf_counter() - start
                if ipt.count_rules(node) != count:
                    raise RuntimeError("iptables-restore did not load every rule")
                ours = Ours(boxes["ours", scale], Path(tmpdir) / str(scale))
                ours.services(0)
                first, rss0, _ = ours.run("--apply", "--no-cache")  # compile + attach
                ours.services(scale)
                ours_s, rss, _ = ours.run("--apply", "--no-cache")
                rows += [
                    (f"{scale:,} services: iptables-restore ({count:,} rules): s", ipt_s, ""),
                    (
                        f"{scale:,} services: ours, reconcile --apply from YAML: s",
                        ours_s,
                        f"cold, no cache; peak RSS {rss:,.0f} MiB",
                    ),
                    (f"{scale:,} services: ratio our apply / iptables-restore", ours_s / ipt_s, ""),
                ]
                if fill:
                    rows.append(
                        (
                            f"{scale:,} services: ours, NAT map writes only: s",
                            fill[scale],
                            f"ratio to iptables {fill[scale] / ipt_s:.3f}",
                        )
                    )
            rows.append(
                (
                    "ours: first apply, no services (compile + attach): s",
                    first,
                    f"peak RSS {rss0:,.0f} MiB",
                )
            )
            probe = {
                f"{world}@{scale}": (f"/run/netns/{sb.pod_ns(CLIENT)}", _targets(scale))
                for (world, scale), sb in boxes.items()
            }
            raw = connect_probe(probe, samples)
            scale_rows = at_scale(ours, SCALES[-1])  # `ours` is the largest scale's node
        finally:
            for proc in servers:
                proc.kill()
                proc.wait()
            for sb in boxes.values():
                sb.down()
    latency = {
        scale: {
            world: {t: _med_us(v) for t, v in raw[f"{world}@{scale}"].items()}
            for world in ("iptables", "ours")
        }
        for scale in SCALES
    }
    rows += _latency_rows(latency, samples)
    report("nat worlds: sync and connect latency", rows)
    return report(f"nat scale: {SCALES[-1]:,} services x {ENDPOINTS} endpoints", scale_rows)


def _targets(services: int) -> dict[str, tuple[str, int]]:
    return {
        "first service": (str(gen.vip(0)), gen.SERVICE_PORT),
        "last service": (str(gen.vip(services - 1)), gen.SERVICE_PORT),
        "pod IP": (str(gen.BACKEND_IP), gen.TARGET_PORT),
    }


def _latency_rows(
    latency: dict[int, dict[str, dict[str, float]]], samples: int
) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = [
        ("connect samples per target and world (median)", samples, "worlds interleaved")
    ]
    base = latency[SCALES[0]]["ours"]
    for scale, worlds_ in latency.items():
        ipt_, ours = worlds_["iptables"], worlds_["ours"]
        for target in ours:
            rows.append(
                (
                    f"{scale:,} svc, {target}: connect us iptables | ours",
                    f"{ipt_[target]:8.1f} | {ours[target]:8.1f}",
                    f"ours/iptables {ours[target] / ipt_[target]:.2f}; "
                    f"ours vs 10 svc {ours[target] - base[target]:+.1f} us",
                )
            )
        for target in ("first service", "last service"):
            rows.append(
                (
                    f"{scale:,} svc, {target}: overhead vs pod IP, us",
                    f"{ipt_[target] - ipt_['pod IP']:8.1f} | {ours[target] - ours['pod IP']:8.1f}",
                    "iptables | ours",
                )
            )
    return rows


def _populate(sb: Sandbox) -> None:
    """Client and backend pods; the backend holds every endpoint address."""
    sb.up(pods=[CLIENT, BACKEND])
    extra = range(1, BACKEND_ADDRS)
    for netns, lines in (
        (sb.pod_ns(BACKEND), [f"addr add {gen.BACKEND_IP + k}/32 dev eth0" for k in extra]),
        (sb.node, [f"route add {gen.BACKEND_IP + k}/32 dev {BACKEND.host_iface}" for k in extra]),
    ):
        subprocess.run(
            ["ip", "-n", netns, "-batch", "-"],
            input="\n".join(lines),
            text=True,
            check=True,
            capture_output=True,
        )


def main(quick: bool = False) -> dict[str, Any]:
    _, fill = tc_program(samples=500 if quick else 3000)
    source_check(runs=3 if quick else 9)
    rpf_check(runs=3 if quick else 9)
    masquerade(runs=3 if quick else 9)
    return worlds(samples=100 if quick else 400, fill=fill)


if __name__ == "__main__":
    if "--masq-only" in sys.argv:  # the masquerade figures alone
        masquerade(runs=3 if "--quick" in sys.argv else 9)
    else:
        main(quick="--quick" in sys.argv)
