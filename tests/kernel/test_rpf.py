"""bpfEnforceRPF with real traffic: the outside namespace sends to the node
over its data interface (eth0) from sources the node routes in different
ways, and the node hears only those the mode lets through. Strict wants the
route back to leave by eth0, Loose any route to an interface; a source the
node owns, or one it routes into a blackhole, fails both; Disabled checks
nothing. An absent field is Calico's default, Loose. The same check holds on
a host endpoint's interface and on an L3 interface (a TUN device); a route
change reaches it within the second its verdicts are remembered; an
interface that does not forward is not checked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kernel.conftest import PODS
from tests.kernel.test_host import HEP

pytestmark = pytest.mark.kernel

ON_LINK = "192.168.50.2"  # the outside host itself, on eth0's subnet
VIA_DEFAULT = "10.99.0.5"  # the node's default route: out of eth0
VIA_OTHER = "198.51.100.5"  # the node routes it out of another interface
BLACKHOLED = "203.0.113.5"  # the node routes it into a blackhole
NODE_OWN = "172.31.0.1"  # one of the node's own addresses (on that other interface)
SOURCES = (ON_LINK, VIA_DEFAULT, VIA_OTHER, BLACKHOLED, NODE_OWN)
PORT = 9999

# The end of both listeners below: every source heard on socket s until "end".
HEAR = """\
heard = set()
while True:
    data, (src, _) = s.recvfrom(100)
    if data == b"end":
        break
    heard.add(src)
print(" ".join(sorted(heard)), flush=True)
"""

# In the node: every source heard on UDP PORT until the outside's "end".
RECEIVE = f"""\
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {PORT}))
s.settimeout(5)
print("ready", flush=True)
""" + HEAR

# Outside: three datagrams from each source (IP_TRANSPARENT: any source, as
# root), then "end" from the outside host's own address.
SEND = f"""\
import socket, sys
node, own, sources = sys.argv[1], sys.argv[2], sys.argv[3:]
for src in sources:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, 19, 1)
    s.bind((src, 0))
    for _ in range(3):
        s.sendto(b"x", (node, {PORT}))
    s.close()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((own, 0))
s.sendto(b"end", (node, {PORT}))
"""


def routes(node) -> None:
    """The node's routes back to the sources, and a kernel that would deliver
    them all itself (no rp_filter of its own, its own address accepted)."""
    sb = node.sandbox
    for cmd in (
        ["ip", "link", "add", "rpf0", "type", "veth", "peer", "name", "rpf1"],
        ["ip", "link", "set", "rpf0", "up"],
        ["ip", "link", "set", "rpf1", "up"],
        ["ip", "addr", "add", f"{NODE_OWN}/32", "dev", "rpf0"],
        ["ip", "route", "add", "198.51.100.0/24", "dev", "rpf0"],
        ["ip", "route", "add", "blackhole", "203.0.113.0/24"],
        ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
        ["sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=0"],
        ["sysctl", "-qw", "net.ipv4.conf.eth0.accept_local=1"],
    ):
        done = sb.exec(sb.node, *cmd)
        assert done.returncode == 0, (cmd, done.stderr)


def heard(node) -> set[str]:
    sb = node.sandbox
    receiver = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.node}", sys.executable, "-c", RECEIVE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        sent = sb.exec(sb.ext, sys.executable, "-c", SEND, sb.node_ip, sb.ext_ip, *SOURCES)
        assert sent.returncode == 0, sent.stderr
        out, err = receiver.communicate(timeout=10)
        assert receiver.returncode == 0, err
        return set(out.split())
    finally:
        receiver.kill()
        receiver.wait()


def rpf_dropped(node) -> int:
    rc, out, err = node.run("--status", "--json")
    assert rc == 0, out + err
    status = json.loads(out)
    assert "rpf_dropped" not in status["service_nat"]
    return int(status["rpf_dropped"])


def explained_to_pass_on_eth0(node) -> set[str]:
    """The sources `--explain --kernel` says the check lets in on eth0 (for
    a flow to a pod: the check is the same whatever the destination), read
    from the node's routes as the datapath's FIB lookup reads them. The
    node's own address is the node's own flow, which arrives nowhere: no
    check, and a pod's policy does not judge it."""
    passing = set()
    for src in SOURCES:
        rc, out, err = node.run("--explain", "--from", src, "--to", f"{PODS[1].ip}:{PORT}/udp",
                                "--kernel")  # fmt: skip
        assert rc == 0, out + err
        if src == NODE_OWN:
            assert "Reverse-path" not in out and out.endswith("Verdict: Allow\n"), out
            continue
        first = out.splitlines()[0]
        assert first.startswith("Reverse-path check (bpfEnforceRPF "), out
        if ": Allow:" in first or ": Allow if it arrives on eth0," in first:
            passing.add(src)
        else:  # denied on eth0: by the check, before policy, or by arriving elsewhere
            assert ": Deny:" in first or ": Allow if it arrives on rpf0," in first, out
            if ": Deny:" in first:
                assert out.splitlines()[1:] == [
                    "Verdict: Deny (dropped where it arrives, before policy)"
                ]
    return passing


def felix(node, mode: str | None, extra: str = "") -> None:
    node.felix()
    text = (node.config / "felix.yaml").read_text()
    node.write("felix.yaml", text + (f"  bpfEnforceRPF: {mode}\n" if mode else ""))
    if extra:
        node.write("extra.yaml", extra)


