"""External traffic to a backend on another node, masqueraded: a second
node's namespace holds the backend and has no route to the outside client,
so only a flow that leaves with this node's address gets its replies back."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.datapath import conntrack as ct_table
from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from tests.kernel.test_services import BACKENDS, names, svc  # noqa: F401
from tests.support import nat_records as nr

NODE2 = "192.168.60.2"
NODE1_TO_NODE2 = "192.168.60.1"  # this node's address toward node-2: what the backend sees
REMOTE = "10.66.0.5"  # a pod on node-2
EXTERNAL_IP = "10.99.0.7"  # routed to this node by the outside host (10.0.0.0/8)
CLIENT_PY = Path(__file__).parent / "client.py"
MASQ_KEY_SPACE = 2  # rcl_ct_key.pad[0] of masquerade entries (RCL_CT_KEY_MASQ)

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec:
  type: NodePort
  clusterIP: 10.96.0.70
  externalIPs: ["{external_ip}"]
  externalTrafficPolicy: Cluster
  ports:
  - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}}
  - {{name: dns, protocol: UDP, port: 53, targetPort: 8080, nodePort: 30053}}
  - {{name: closed, protocol: UDP, port: 54, targetPort: 9999, nodePort: 30054}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels: {{kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}, {{name: dns, protocol: UDP, port: 8080}},
        {{name: closed, protocol: UDP, port: 9999}}]
endpoints:
{endpoints}"""
ENDPOINT = """\
- {{addresses: ["{ip}"], nodeName: {node}, conditions: {{ready: true}}}}
"""


def _ip(*args: str, ns: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, text=True)


def second_node(s) -> subprocess.Popen[str]:
    """node-2, linked to this node by eth1 (a data interface here), and a pod
    behind it; node-2 has no route to the outside client."""
    sb = s.node.sandbox
    node2, pod = f"{sb.prefix}-node2", f"{sb.prefix}-node2pod"
    for ns in (node2, pod):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    _ip("link", "add", "eth1", "type", "veth", "peer", "name", "n2", ns=sb.node)
    _ip("link", "set", "n2", "netns", node2, ns=sb.node)
    _ip("link", "set", "n2", "name", "eth0", ns=node2)
    _ip("link", "add", "cali-remote", "type", "veth", "peer", "name", "p0", ns=node2)
    _ip("link", "set", "p0", "netns", pod, ns=node2)
    _ip("link", "set", "p0", "name", "eth0", ns=pod)
    _ip("addr", "add", f"{NODE1_TO_NODE2}/24", "dev", "eth1", ns=sb.node)
    _ip("addr", "add", f"{NODE2}/24", "dev", "eth0", ns=node2)
    _ip("addr", "add", f"{REMOTE}/32", "dev", "eth0", ns=pod)
    for ns, dev in ((sb.node, "eth1"), (node2, "eth0"), (node2, "cali-remote"), (pod, "eth0"),
                    (pod, "lo")):  # fmt: skip
        _ip("link", "set", dev, "up", ns=ns)
    _ip("route", "add", f"{REMOTE}/32", "via", NODE2, "dev", "eth1", ns=sb.node)
    _ip("route", "add", f"{REMOTE}/32", "dev", "cali-remote", ns=node2)
    # proxy ARP answers the pod for its gateway where node-2 routes that
    # address out of another interface; still no route to the outside
    _ip("route", "add", "169.254.1.1/32", "dev", "eth0", ns=node2)
    _ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link", ns=pod)
    _ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0", ns=pod)
    for key in ("net.ipv4.ip_forward", "net.ipv4.conf.cali-remote.proxy_arp"):
        subprocess.run(["ip", "netns", "exec", node2, "sysctl", "-qw", f"{key}=1"], check=True)
    subprocess.run(["ip", "netns", "exec", node2, "sysctl", "-qw",
                    "net.ipv4.neigh.cali-remote.proxy_delay=0"], check=True)  # fmt: skip
    proc = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{pod}", sys.executable, "-m", "sandbox.echo",
         "remote", "8080"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    s.servers.append(proc)  # stopped with the others
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def service(s, *local) -> None:
    eps = ENDPOINT.format(ip=REMOTE, node="node-2")
    eps += "".join(ENDPOINT.format(ip=p.ip, node="node-1") for p in local)
    s.node.write("service.yaml", SERVICE.format(external_ip=EXTERNAL_IP, endpoints=eps))


