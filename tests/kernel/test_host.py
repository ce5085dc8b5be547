"""Host protection with real traffic: an "outside" namespace talks to the node
over its data interface (eth0, a HostEndpoint), pods talk to the node."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kernel.conftest import PODS
from tests.kernel.test_services import HERE, Services

FRONT, BACK = PODS

HEP = """\
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: node-1-eth0
  labels: {role: uplink}
spec:
  node: node-1
  interfaceName: eth0
  expectedIPs: [192.168.50.1]
  profiles: [allow-all]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: allow-all}
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
"""

DENY_ALL_INGRESS = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-deny-all}
spec:
  selector: role == "uplink"
  types: [Ingress]
  ingress: [{action: Deny}]
"""


def felix(node, extra: str = "") -> None:
    node.write(
        "felix.yaml",
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\n"
        'spec:\n  bpfEnabled: true\n  bpfDataIfacePattern: "^eth"\n' + extra,
    )


class Host(Services):
    """Servers in the node namespace itself (the host), clients outside."""

    def serve_host(self, port: int, name: str = "host") -> None:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.node.sandbox.node}", sys.executable, "-m",
             "sandbox.echo", name, str(port)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def from_outside(self, port: int, proto: str = "tcp") -> str:
        sb = self.node.sandbox
        return self.request(proto, sb.node_ip, port, ns=sb.ext)[0]

    def from_pod(self, pod, port: int) -> str:
        sb = self.node.sandbox
        return self.request("tcp", sb.node_ip, port, ns=sb.pod_ns(pod))[0]


@pytest.fixture
def host(node):
    h = Host(node)
    try:
        for port in (22, 8080):
            h.serve_host(port)
        felix(node)
        node.write("hep.yaml", HEP)
        yield h
    finally:
        h.stop()


def test_deny_all_host_ingress_keeps_failsafe_ports_open(host):
    from reconciler.datapath.loader import cpus

    node = host.node
    rc, out, err = node.run("--apply", "-v")
    assert rc == 0, out + err
    assert re.search(r"building program set\(s\) connect@\w+, host@\w+, tc@\w+ with bcc", err)
    if cpus() > 1:  # the tc, host and connect sets at once, each whole
        assert "built 3 program set(s) side by side" in err, err
        assert "parts side by side" not in err, err
    node.apply_converged()
    assert host.from_outside(8080).startswith("host")  # the profile allows all
    node.write("policy.yaml", DENY_ALL_INGRESS)
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "map/rcl_pol_hep/eth0" in out, out
    assert (
        "failsafe inbound tcp:22: HostEndpoint/node-1-eth0's ingress policy would deny it "
        "(policy/host-deny-all ingress rule 1)" in out
    ), out
    node.apply_converged()
    assert host.from_outside(22) == f"host {node.sandbox.ext_ip}"  # failsafe
    assert host.from_outside(8080).startswith("ERR")
    rc, out, err = node.run("--explain", "--from", "192.168.50.2", "--to", "192.168.50.1:22/tcp")
    assert rc == 0 and "Allow by failsafe inbound tcp:22" in out and "Verdict: Allow" in out, out
    rc, out, err = node.run(
        "--explain", "--from", "192.168.50.2", "--to", "192.168.50.1:8080/tcp", "--kernel"
    )
    assert rc == 0, out + err
    assert "node-1-eth0 ingress (to the host): Deny by policy/host-deny-all ingress rule 1" in out
    assert "(agrees)" in out and "DISAGREES" not in out and "Verdict: Deny" in out, out
    # without 22 among the failsafe ports, the policy decides
    felix(node, "  failsafeInboundHostPorts: [{protocol: TCP, port: 2222}]\n")
    rc, out, _ = node.run("--plan")
    assert (
        rc == 2
        and "- map/rcl_failsafe/in/tcp/22" in out
        and "+ map/rcl_failsafe/in/tcp/2222" in out
    )
    node.apply_converged()
    assert host.from_outside(22).startswith("ERR")
    assert host.from_outside(8080).startswith("ERR")


def test_failsafe_net_is_honoured(host):
    node = host.node
    node.write("policy.yaml", DENY_ALL_INGRESS)
    felix(node, "  failsafeInboundHostPorts: [{protocol: TCP, port: 22, net: 10.9.0.0/16}]\n")
    node.apply_converged()
    assert host.from_outside(22).startswith("ERR")  # the outside is not in 10.9.0.0/16
    felix(node, "  failsafeInboundHostPorts: [{protocol: TCP, port: 22, net: 192.168.50.0/24}]\n")
    node.apply_converged()
    assert host.from_outside(22).startswith("host")


