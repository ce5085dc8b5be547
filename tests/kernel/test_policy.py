"""Network policy enforced by the datapath, with real traffic between pods."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from sandbox.netns import Pod
from tests.kernel.conftest import PODS, WEB_SERVICE
from tests.kernel.test_services import HERE, UDP_CLIENT, VIP, Services, udp_out_only

FRONT, BACK = PODS
OTHER = Pod("back1", "10.65.0.21")


@pytest.fixture
def pods(node):
    s = Services(node)
    try:
        node.sandbox.add_pod(OTHER)
        for pod in (BACK, OTHER):
            s.serve(pod)
        node.felix()
        for pod in (FRONT, BACK, OTHER):
            node.wep(pod)
        yield s
    finally:
        s.stop()


def policy(node, name: str, text: str) -> None:
    node.write(f"policy-{name}.yaml", textwrap.dedent(text))


def tcp(s: Services, src: Pod, dst: str, port: int = 8080) -> str:
    return s.request("tcp", dst, port, ns=s.node.sandbox.pod_ns(src))[0]


def udp(s: Services, src: Pod, dst: str, port: int = 8080) -> str:
    return s.request("udp", dst, port, ns=s.node.sandbox.pod_ns(src))[0]


def ping(s: Services, src: Pod, dst: str) -> bool:
    out = s.node.sandbox.exec(s.node.sandbox.pod_ns(src), "ping", "-c1", "-W1", dst)
    return out.returncode == 0


BACK_FROM_FRONT = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: back-from-front, namespace: shop}
spec:
  selector: app == "back0"
  ingress:
  - action: Allow
    protocol: TCP
    source: {selector: app == "front0"}
    destination: {ports: [8080]}
"""


def test_a_deny_by_default_policy_drops_and_allowed_flows_pass(pods):
    node = pods.node
    assert tcp(pods, FRONT, BACK.ip).startswith("back0")  # the profile allows all
    policy(node, "a", BACK_FROM_FRONT)
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "policy/shop/back-from-front ingress rule 1" in out, out
    node.apply_converged()
    assert tcp(pods, FRONT, BACK.ip) == f"back0 {FRONT.ip}"
    assert udp(pods, FRONT, BACK.ip).startswith("ERR")  # not TCP
    assert tcp(pods, OTHER, BACK.ip).startswith("ERR")  # not front0
    assert not ping(pods, FRONT, BACK.ip)  # ICMP: the tier's default deny
    assert tcp(pods, FRONT, OTHER.ip).startswith("back1")  # back1 is not selected


def test_replies_pass_statefully_and_tiers_pass_and_icmp(pods):
    node = pods.node
    policy(node, "a", BACK_FROM_FRONT)
    policy(
        node,
        "b",
        """\
        apiVersion: projectcalico.org/v3
        kind: Tier
        metadata: {name: sec}
        spec: {order: 10, defaultAction: Pass}
        ---
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata: {name: sec.rules}
        spec:
          tier: sec
          selector: all()
          types: [Ingress, Egress]
          ingress:
          - action: Deny
            source: {nets: [10.65.0.21/32]}
          - action: Allow
            protocol: ICMP
            icmp: {type: 8}
          egress:
          - action: Deny
            source: {selector: app == "back0"}
        """,
    )
    node.apply_converged()
    # back0 may send nothing new (its egress is denied), yet its replies pass
    assert tcp(pods, FRONT, BACK.ip) == f"back0 {FRONT.ip}"
    assert tcp(pods, BACK, OTHER.ip).startswith("ERR")
    # echo requests are allowed in sec for every pod, their replies return
    assert ping(pods, FRONT, BACK.ip)
    assert ping(pods, FRONT, OTHER.ip)
    # back1 is denied in sec before anything else, even to a pod with no other policy
    assert not ping(pods, OTHER, FRONT.ip)
    # pass from sec, then the profile: front0 -> back1 is allowed
    assert tcp(pods, FRONT, OTHER.ip).startswith("back1")


def test_an_open_connection_survives_a_policy_change_that_denies_new_ones(pods):
    node = pods.node
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()
    sb = node.sandbox
    held = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.pod_ns(FRONT)}", sys.executable,
         str(HERE / "client.py"), "hold", BACK.ip, "8080"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert held.stdout is not None and held.stdin is not None
        assert held.stdout.readline().startswith("back0")
        policy(node, "a", BACK_FROM_FRONT.replace('app == "front0"', 'app == "nobody"'))
        node.apply_converged()
        assert tcp(pods, FRONT, BACK.ip).startswith("ERR")  # a new connection is denied
        held.stdin.write("still here\n")
        held.stdin.flush()
        assert "still here" in held.stdout.readline()  # the open one goes on
    finally:
        held.kill()
        held.wait()