def masq_counts(s) -> tuple[int, int]:
    rc, out, _ = s.node.run("--status", "--json")
    assert rc == 0, out
    nat = json.loads(out)["service_nat"]
    return nat["masq_new"], nat["masq_failed"]


@pytest.fixture
def remote(svc):  # noqa: F811
    svc.start()
    second_node(svc)
    return svc


def test_a_nodeport_reaches_a_backend_on_another_node_masqueraded(remote):
    """TCP and UDP, through the NodePort and an external IP: the backend on
    node-2 sees this node's address and its replies come back through here
    to the client, from the address the client asked."""
    service(remote)
    remote.node.apply_converged()
    sb = remote.node.sandbox
    tcp = remote.request("tcp", sb.node_ip, 30080, 20, ns=sb.ext)
    assert tcp == [f"remote {NODE1_TO_NODE2}"] * 20, tcp
    udp = remote.request("udp", sb.node_ip, 30053, 5, ns=sb.ext)
    assert udp == [f"remote {NODE1_TO_NODE2}"] * 5, udp
    ext = remote.request("tcp", EXTERNAL_IP, 80, 5, ns=sb.ext)
    assert ext == [f"remote {NODE1_TO_NODE2}"] * 5, ext
    new, failed = masq_counts(remote)
    # 25 TCP connections, each a new flow; the UDP client may reuse a port
    assert 25 <= new <= 30 and failed == 0, (new, failed)


def test_only_flows_to_a_backend_elsewhere_are_masqueraded(remote):
    """A backend on this node keeps seeing the real client; a pod of this
    node reaching the service is inside the cluster and is not masqueraded
    (node-2 routes nothing back to it, so its flows to node-2's backend are
    the only ones that fail, as they would without a route between pods)."""
    service(remote, BACKENDS[0])
    remote.node.apply_converged()
    sb = remote.node.sandbox
    replies = remote.request("tcp", sb.node_ip, 30080, 40, ns=sb.ext)
    seen = {r for r in replies}
    assert seen == {f"remote {NODE1_TO_NODE2}", f"back0 {sb.ext_ip}"}, replies
    before = masq_counts(remote)[0]
    # each flow picks its backend at random: ask until one lands on back0
    # (a flow to node-2's backend costs the client's 2 s timeout)
    from_pod: list[str] = []
    while "back0" not in names(from_pod) and len(from_pod) < 30:
        from_pod += remote.request("tcp", sb.node_ip, 30080, 1)
    assert set(names(from_pod)) <= {"back0", "ERR"}, from_pod
    assert "back0" in names(from_pod), from_pod
    assert masq_counts(remote)[0] == before