def test_host_egress_policy_and_outbound_failsafe(host):
    node = host.node
    sb = node.sandbox
    s = Services(node)
    try:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{sb.ext}", sys.executable, "-m", "sandbox.echo",
             "outside", "6443"], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        s.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc2 = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{sb.ext}", sys.executable, "-m", "sandbox.echo",
             "outside", "7000"], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        s.servers.append(proc2)
        assert proc2.stdout is not None and proc2.stdout.readline().strip() == "ready"
        node.write("policy.yaml", DENY_ALL_INGRESS.replace("Ingress", "Egress").replace(
            "ingress:", "egress:"))  # fmt: skip
        node.apply_converged()
        out6443 = s.request("tcp", sb.ext_ip, 6443, ns=sb.node)[0]
        out7000 = s.request("tcp", sb.ext_ip, 7000, ns=sb.node)[0]
        assert out6443 == f"outside {sb.node_ip}", out6443  # outbound failsafe tcp:6443
        assert out7000.startswith("ERR"), out7000
        assert host.from_outside(8080).startswith("host")  # ingress: the profile; replies pass
    finally:
        s.stop()


def test_default_endpoint_to_host_action(host):
    node = host.node
    node.felix()
    felix(node)
    for pod in PODS:
        node.wep(pod)
    node.apply_converged()  # Calico's default: Drop
    assert host.from_pod(FRONT, 8080).startswith("ERR")
    to_host = ["--from", FRONT.name, "--to", f"{node.sandbox.node_ip}:8080/tcp", "--kernel"]
    rc, out, err = node.run("--explain", *to_host)
    assert rc == 0 and out == (
        "shop/front0 to this node: Deny by defaultEndpointToHostAction Drop (before its egress "
        "policy)\nVerdict: Deny\n"
    ), out + err
    felix(node, "  defaultEndpointToHostAction: Accept\n")
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "endpoint_to_host: Drop -> Accept" in out, out
    node.apply_converged()
    assert host.from_pod(FRONT, 8080) == f"host {FRONT.ip}"
    rc, out, err = node.run("--explain", *to_host)
    assert rc == 0 and out.endswith(
        "node-1-eth0 from a pod of this node: Allow by defaultEndpointToHostAction Accept (host "
        "endpoint policy does not judge a pod's traffic to its node)\nVerdict: Allow\n"
    ), out + err
    assert "shop/front0 egress: Allow" in out and "(agrees)" in out, out
    # Return: as Calico's eBPF dataplane, it acts as Accept, and the plan says so
    felix(node, "  defaultEndpointToHostAction: Return\n")
    rc, out, _ = node.run("--plan", "--detail")
    assert rc == 2 and "endpoint_to_host: Accept -> Return" in out, out
    assert (
        "FelixConfiguration/default: spec.defaultEndpointToHostAction: not enforced: "
        "Return acts as Accept" in out
    ), out
    node.apply_converged()
    assert host.from_pod(FRONT, 8080) == f"host {FRONT.ip}"
    # what it hands the host on, the host's own netfilter rules still judge
    sb = node.sandbox
    nft = f"""\
table inet rcltest {{
  chain input {{
    type filter hook input priority 0;
    ip saddr {FRONT.ip} tcp dport 8080 drop
  }}
}}
"""
    subprocess.run(["ip", "netns", "exec", sb.node, "nft", "-f", "-"], input=nft, text=True,
                   check=True)  # fmt: skip
    try:
        assert host.from_pod(FRONT, 8080).startswith("ERR")
    finally:
        subprocess.run(["ip", "netns", "exec", sb.node, "nft", "delete", "table", "inet",
                        "rcltest"], check=False)  # fmt: skip
    assert host.from_pod(FRONT, 8080) == f"host {FRONT.ip}"


