"""Host protection benchmarks, through BPF_PROG_TEST_RUN.

1. `xdp_deny`: the XDP program's cost per packet for a doNotTrack Deny with
   1, 1,000 and 10,000 untracked rules (each a source /24; the packet is
   denied by the last rule), every rule count's program in one set of maps,
   switched by the interface's rcl_xdp_ep entry and interleaved round by
   round: the lookup is flat in the rules.
2. `first_packet`: a first packet through host endpoint ingress policy (tc
   ingress on a HostEndpoint, bpf/tc_host.c rcl_tc_host_ingress, for the host
   itself) side by side with a workload's ingress policy (tc egress on its
   veth, as bench/policy_bench.py measures it), amortized the same way (every
   run a new flow, each variant interleaved), with 1 and 1,000 rules, and
   each path without policy.
"""

from __future__ import annotations

import os
import shutil
import statistics
import uuid
from pathlib import Path
from typing import Any

from reconciler.assets import BPF_DIR
from reconciler.compile.host_policy import untracked_net_entries
from reconciler.compile.policy import Program, compile_chain
from reconciler.compile.policy_model import build_model
from reconciler.compile.policy_objects import program_entries
from reconciler.compile.programs import build_flags
from reconciler.config import felix
from reconciler.config.load import load
from reconciler.datapath import loader as build
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import host_types as ht
from reconciler.datapath.programs import PROG_TYPES, XDP_PROGRAMS
from reconciler.datapath.sources import flatten
from reconciler.engine.explain import craft
from reconciler.kernel import bpf as bpfsys

REPEAT = 2_000_000
XDP_RULES = (1, 1_000, 10_000)
XDP_DROP = 1


def untracked_config(rules: int) -> str:
    deny = "\n".join(
        f"  - action: Deny\n    protocol: TCP\n    source: {{nets: [10.{i // 250}.{i % 250}.0/24]}}"
        "\n    destination: {ports: [9090]}"
        for i in range(rules)
    )
    return f"""\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {{name: h, labels: {{role: uplink}}}}
spec: {{node: n1, interfaceName: eth0, expectedIPs: [192.168.50.1]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: untracked}}
spec:
  selector: role == "uplink"
  doNotTrack: true
  applyOnForward: true
  types: [Ingress]
  ingress:
{deny}
"""


def untracked_program(rules: int) -> Program:
    model = build_model(load(untracked_config(rules), "b.yaml").resources, "n1")
    return compile_chain(model.chains[("h", "untracked")])


def _write(fds: dict[str, int], root: str, items: Any) -> None:
    by_map: dict[str, list[tuple[bytes, Any]]] = {}
    for name, key, attrs in items:
        if name not in fds:
            fds[name] = bpfsys.obj_get(f"{root}/maps/{name}")
        by_map.setdefault(name, []).append(entries.encode(name, key, attrs))
    for name, pairs in by_map.items():
        bpfsys.map_update_many(fds[name], pairs)


def xdp_deny(rounds: int = 5) -> dict[str, Any]:
    """ns per packet of a doNotTrack Deny decided by the last of N rules;
    every N's program written once, the interface switched between them."""
    root = f"/sys/fs/bpf/rclbhost-{uuid.uuid4().hex[:8]}"
    bpfsys.ensure_bpffs(root)
    fds: dict[str, int] = {}
    try:
        flags = build_flags(root, felix.effective_config([], "n1"), build.kernel_hz())
        target = build.build(root, "xdp", "bench", flags, XDP_PROGRAMS, PROG_TYPES["xdp"])
        eps = {}
        for rules in XDP_RULES:
            program = untracked_program(rules)
            nets, mask = untracked_net_entries(program)
            _write(fds, root, [(n, k, a) for n, k, a, _ in program_entries(program)] + nets)
            # BPF_PROG_TEST_RUN gives an XDP program the loopback device (ifindex 1)
            eps[rules] = {"ifindex": 1, "slot": 0, "untracked": f"{program.prog_id:08x}",
                          "nets": ht.nets_text(mask)}  # fmt: skip
        prog = bpfsys.obj_get(str(target / "rcl_xdp"))
        samples: dict[int, list[float]] = {n: [] for n in XDP_RULES}
        try:
            for _ in range(rounds):
                for rules in XDP_RULES:
                    _write(fds, root, [(ht.MAP_XDP_EP, "lo", eps[rules])])
                    last = f"10.{(rules - 1) // 250}.{(rules - 1) % 250}.7"
                    packet = craft(last, "192.168.50.1", 9090, 6)
                    result = bpfsys.prog_test_run(prog, packet, repeat=REPEAT)
                    if result.retval != XDP_DROP:
                        raise RuntimeError(f"{rules} rules: not dropped ({result})")
                    samples[rules].append(float(result.duration_ns))
        finally:
            bpfsys.close(prog)
    finally:
        for fd in fds.values():
            bpfsys.close(fd)
        shutil.rmtree(root, ignore_errors=True)
    med = {n: statistics.median(s) for n, s in samples.items()}
    one = med[XDP_RULES[0]]
    rows: list[tuple[str, Any, str]] = [
        (
            f"{n:,} untracked rules: ns/packet (median of {rounds})",
            med[n],
            "runs: " + " ".join(f"{x:.0f}" for x in samples[n]),
        )  # fmt: skip
        for n in XDP_RULES
    ]
    rows += [(f"{n:,} / 1", med[n] / one, "target <= 1.2 (flat)") for n in XDP_RULES[1:]]
    return report_rows("host: xdp doNotTrack deny per packet", rows)


