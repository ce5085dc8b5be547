"""Host protection benchmark: the XDP program's cost per packet for a
doNotTrack Deny, through BPF_PROG_TEST_RUN, with 1 and 1,000 untracked rules
(the packet is denied by the last rule: the lookup is flat in the rules)."""

from __future__ import annotations

import shutil
import uuid

from reconciler.compile.dataplane import build_flags
from reconciler.compile.policy import compile_chain
from reconciler.compile.policy_model import build_model
from reconciler.compile.policy_objects import program_entries
from reconciler.config import felix
from reconciler.config.load import load
from reconciler.datapath import loader as build
from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import host_types as ht
from reconciler.datapath.programs import PROG_TYPES, XDP_PROGRAMS
from reconciler.engine.explain import craft
from reconciler.kernel import bpf as bpfsys

REPEAT = 2_000_000


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


def xdp_deny_ns(rules: int) -> float:
    """ns per packet of a doNotTrack Deny decided by the last of `rules` rules."""
    root = f"/sys/fs/bpf/rclbhost-{uuid.uuid4().hex[:8]}"
    bpfsys.ensure_bpffs(root)
    try:
        flags = build_flags(root, felix.effective_config([], "n1"), build.kernel_hz())
        target = build.build(root, "xdp", "bench", flags, XDP_PROGRAMS, PROG_TYPES["xdp"])
        model = build_model(load(untracked_config(rules), "b.yaml").resources, "n1")
        program = compile_chain(model.chains[("h", "untracked")])
        fds: dict[str, int] = {}
        try:
            for name, key, attrs, _ in program_entries(program):
                if name not in fds:
                    fds[name] = bpfsys.obj_get(f"{root}/maps/{name}")
                bpfsys.map_update(fds[name], *entries.encode(name, key, attrs))
            ep = bpfsys.obj_get(f"{root}/maps/{ht.MAP_XDP_EP}")
            fds[ht.MAP_XDP_EP] = ep
            # BPF_PROG_TEST_RUN gives an XDP program the loopback device (ifindex 1)
            attrs = {"ifindex": 1, "slot": 0, "untracked": f"{program.prog_id:08x}"}
            bpfsys.map_update(ep, *entries.encode(ht.MAP_XDP_EP, "lo", attrs))
            last = f"10.{(rules - 1) // 250}.{(rules - 1) % 250}.7"
            packet = craft(last, "192.168.50.1", 9090, 6)
            prog = bpfsys.obj_get(str(target / "rcl_xdp"))
            try:
                result = bpfsys.prog_test_run(prog, packet, repeat=REPEAT)
                assert result.retval == 1, result  # XDP_DROP
                return float(result.duration_ns)
            finally:
                bpfsys.close(prog)
        finally:
            for fd in fds.values():
                bpfsys.close(fd)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(rounds: int = 3) -> dict[str, object]:
    """Both rule counts alternating, `rounds` times; medians."""
    import statistics

    from bench.common import report

    samples: dict[int, list[float]] = {1: [], 1000: []}
    for _ in range(rounds):
        for rules in samples:
            samples[rules].append(xdp_deny_ns(rules))
    one, many = (statistics.median(samples[n]) for n in (1, 1000))
    return report(
        "host: xdp doNotTrack deny per packet",
        [
            ("1 untracked rule: ns/packet", one, f"median of {rounds}, BPF_PROG_TEST_RUN"),
            ("1,000 untracked rules: ns/packet", many, "the packet denied by the last rule"),
            ("1,000 / 1", many / one, "flat: the same lookups whatever the rule count"),
        ],
    )


if __name__ == "__main__":
    main()