def test_prednat_denies_a_nodeport_from_one_source_and_apply_on_forward(host):
    node = host.node
    sb = node.sandbox
    svc = Services(node)
    try:
        svc.serve(BACK)
        for pod in PODS:
            node.wep(pod)
        svc.service((BACK,), type_="NodePort", nodeport=30080)
        # a second outside source: another address on the outside's interface
        subprocess.run(["ip", "-n", sb.ext, "addr", "add", "192.168.50.3/24", "dev", "ext0"],
                       check=True)  # fmt: skip
        node.write(
            "prednat.yaml",
            """\
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: block-one}
            spec:
              selector: role == "uplink"
              preDNAT: true
              applyOnForward: true
              types: [Ingress]
              ingress:
              - action: Deny
                protocol: TCP
                source: {nets: [192.168.50.2/32]}
                destination: {ports: [30080]}
            """,
        )
        node.apply_converged()
        blocked = svc.request("tcp", sb.node_ip, 30080, ns=sb.ext)[0]
        assert blocked.startswith("ERR"), blocked
        through = sb.exec(sb.ext, sys.executable, str(HERE / "bind_client.py"), "192.168.50.3",
                          sb.node_ip, "30080")  # fmt: skip
        assert through.stdout.strip() == "back0 192.168.50.3", through.stdout + through.stderr
        # --explain follows the NodePort, and the loaded programs agree
        assert explain_node_port(node, "192.168.50.2")[1:] == [
            "node-1-eth0 preDNAT: Deny by policy/block-one ingress rule 1 (tier default)",
            "  kernel: Deny by policy/block-one ingress rule 1 (agrees)",
            "Verdict: Deny (before NAT)",
        ]
        assert explain_node_port(node, "192.168.50.3")[1:3] == [
            "-> backend 10.65.0.20:8080",
            "  node-1-eth0 forward-ingress: Allow by no applyOnForward policy",
        ]
        assert explain_node_port(node, "192.168.50.3")[-1] == "Verdict: Allow"
        # applyOnForward: forwarded traffic meets the host endpoint's policy too
        node.remove("prednat.yaml")
        node.write(
            "forward.yaml",
            """\
            apiVersion: projectcalico.org/v3
            kind: GlobalNetworkPolicy
            metadata: {name: forward-only-3}
            spec:
              selector: role == "uplink"
              applyOnForward: true
              types: [Ingress]
              ingress:
              - action: Allow
                source: {nets: [192.168.50.3/32]}
            """,
        )
        node.apply_converged()
        blocked = svc.request("tcp", sb.node_ip, 30080, ns=sb.ext)[0]
        assert blocked.startswith("ERR"), blocked
        through = sb.exec(sb.ext, sys.executable, str(HERE / "bind_client.py"), "192.168.50.3",
                          sb.node_ip, "30080")  # fmt: skip
        assert through.stdout.strip() == "back0 192.168.50.3", through.stdout + through.stderr
        denied = explain_node_port(node, "192.168.50.2")
        assert denied[-1] == "Verdict: Deny" and any(
            line.startswith("  node-1-eth0 forward-ingress: Deny by ") for line in denied
        ), denied
        assert all("DISAGREES" not in line for line in denied)
        allowed = explain_node_port(node, "192.168.50.3")
        assert "  node-1-eth0 forward-ingress: Allow by policy/forward-only-3 ingress rule 1 " \
            "(tier default)" in allowed and allowed[-1] == "Verdict: Allow", allowed
        assert sum("(agrees)" in line for line in allowed) == 2, allowed  # forward and back0's
        # straight to the pod from outside, no NodePort: the same forward policy
        assert svc.request("tcp", BACK.ip, 8080, ns=sb.ext)[0].startswith("ERR")
        rc, out, err = node.run("--explain", "--from", "192.168.50.2", "--to",
                                f"{BACK.ip}:8080/tcp", "--kernel")  # fmt: skip
        assert rc == 0 and "node-1-eth0 forward-ingress: Deny by tier/default default action " \
            "(tier default)\n" in out and out.endswith("Verdict: Deny\n"), out + err
        assert "kernel: Deny by tier/default default action (agrees)" in out, out
    finally:
        svc.stop()


def explain_node_port(node, src: str) -> list[str]:
    """--explain --kernel of a flow from `src` to NodePort 30080, without the
    compiled-program lines."""
    rc, out, err = node.run(
        "--explain", "--from", src, "--to", f"{node.sandbox.node_ip}:30080/tcp", "--kernel"
    )
    assert rc == 0, out + err
    lines = [line for line in out.splitlines() if "compiled program" not in line]
    # from outside: the reverse-path check first, from the node's route back
    assert lines[0] == ("Reverse-path check (bpfEnforceRPF Loose, where it arrives, before "
                        f"policy): Allow: the route back to {src} leaves by eth0"), out  # fmt: skip
    return lines[1:]


UNTRACKED = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  selector: role == "uplink"
  doNotTrack: true
  applyOnForward: true
  order: 10
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [8080]}
  - action: Deny
    protocol: TCP
    destination: {ports: [9090]}