def test_a_denied_backend_stays_denied_through_its_service(pods):
    node = pods.node
    node.write("service.yaml", WEB_SERVICE.format(vip=VIP, ip=BACK.ip))
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()
    # ingress policy sees the backend's port (8080), not the service's (80)
    assert tcp(pods, FRONT, VIP, 80) == f"back0 {FRONT.ip}"
    assert tcp(pods, OTHER, VIP, 80).startswith("ERR")
    # --explain follows the service to its backend, and the kernel agrees
    for src, verdict in ((FRONT.ip, "Allow"), (OTHER.ip, "Deny")):
        rc, out, err = node.run("--explain", "--from", src, "--to", f"{VIP}:80/tcp", "--kernel")
        assert rc == 0, out + err
        assert f"-> backend {BACK.ip}:8080" in out and "DISAGREES" not in out, out
        assert out.count("(agrees)") == out.count("compiled program") > 0, out
        assert out.endswith(f"Verdict: {verdict}\n"), out


def test_explain_names_the_rule_and_the_kernel_agrees(pods):
    node = pods.node
    policy(node, "a", BACK_FROM_FRONT)
    node.apply_converged()
    cases = [  # (from, to, traffic allowed?) as the other tests saw them
        ("front0", f"{BACK.ip}:8080/tcp", True, "policy/shop/back-from-front ingress rule 1"),
        ("front0", f"{BACK.ip}:8080/udp", False, "tier/default default action"),
        ("back1", "back0:8080/tcp", False, "tier/default default action"),
        ("front0", f"{BACK.ip}:8/icmp", False, "tier/default default action"),
        (FRONT.ip, "back1:8080/tcp", True, "profile/kns.shop ingress rule 1"),
    ]
    for src, dst, allowed, ref in cases:
        rc, out, err = node.run("--explain", "--from", src, "--to", dst, "--kernel")
        assert rc == 0, out + err
        assert ref in out and "DISAGREES" not in out and "agrees: NO" not in out, out
        assert out.count("(agrees)") == out.count("compiled program"), out
        assert f"Verdict: {'Allow' if allowed else 'Deny'}" in out, out
    rc, _, err = node.run("--explain", "--from", "nobody", "--to", "back0:1/tcp")
    assert rc == 1 and "'nobody': no WorkloadEndpoint or pod of that name" in err
    # a configuration not applied yet: its program for back0 is not the one
    # loaded, and the kernel line says so instead of running a missing table
    policy(node, "a", BACK_FROM_FRONT.replace("ports: [8080]", "ports: [9090]"))
    rc, out, err = node.run("--explain", "--from", "front0", "--to", f"{BACK.ip}:8080/tcp",
                            "--kernel")  # fmt: skip
    assert rc == 2, out + err
    assert "kernel: program " in out and ", what this configuration compiles, is not loaded: " \
        "the node enforces another configuration here (DISAGREES)" in out, out
    assert "no table" not in out, out
    assert "The loaded programs disagree with the configuration" in out, out


# back0: an ICMP port unreachable quoting a UDP packet front0 never sent.
FORGED_ERROR = """\
import socket, struct, sys

def csum(b):
    b += b"\\0" * (len(b) % 2)
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff

src, dst = socket.inet_aton(sys.argv[1]), socket.inet_aton(sys.argv[2])
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0, src, dst)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
quoted = ip + struct.pack("!HHHH", int(sys.argv[3]), int(sys.argv[4]), 8, 0)
msg = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(msg, (sys.argv[1], 0))
"""


def test_an_icmp_error_about_an_allowed_flow_passes_and_a_forged_one_does_not(pods):
    """front0's ingress policy allows no ICMP. The port unreachable that
    back0's kernel answers to front0's allowed UDP packet is related to that
    flow and passes (the socket learns ECONNREFUSED at once); the same error
    about a flow front0 never sent is judged as ICMP and dropped."""
    node, sb = pods.node, pods.node.sandbox
    policy(node, "front-udp", udp_out_only("front-udp-out", FRONT, BACK, [9999, 7777]))
    node.apply_converged()
    assert not ping(pods, BACK, FRONT.ip)  # ICMP of its own is denied in
    client = [sys.executable, "-c", UDP_CLIENT, BACK.ip]
    sent = sb.exec(sb.pod_ns(FRONT), *client, "9999", "40001", "send", timeout=15)
    assert sent.stdout.strip() == "refused", sent.stdout + sent.stderr

    waiting = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.pod_ns(FRONT)}", *client, "7777", "40002", "wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert waiting.stdout is not None and waiting.stdout.readline().strip() == "ready"
        forged = sb.exec(
            sb.pod_ns(BACK), sys.executable, "-c", FORGED_ERROR, FRONT.ip, BACK.ip, "40002", "7777"
        )
        assert forged.returncode == 0, forged.stderr
        out, err = waiting.communicate(timeout=15)
    finally:
        waiting.kill()
    assert out.strip() == "timeout", out + err

    # The check that the forged error would have reached the socket: with
    # front0's policy gone (its profile allows everything), it does.
    node.remove("policy-front-udp.yaml")
    node.apply_converged()
    waiting = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.pod_ns(FRONT)}", *client, "7777", "40003", "wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert waiting.stdout is not None and waiting.stdout.readline().strip() == "ready"
        forge = (FORGED_ERROR, FRONT.ip, BACK.ip, "40003", "7777")
        assert sb.exec(sb.pod_ns(BACK), sys.executable, "-c", *forge).returncode == 0
        out, err = waiting.communicate(timeout=15)
    finally:
        waiting.kill()
    assert out.strip() == "refused", out + err