def test_each_mode_passes_the_sources_it_should(node):
    routes(node)
    node.wep(PODS[1])  # for --explain: a flow to a pod of the node
    felix(node, "Disabled")
    node.apply_converged()
    assert heard(node) == set(SOURCES)  # the kernel itself delivers every one
    assert rpf_dropped(node) == 0

    felix(node, "Strict")
    rc, out, err = node.run("--plan")
    assert rc == 2 and "rpf: Disabled -> Strict" in out, out + err
    node.apply_converged()
    assert heard(node) == {ON_LINK, VIA_DEFAULT}
    assert explained_to_pass_on_eth0(node) == {ON_LINK, VIA_DEFAULT}
    rc, out, err = node.run("--explain", "--from", VIA_OTHER, "--to", f"{PODS[1].ip}:{PORT}/udp",
                            "--kernel", "--netns", "rcl-test-no-such-ns")  # fmt: skip
    assert rc == 1 and "network namespace 'rcl-test-no-such-ns' does not exist" in err, out + err
    assert not Path("/run/netns/rcl-test-no-such-ns").exists()  # asked, never created
    assert rpf_dropped(node) == 9  # three datagrams from each of three sources
    rc, out, err = node.run("--status")
    assert "Reverse-path check (bpfEnforceRPF): 9 dropped" in out, out + err

    felix(node, "loose")  # any case, as the schema admits
    node.apply_converged()
    assert heard(node) == {ON_LINK, VIA_DEFAULT, VIA_OTHER}
    assert explained_to_pass_on_eth0(node) == {ON_LINK, VIA_DEFAULT, VIA_OTHER}

    felix(node, None)  # Calico's default: Loose, so nothing to change
    rc, out, err = node.run("--plan")
    assert rc == 0 and "No changes." in out, out + err
    assert "bpfEnforceRPF" not in out


def test_a_route_change_reaches_the_check_within_a_second(node):
    """Verdicts are remembered per CPU for a second, not longer: once the
    node routes a source back out of eth0, Strict lets it in."""
    routes(node)
    felix(node, "Strict")
    node.apply_converged()
    assert VIA_OTHER not in heard(node)
    sb = node.sandbox
    done = sb.exec(sb.node, "ip", "route", "replace", "198.51.100.0/24", "via", sb.ext_ip)
    assert done.returncode == 0, done.stderr
    time.sleep(1.5)
    assert VIA_OTHER in heard(node)


def test_an_interface_that_does_not_forward_is_not_checked(node):
    """The kernel makes no input lookup there: rather than drop everything
    (a host endpoint's host may forward nothing, and would be cut off), the
    check passes what it cannot judge."""
    routes(node)
    sb = node.sandbox
    done = sb.exec(sb.node, "sysctl", "-qw", "net.ipv4.conf.eth0.forwarding=0")
    assert done.returncode == 0, done.stderr
    felix(node, "Strict")
    node.apply_converged()
    assert heard(node) == set(SOURCES)
    assert rpf_dropped(node) == 0


def test_a_host_endpoint_interface_is_checked_too(node):
    routes(node)
    felix(node, "Strict", HEP)
    out = node.apply_converged()
    assert "hook=host" in out  # eth0 runs the host endpoint programs
    assert heard(node) == {ON_LINK, VIA_DEFAULT}
    felix(node, "Disabled", HEP)
    node.apply_converged()
    assert heard(node) == set(SOURCES)


# In the node: tun0, an L3 interface (no link layer), and what arrives on it:
# UDP datagrams to the node from each source given, as a tunnel would hand
# them over; then the sources heard on PORT, as RECEIVE prints them.
TUNNEL = f"""\
import fcntl, os, socket, struct, subprocess, sys
node, sources = sys.argv[1], sys.argv[2:]
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", b"tun0", 0x0001 | 0x1000))  # TUNSETIFF: TUN, NO_PI
for cmd in ("link set tun0 up", "route add 100.64.0.0/24 dev tun0"):
    subprocess.run(["ip", *cmd.split()], check=True)
print("up", flush=True)
sys.stdin.readline()  # the reconciler attaches its programs meanwhile
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {PORT}))
s.settimeout(3)

def datagram(src, payload):
    udp = struct.pack("!HHHH", 40000, {PORT}, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(node))
    words = struct.unpack("!10H", ip)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ip[:10] + struct.pack("!H", ~total & 0xFFFF) + ip[12:] + udp

for src in sources:
    os.write(fd, datagram(src, b"x"))
os.write(fd, datagram("100.64.0.9", b"end"))
""" + HEAR


def test_an_l3_interface_is_checked_too(node):
    """A tunnel's packets carry no link layer (bpfL3IfacePattern): checked
    the same way, Strict wanting the route back through the tunnel."""
    sb = node.sandbox
    routes(node)
    tunnel = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.node}", sys.executable, "-c", TUNNEL, sb.node_ip,
         "100.64.0.5", VIA_DEFAULT],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert tunnel.stdout is not None and tunnel.stdin is not None
        assert tunnel.stdout.readline().strip() == "up", tunnel.stderr.read()
        felix(node, "Strict")
        text = (node.config / "felix.yaml").read_text()
        node.write("felix.yaml", text + '  bpfL3IfacePattern: "^tun"\n')
        out = node.apply_converged()
        assert "tc/tun0/ingress" in out, out
        tunnel.stdin.write("go\n")
        tunnel.stdin.flush()
        heard_out, err = tunnel.communicate(timeout=20)
        assert tunnel.returncode == 0, err
        # 100.64.0.5 is routed back through the tunnel; 10.99.0.5 out of eth0
        assert set(heard_out.split()) == {"100.64.0.5"}
    finally:
        tunnel.kill()
        tunnel.wait()