"""


def xdp_stats(node) -> dict[str, int]:
    from reconciler.datapath.maps import host_types as ht
    from reconciler.kernel import bpf as bpfsys

    fd = bpfsys.obj_get(f"{node.sandbox.bpffs_root}/maps/{ht.MAP_XDP_STATS}")
    try:
        totals: dict[str, int] = {}
        for _key, per_cpu in bpfsys.map_items(fd):
            for k, v in ht.xdp_stats_sum(per_cpu).items():
                totals[k] = totals.get(k, 0) + v
        return totals
    finally:
        bpfsys.close(fd)


def policy_ct_entries(node) -> int:
    """Conntrack entries of policy's key space (rcl_ct_key.pad[0])."""
    from reconciler.datapath import conntrack as ct_table
    from reconciler.kernel import bpf as bpfsys

    fd = bpfsys.obj_get(f"{node.sandbox.bpffs_root}/maps/{ct_table.MAP}")
    try:
        return sum(1 for key in ct_table.entries(fd) if key[13] != 0)  # rcl_ct_key.pad[0]
    finally:
        bpfsys.close(fd)


def test_do_not_track_deny_drops_in_xdp_and_allow_bypasses_a_later_deny(host):
    node = host.node
    host.serve_host(9090)
    node.write("policy.yaml", DENY_ALL_INGRESS)
    node.write("untracked.yaml", UNTRACKED)
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "+ xdp/eth0" in out and "+ map/rcl_xdp_ep/eth0" in out, out
    node.apply_converged()
    before = xdp_stats(node)
    ct_before = policy_ct_entries(node)
    assert host.from_outside(9090).startswith("ERR")  # untracked Deny: dropped in XDP
    after = xdp_stats(node)
    assert after["dropped"] > before["dropped"], (before, after)
    assert policy_ct_entries(node) == ct_before  # nothing reached conntrack
    rc, out, err = node.run(
        "--explain", "--from", "192.168.50.2", "--to", "192.168.50.1:9090/tcp", "--kernel"
    )
    assert rc == 0 and "untracked (XDP, before conntrack): Deny by policy/untracked" in out, out
    assert "(agrees)" in out and "Verdict: Deny" in out, out
    # --status: what XDP did on eth0, and which rule dropped what
    rc, out, _ = node.run("--status")
    assert "XDP (untracked ingress)" in out and "Untracked (doNotTrack) drops by rule:" in out, out
    assert re.search(r"eth0 +XDP +\d+  policy/untracked ingress rule 2", out), out
    rc, out, _ = node.run("--status", "--json")
    status = json.loads(out)
    assert status["format_version"] == 2
    assert status["xdp"]["eth0"]["dropped"] >= after["dropped"] > 0, status["xdp"]
    rows = [d for d in status["untracked_drops"] if d["direction"] == "in"]
    assert rows and rows[0]["interface"] == "eth0", status["untracked_drops"]
    assert rows[0]["policy"] == "policy/untracked ingress rule 2" and rows[0]["packets"] > 0
    # untracked Allow: the later deny-all host policy is never asked
    assert host.from_outside(8080) == f"host {node.sandbox.ext_ip}"
    assert xdp_stats(node)["allowed"] > after["allowed"]
    assert host.from_outside(22).startswith("host")  # failsafe before untracked rules
    assert xdp_stats(node)["failsafe"] > 0
    # removing the untracked policy detaches our XDP program
    node.remove("untracked.yaml")
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "- xdp/eth0" in out, out
    node.apply_converged()
    assert host.from_outside(8080).startswith("ERR")


def attached_ids(node, iface: str) -> dict[str, int]:
    """The ids of the programs attached to `iface` in the node: xdp, and tc
    by direction (bpftool's view of the kernel)."""
    sb = node.sandbox
    done = sb.exec(sb.node, "bpftool", "-j", "net", "show", "dev", iface)
    assert done.returncode == 0, done.stderr
    (net,) = json.loads(done.stdout)
    ids = {t["kind"].split("/")[-1]: t["id"] for t in net.get("tc", [])}
    for xdp in net.get("xdp", []):  # one at most
        ids["xdp"] = xdp["id"]
    return ids


def pinned_id(pin: Path) -> int:
    from reconciler.kernel import bpf as bpfsys

    fd = bpfsys.obj_get(str(pin))
    try:
        return bpfsys.prog_info(fd).id
    finally:
        bpfsys.close(fd)