def report_rows(name: str, rows: list[tuple[str, Any, str]]) -> dict[str, Any]:
    from bench.common import report

    return report(name, rows)


# ---------------------------------------------------------------- first packet

IF_DATA, IF_HOST_ENDPOINT = 2, 8  # bpf/lib/iface_types.h RCL_IF_*
JUMP_JUDGE = 0  # bpf/lib/tc_path.h RCL_JUMP_JUDGE


def tc_and_host_source() -> str:
    """bpf/tc.c and bpf/tc_host.c as one program text (their shared headers
    once): the workload's and the host endpoint's programs over one set of
    maps, the jump table holding the host judge."""
    seen: set[Path] = set()
    return flatten(BPF_DIR / "tc.c", seen) + "\n" + flatten(BPF_DIR / "tc_host.c", seen)


def first_packet(runs: int = 7) -> dict[str, Any]:
    """The workload's ingress policy (tc egress) and the host endpoint's
    ingress policy (tc ingress, to the host) on the same flows, every variant
    interleaved run by run, in one program's maps."""
    from ctypes import c_int

    from bcc import BPF

    from bench import policy_bench as pb
    from reconciler.datapath.maps.codecs import managed_interface

    prelude = pb.Prelude()
    tc = pb.PolicyTc(tc_and_host_source())
    try:
        host_in = tc.tc.bpf.load_func(b"rcl_tc_host_ingress", BPF.SCHED_CLS).fd
        judge = tc.tc.bpf.load_func(b"rcl_tc_host_judge", BPF.SCHED_CLS).fd
        tc.tc.bpf[b"rcl_tc_jumps"][c_int(JUMP_JUDGE)] = c_int(judge)
        for name in (ht.MAP_HEP, ht.MAP_HOST_IP):
            tc.fds[name] = bpfsys.obj_get(f"{tc.tc.root}/maps/{name}")
        # The prelude gives every run a destination 10.65.<n>.<cpu>: each is
        # one of this node's own addresses, so the host's ingress policy judges it.
        cpus = os.cpu_count() or 1
        host_ips = [("rcl_host_ip", f"10.65.{x}.{c}", {}) for x in range(256) for c in range(cpus)]
        _write(tc.fds, tc.tc.root, host_ips)
        programs = {n: compile_chain(pb.rules_chain(n)) for n in (1, 1_000)}
        programs[0] = compile_chain(pb.deny_chain())
        for program in programs.values():
            pb.write_program(tc.fds, program)

        def flags(value: int) -> None:
            for name, key, attrs in managed_interface(pb.TEST_RUN_IFINDEX, flags=value):
                bpfsys.map_update(tc.fds[name], *entries.encode(name, key, attrs))

        def hep(prog_id: int) -> None:
            attrs: dict[str, Any] = {"slot": 0, "ifindex": pb.TEST_RUN_IFINDEX}
            attrs.update({c: "00000000" for c in ht.HEP_CHAINS})
            attrs[ht.HEP_NETS] = ht.nets_text(0)
            attrs["ingress"] = attrs["egress"] = f"{prog_id:08x}"
            bpfsys.map_update(tc.fds[ht.MAP_HEP], *entries.encode(ht.MAP_HEP, "bench", attrs))

        # variant -> (program to run, interface flags, workload program, host program)
        variants: dict[str, tuple[int, int, int, int]] = {
            "workload, no policy": (tc.egress, pb.IF_MANAGED, 0, 0),
            "workload ingress, 1 rule": (tc.egress, pb.IF_MANAGED | pb.IF_POLICY,
                                         programs[1].prog_id, 0),
            "workload ingress, 1,000 rules": (tc.egress, pb.IF_MANAGED | pb.IF_POLICY,
                                              programs[1_000].prog_id, 0),
            "host, no host endpoint": (host_in, IF_DATA, 0, 0),
            "host endpoint ingress, 1 rule": (host_in, IF_DATA | IF_HOST_ENDPOINT, 0,
                                              programs[1].prog_id),
            "host endpoint ingress, 1,000 rules": (host_in, IF_DATA | IF_HOST_ENDPOINT, 0,
                                                   programs[1_000].prog_id),
        }  # fmt: skip

        def setup(v: str) -> int:
            prog, value, wl, host = variants[v]
            flags(value)
            if wl:
                tc.endpoint(wl)
            if host:
                hep(host)
            return prog

        # Sanity: a host endpoint whose policy allows nothing drops every run.
        flags(IF_DATA | IF_HOST_ENDPOINT)
        hep(programs[0].prog_id)
        before = tc.dropped()
        if prelude.run(host_in, 1000).retval != pb.TC_ACT_SHOT or tc.dropped() - before != 1000:
            raise RuntimeError("the host endpoint's deny program did not judge every run")
        times: dict[str, list[int]] = {v: [] for v in variants}
        anchor: list[int] = []
        for _ in range(runs):
            for v in variants:
                prog = setup(v)
                before = tc.dropped()
                prelude.run(prog, pb.AMORTIZED_REPEAT // 2)  # warm-up
                result = prelude.run(prog, pb.AMORTIZED_REPEAT)
                if result.retval != pb.TC_ACT_UNSPEC or tc.dropped() != before:
                    raise RuntimeError(f"{v}: a first packet was dropped ({result})")
                times[v].append(result.duration_ns)
            anchor.append(prelude.run(prelude.empty, pb.AMORTIZED_REPEAT).duration_ns)
    finally:
        tc.close()
        prelude.close()
    med = {v: float(statistics.median(t)) for v, t in times.items()}
    floor = float(statistics.median(anchor))
    rows: list[tuple[str, Any, str]] = [
        (
            f"runs per variant (median; repeat={pb.AMORTIZED_REPEAT:,}, every run a new flow)",
            runs,
            "variants interleaved, one program, one set of maps",
        ),  # fmt: skip
    ]
    rows += [(f"first packet, {v}: ns (gross | net of prelude)",
              f"{m:.0f} | {m - floor:.0f}", "") for v, m in med.items()]  # fmt: skip
    wl1 = med["workload ingress, 1 rule"] - med["workload, no policy"]
    host1 = med["host endpoint ingress, 1 rule"] - med["host, no host endpoint"]
    host1k = med["host endpoint ingress, 1,000 rules"] - med["host, no host endpoint"]
    rows += [
        ("anchor: the prelude tail-calling an empty program: ns", floor, "subtracted in net"),
        ("policy step, workload ingress, 1 rule: ns", wl1, "over the same path without policy"),
        (
            "policy step, host endpoint ingress, 1 rule: ns",
            host1,
            "over the host path without a host endpoint",
        ),  # fmt: skip
        ("policy step, host endpoint ingress, 1,000 rules: ns", host1k, ""),
        ("host / workload policy step, 1 rule", host1 / wl1 if wl1 else float("nan"), ""),
        (
            "host endpoint first packet, 1,000 / 1 rule (gross)",
            med["host endpoint ingress, 1,000 rules"] / med["host endpoint ingress, 1 rule"],
            "flat: target <= 1.2",
        ),  # fmt: skip
    ]
    return report_rows("host: first packet, host endpoint vs workload policy", rows)


def main(rounds: int = 5) -> dict[str, object]:
    return {"xdp_deny": xdp_deny(rounds), "first_packet": first_packet()}


if __name__ == "__main__":
    main()