def test_a_long_connection_keeps_its_masquerade_and_a_second_apply_changes_nothing(remote):
    """One connection held open across a re-apply keeps talking to the same
    backend through the same translated source; the second plan is empty."""
    service(remote)
    remote.node.apply_converged()
    sb = remote.node.sandbox
    holder = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.ext}", sys.executable,
         str(CLIENT_PY),
         "hold", sb.node_ip, "30080"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == f"remote {NODE1_TO_NODE2}"
        rc, out, _ = remote.node.run("--apply")
        assert rc == 0 and "No changes" in out, out
        for word in ("one", "two"):
            holder.stdin.write(word + "\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == f"remote {word}"
    finally:
        holder.kill()
        holder.wait()
    assert masq_counts(remote) == (1, 0)



def test_many_flows_to_one_backend_each_get_a_port_of_their_own(remote):
    """300 connections in a row to the one backend, each still tracked
    (closing) when the next claims its port: some land on a port taken and
    try another; none fails."""
    service(remote)
    remote.node.apply_converged()
    sb = remote.node.sandbox
    replies = remote.request("tcp", sb.node_ip, 30080, 300, ns=sb.ext)
    assert replies == [f"remote {NODE1_TO_NODE2}"] * 300, [r for r in replies if "remote" not in r]
    assert masq_counts(remote) == (300, 0)


# One UDP datagram with the TTL of argv[3]; what the socket hears: the
# reply and the TTL it arrived with, or (IP_RECVERR on, so that soft errors
# are heard too) "refused", "unreachable" or "timeout".
TTL_CLIENT = """\
import errno, socket, sys
IP_RECVERR, IP_RECVTTL = 11, 12
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, int(sys.argv[3]))
s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"hello")
try:
    data, cmsgs, _, _ = s.recvmsg(200, socket.CMSG_SPACE(4))
    ttl = [int.from_bytes(d[:4], sys.byteorder) for _, kind, d in cmsgs if kind == socket.IP_TTL]
    print(data.decode(), f"ttl={ttl[0]}")
except TimeoutError:
    print("timeout")
except OSError as e:
    print({errno.ECONNREFUSED: "refused", errno.EHOSTUNREACH: "unreachable"}.get(e.errno, e))
"""


def test_a_masqueraded_packet_loses_a_hop_and_errors_about_its_flow_reach_the_client(remote):
    """This node forwards a masqueraded packet itself, so it counts the hop:
    a datagram that arrives with TTL 1 is dropped here (counted), one with
    TTL 2 runs out at node-2, whose time exceeded, sent to this node's
    address, reaches the client as an error about the NodePort it asked,
    and TTL 3 is answered. The reply counts both hops back too (it left the
    backend with 64). A closed port on the backend is heard as refused."""
    service(remote)
    remote.node.apply_converged()
    sb = remote.node.sandbox

    def udp(port: int, ttl: int) -> str:
        args = ("-c", TTL_CLIENT, sb.node_ip, str(port), str(ttl))
        return sb.exec(sb.ext, sys.executable, *args).stdout.strip()

    assert udp(30053, 3) == f"remote {NODE1_TO_NODE2} ttl=62"
    assert masq_counts(remote) == (1, 0)
    assert udp(30053, 2) == "unreachable"
    assert udp(30053, 1) == "timeout"
    assert masq_counts(remote) == (2, 1)
    assert udp(30054, 64) == "refused"
    assert masq_counts(remote) == (3, 1)


# Datagrams with DF set (IP_PMTUDISC_DO) of argv[3..] bytes in turn; for
# each: what the socket hears ("remote ..." or an error's name) and the
# path MTU it then knows.
PMTU_CLIENT = """\
import errno, socket, sys
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_RECVERR, IP_MTU = 10, 2, 11, 14
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
for size in sys.argv[3:]:
    try:
        s.send(b"x" * int(size))
        heard = s.recv(2000).decode()
    except TimeoutError:
        heard = "timeout"
    except OSError as e:
        heard = errno.errorcode[e.errno]
    print(size, heard, s.getsockopt(socket.IPPROTO_IP, IP_MTU), flush=True)
"""

def test_a_packet_too_big_for_the_way_to_the_backend_is_answered_fragmentation_needed(remote):
    """The link to node-2 has an MTU of 1200: a datagram of 1300 bytes with
    DF set gets "fragmentation needed" (MTU 1200) back, quoting what the
    client sent, so its socket learns the path MTU and the next one that
    fits is answered; a TCP connection sending more than fits in one
    packet gets through once its path MTU is learnt."""
    service(remote)
    remote.node.apply_converged()
    sb = remote.node.sandbox
    _ip("link", "set", "eth1", "mtu", "1200", ns=sb.node)
    _ip("link", "set", "eth0", "mtu", "1200", ns=f"{sb.prefix}-node2")
    args = ("-c", PMTU_CLIENT, sb.node_ip, "30053", "1300", "1300", "1100")
    heard = sb.exec(sb.ext, sys.executable, *args, timeout=20).stdout.split("\n")[:-1]
    assert heard == [
        "1300 EMSGSIZE 1200",  # the error, heard by recv()
        "1300 EMSGSIZE 1200",  # refused by send() itself: the path is known
        f"1100 remote {NODE1_TO_NODE2} 1200",
    ], heard
    args = (str(CLIENT_PY), "line", sb.node_ip, "30080", "6000")
    done = sb.exec(sb.ext, sys.executable, *args, timeout=20)
    assert done.stdout.strip() == str(len("remote ") + 6000), done.stdout + done.stderr
    new, failed = masq_counts(remote)
    assert failed == 0 and new >= 2, (new, failed)


HOST_ENDPOINTS = """apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node-1-eth0, labels: {role: uplink}}
spec: {node: node-1, interfaceName: eth0, expectedIPs: [192.168.50.1]}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata: {name: node-1-eth1, labels: {role: uplink}}
spec: {node: node-1, interfaceName: eth1, expectedIPs: [192.168.60.1]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: uplinks}
spec:
  selector: role == "uplink"
  applyOnForward: true
  types: [Ingress, Egress]
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]
"""


def test_host_endpoints_judge_a_masqueraded_flow_once_where_it_arrives(remote):
    """Both uplinks are host endpoints whose policy allows forwarded traffic
    to port 8080 in and nothing out. The flow is judged as it arrives; it
    leaves masqueraded through the other endpoint, and its replies come back
    in there, as one flow: neither is judged as traffic of its own."""
    service(remote)
    remote.node.write("hosts.yaml", HOST_ENDPOINTS)
    remote.node.apply_converged()
    sb = remote.node.sandbox
    replies = remote.request("tcp", sb.node_ip, 30080, 10, ns=sb.ext)
    assert replies == [f"remote {NODE1_TO_NODE2}"] * 10, replies
    assert masq_counts(remote) == (10, 0)


# One connection from a fixed source port, closed with a reset (no
# TIME_WAIT holds the port for the next one).
FIXED_PORT_CLIENT = """\
import socket, struct, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.settimeout(3)
s.bind(("", int(sys.argv[3])))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print(s.makefile("rb").readline().decode().strip())
except OSError as e:
    print("ERR", e)
s.close()
"""


def reply_entries(root: str) -> list[tuple[int, int]]:
    """(index, version) of every masquerade reply entry in the node's conntrack."""
    fd = bpfsys.obj_get(f"{root}/maps/{nl.MAP_CT}")
    try:
        return [
            (index, ver)
            for key, (index, ver, value) in ct_table.entries(fd).items()
            if key[13] == MASQ_KEY_SPACE and nr.CtEntry.decode(value).type == nl.CtType.MASQ_REV
        ]
    finally:
        bpfsys.close(fd)


def test_a_syn_writes_back_the_reply_entry_its_flow_lost(remote):
    """A full bucket evicts one entry, not its pair: a flow whose replies'
    entry is gone gets it back from its next SYN (the same client port
    connecting again), through the same translated source."""
    service(remote)
    remote.node.apply_converged()
    sb = remote.node.sandbox

    def connect() -> str:
        args = ("-c", FIXED_PORT_CLIENT, sb.node_ip, "30080", "45678")
        return sb.exec(sb.ext, sys.executable, *args).stdout.strip()

    assert connect() == f"remote {NODE1_TO_NODE2}"
    (lost,) = reply_entries(sb.bpffs_root)
    (kill_pin,) = glob.glob(f"{sb.bpffs_root}/progs/tc-*/rcl_ct_kill_slot")
    kill_fd = bpfsys.obj_get(kill_pin)
    try:
        assert ct_table.kill(kill_fd, *lost)
    finally:
        bpfsys.close(kill_fd)
    assert reply_entries(sb.bpffs_root) == []
    assert connect() == f"remote {NODE1_TO_NODE2}"
    assert len(reply_entries(sb.bpffs_root)) == 1
    assert masq_counts(remote) == (1, 0)  # one flow, one port: claimed once