def test_a_program_set_built_again_is_attached_again(host):
    """A pin gone behind our back (a map's, a program's) makes the plan
    build the set again under the same name: its attachments are made again
    with the new programs, never left on the old unpinned ones (which hold
    the old maps, and which the next plan could not tell for ours)."""
    node = host.node
    root = Path(node.sandbox.bpffs_root)
    node.write("policy.yaml", DENY_ALL_INGRESS)
    node.write("untracked.yaml", UNTRACKED)
    node.apply_converged()
    (xdp_set,) = (root / "progs").glob("xdp-*")
    (root / "maps" / "rcl_xdp_ep").unlink()  # the map the XDP program reads its endpoints from
    rc, out, _ = node.run("--plan")
    rebuilt = f"re-attached: prog/{xdp_set.name.replace('-', '@', 1)} is built again"
    assert rc == 2 and "~ xdp/eth0" in out and rebuilt in out, out
    node.apply_converged()
    assert attached_ids(node, "eth0")["xdp"] == pinned_id(xdp_set / "rcl_xdp")
    assert host.from_outside(9090).startswith("ERR")  # the untracked Deny, from the new map
    (xdp_set / "rcl_xdp").unlink()  # the attached program's own pin
    node.apply_converged()
    assert attached_ids(node, "eth0")["xdp"] == pinned_id(xdp_set / "rcl_xdp")
    rc, out, _ = node.run("--plan")
    assert rc == 0 and "foreign" not in out, out
    (host_set,) = (root / "progs").glob("host-*")  # eth0, a host endpoint, runs its programs
    (host_set / "rcl_tc_host_ingress").unlink()
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "~ tc/eth0/ingress" in out, out
    node.apply_converged()
    assert attached_ids(node, "eth0")["ingress"] == pinned_id(host_set / "rcl_tc_host_ingress")


def test_a_foreign_xdp_program_is_reported_and_left_alone(host):
    from bcc import BPF

    node = host.node
    sb = node.sandbox
    other = BPF(text=b"int other_xdp(struct xdp_md *ctx) { return XDP_PASS; }")
    try:
        fn = other.load_func(b"other_xdp", BPF.XDP)
        from pyroute2 import NetNS

        with NetNS(sb.node) as ns:
            idx = ns.link_lookup(ifname="eth0")[0]
            ns.link("set", index=idx, xdp={"attrs": [("IFLA_XDP_FD", fn.fd),
                                                    ("IFLA_XDP_FLAGS", 1 << 1)]})  # fmt: skip
        node.write("policy.yaml", DENY_ALL_INGRESS)
        node.write("untracked.yaml", UNTRACKED)
        rc, out, _ = node.run("--plan")
        assert rc == 2 and "xdp/eth0 generic prog" in out and "other_xdp" in out, out
        assert "+ xdp/eth0" not in out and "a foreign XDP program is attached" in out, out
        node.apply_converged()
        got = sb.exec(sb.node, "ip", "-d", "link", "show", "eth0").stdout
        assert "other_xdp" in got or "xdpgeneric" in got, got
        # tc still enforces the rest: the host's deny-all
        assert host.from_outside(8080).startswith("ERR")
    finally:
        other.cleanup()


UNTRACKED_EGRESS = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked-out}
spec:
  selector: role == "uplink"
  doNotTrack: true
  applyOnForward: true
  types: [Egress]
  egress:
  - action: Allow
    protocol: TCP
    destination: {ports: [7000]}
  - action: Deny
    protocol: TCP
    destination: {nets: [192.168.50.0/24], ports: [7001]}
"""

DENY_ALL_EGRESS = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-deny-all-out}
spec:
  selector: role == "uplink"
  types: [Egress]
  egress: [{action: Deny}]
"""


def dropped(node, iface: str) -> int:
    rc, out, _ = node.run("--status", "--json")
    return int(json.loads(out)["counters"][iface]["dropped"])


def test_do_not_track_egress_denies_before_conntrack_and_allow_bypasses_a_later_deny(host):
    node = host.node
    sb = node.sandbox
    outside = Services(node)
    try:
        for port in (7000, 7001, 7002):
            proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{sb.ext}", sys.executable, "-m", "sandbox.echo",
                 "outside", str(port)], stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            outside.servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

        def send(port: int) -> str:
            return outside.request("tcp", sb.ext_ip, port, ns=sb.node)[0]

        node.write("untracked-out.yaml", UNTRACKED_EGRESS)
        rc, out, _ = node.run("--plan", "--detail")
        assert rc == 2 and "map/rcl_pol_hep/eth0" in out and "untracked-egress=" in out, out
        # the destination /24 is also an exact entry, for the flat lookup
        assert "untracked-egress-nets=24,0" in out and "/net/192.168.50.0/24" in out, out
        assert "+ xdp/eth0" not in out, out  # egress rules only: no XDP program
        node.apply_converged()
        ct_before = policy_ct_entries(node)
        drops_before = dropped(node, "eth0")
        assert send(7001).startswith("ERR")  # untracked Deny: dropped in tc egress
        assert dropped(node, "eth0") > drops_before
        assert policy_ct_entries(node) == ct_before  # the denied flow left no state
        assert send(7000) == f"outside {sb.node_ip}"
        assert send(7002) == f"outside {sb.node_ip}"  # no untracked rule: normal policy
        rc, out, err = node.run(
            "--explain", "--from", "192.168.50.1", "--to", "192.168.50.2:7001/tcp", "--kernel"
        )
        assert rc == 0, out + err
        assert (
            "node-1-eth0 untracked egress (tc, before conntrack): Deny by "
            "policy/untracked-out egress rule 2" in out
        ), out
        assert "(agrees)" in out and "Verdict: Deny" in out, out
        rc, out, _ = node.run("--status", "--json")
        rows = [d for d in json.loads(out)["untracked_drops"] if d["direction"] == "out"]
        assert rows and rows[0]["policy"] == "policy/untracked-out egress rule 2", rows
        rc, out, _ = node.run("--status")
        assert re.search(r"eth0 +tc egress +\d+  policy/untracked-out egress rule 2", out), out

        # a normal deny-all egress policy: the untracked Allow still lets 7000 out
        node.write("deny-out.yaml", DENY_ALL_EGRESS)
        node.apply_converged()
        assert send(7000) == f"outside {sb.node_ip}"
        assert send(7002).startswith("ERR")
        rc, out, err = node.run(
            "--explain", "--from", "192.168.50.1", "--to", "192.168.50.2:7000/tcp", "--kernel"
        )
        assert "untracked egress (tc, before conntrack): Allow by policy/untracked-out egress " \
               "rule 1" in out and "Verdict: Allow" in out, out  # fmt: skip
        # without the untracked policy the normal deny decides
        node.remove("untracked-out.yaml")
        node.apply_converged()
        assert send(7000).startswith("ERR")
    finally:
        outside.stop()


def test_the_host_set_hands_over_in_a_resize_and_leaves_with_the_host_endpoint(host):
    """A node with a host endpoint runs two builds of the tc datapath: the tc
    set, and the host set on eth0. A resize builds both anew against the old
    table as well; once they are the only ones attached, the handover ends in
    both, the host's flows carried into the new table. Without the host
    endpoint, eth0 runs the tc set and the host set is removed."""
    from pathlib import Path

    from reconciler.datapath import conntrack as ct_table
    from reconciler.datapath import ct_handover
    from reconciler.kernel import bpf as bpfsys

    node = host.node
    node.apply_converged()
    progs = Path(node.sandbox.bpffs_root) / "progs"

    def builds() -> list[str]:
        return sorted(d.name.rpartition("-")[0] for d in progs.iterdir())

    def ct_entries() -> dict:
        fd = bpfsys.obj_get(str(Path(node.sandbox.bpffs_root) / "maps" / ct_table.MAP))
        try:
            return {k: v for k, (_, _, v) in ct_table.entries(fd).items()}
        finally:
            bpfsys.close(fd)

    assert builds() == ["connect", "host", "tc"]
    assert host.from_outside(8080).startswith("host")
    before = ct_entries()
    assert before  # the host endpoint's flow, in conntrack
    felix(node, "  bpfMapSizeConntrack: 3000\n")
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "-/+ map/rcl_ct" in out, out
    assert re.search(r"^\s*\+ prog/host@", out, re.M) and re.search(r"^\s*- prog/host@", out, re.M)
    node.apply_converged()
    assert builds() == ["connect", "host", "tc"]
    for set_dir in progs.iterdir():
        assert not ct_handover.pending(set_dir), set_dir.name
    assert ct_entries() == before
    assert host.from_outside(8080).startswith("host")
    node.remove("hep.yaml")
    node.apply_converged()
    assert builds() == ["connect", "tc"]
    filters = subprocess.run(
        ["tc", "-n", node.sandbox.node, "filter", "show", "dev", "eth0", "ingress"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert re.search(r"rcl:tc@\w+ ", filters) and "host" not in filters, filters
    assert host.from_outside(8080).startswith("host")  # a data interface, no policy
