"""Connect-time load balancing (bpf/connect.c) on loopback, for a client process
moved into a private cgroup v2 child; detached and removed afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from reconciler.kernel.rtnetlink import netns_cookie
from sandbox.nat_stats import read_stat
from tests.kernel.rcl_bcc import BPF_DIR, cflags, flatten, private_pin_dir, skip_unless_kernel
from tests.support import nat_records as nr

pytestmark = pytest.mark.kernel

VIP = IPv4Address("127.1.1.1")
DEAD_VIP = IPv4Address("127.1.1.2")
LOOPBACK = IPv4Address("127.0.0.1")

CLIENT = r"""
import socket, sys
open(sys.argv[1] + "/cgroup.procs", "w").write("0")  # "0": this process
mode, vip, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    if mode == "tcp":
        s = socket.create_connection((vip, port), timeout=3)
        print(s.recv(100).decode())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(b"ping", (vip, port))
        data, (ip, sport) = s.recvfrom(100)
        print(data.decode(), ip, sport)
except OSError as exc:
    print("ERR", exc.errno)
"""


def cgroup2_root() -> Path:
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[2] == "cgroup2":
                return Path(fields[1])
    pytest.skip("no cgroup2 mount")


@dataclass
class Ctlb:
    cgroup: Path
    fds: dict[str, int]

    def frontend(
        self,
        vip: IPv4Address,
        port: int,
        proto: nl.Proto,
        backends: tuple[tuple[IPv4Address, int], ...],
        svc_id: int,
    ) -> None:
        for i, (ip, be_port) in enumerate(backends):
            bpfsys.map_update(
                self.fds[nl.MAP_NAT_BE],
                nr.BackendKey(svc_id, i).encode(),
                nr.Backend(ip, be_port).encode(),
            )
        bpfsys.map_update(
            self.fds[nl.MAP_NAT_FE],
            nr.FrontendKey(vip, port, proto).encode(),
            nr.Frontend(svc_id, len(backends)).encode(),
        )

    def mode(self, mode: nl.CtlbMode, host_netns: int | None = None) -> None:
        """The mode; with host_netns (a cookie's low 32 bits), UDP from that
        network namespace is balanced in TCP mode too."""
        globals_ = nr.NatGlobals(
            ctlb=mode, host_nat=host_netns is not None, host_netns=host_netns or 0
        )
        bpfsys.map_update(self.fds[nl.MAP_NAT_GLOBALS], nl.U32.pack(0), globals_.encode())

    def balanced_udp(self) -> int:
        """How many UDP sends and connects were balanced (rcl_nat_stats)."""
        return read_stat(self.fds[nl.MAP_NAT_STATS], nl.NatStat.CTLB_UDP)

    def client(self, mode: str, vip: IPv4Address, port: int) -> str:
        out = subprocess.run(
            [sys.executable, "-c", CLIENT, str(self.cgroup), mode, str(vip), str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return out.stdout.strip()


@pytest.fixture(scope="module")
def ctlb() -> Iterator[Ctlb]:
    skip_unless_kernel()
    from bcc import BPF, BPFAttachType

    cgroup = cgroup2_root() / f"rcl-test-{uuid.uuid4().hex[:8]}"
    hooks = {
        "rcl_connect4": BPFAttachType.CGROUP_INET4_CONNECT,
        "rcl_sendmsg4": BPFAttachType.CGROUP_UDP4_SENDMSG,
        "rcl_recvmsg4": BPFAttachType.CGROUP_UDP4_RECVMSG,
    }
    with private_pin_dir() as root:
        b = BPF(
            text=flatten(BPF_DIR / "connect.c").encode(),
            cflags=cflags(root / "maps", "-DRCL_CT_BUCKETS=147"),
        )
        cgroup.mkdir()
        cg_fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        attached = []
        fds: dict[str, int] = {}
        try:
            for name, attach_type in hooks.items():
                fn = b.load_func(name.encode(), BPF.CGROUP_SOCK_ADDR, attach_type=attach_type)
                BPF.attach_func(fn, cg_fd, attach_type)
                attached.append((fn, attach_type))
            for name in (nl.MAP_NAT_FE, nl.MAP_NAT_BE, nl.MAP_NAT_GLOBALS, nl.MAP_NAT_STATS):
                fds[name] = bpfsys.obj_get(str(root / "maps" / name))
            yield Ctlb(cgroup, fds)
        finally:
            for fn, attach_type in attached:
                BPF.detach_func(fn, cg_fd, attach_type)
            for fd in fds.values():
                bpfsys.close(fd)
            os.close(cg_fd)
            b.cleanup()
            cgroup.rmdir()


@pytest.fixture
def tcp_server() -> Iterator[int]:
    srv = socket.create_server((str(LOOPBACK), 0))
    srv.settimeout(10)

    def serve() -> None:
        try:
            while True:
                conn, _ = srv.accept()
                with conn:
                    conn.sendall(b"pong")
        except OSError:
            return  # closed by the fixture

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture
def udp_server() -> Iterator[int]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((str(LOOPBACK), 0))
    srv.settimeout(10)

    def serve() -> None:
        try:
            while True:
                data, peer = srv.recvfrom(100)
                srv.sendto(b"pong:" + data, peer)
        except OSError:
            return

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_tcp_connect_goes_to_backend(ctlb: Ctlb, tcp_server: int) -> None:
    ctlb.mode(nl.CtlbMode.TCP)
    ctlb.frontend(VIP, 80, nl.Proto.TCP, ((LOOPBACK, tcp_server),), svc_id=1)
    assert ctlb.client("tcp", VIP, 80) == "pong"


def test_zero_backends_gets_eperm(ctlb: Ctlb) -> None:
    ctlb.mode(nl.CtlbMode.TCP)
    ctlb.frontend(DEAD_VIP, 80, nl.Proto.TCP, (), svc_id=2)
    assert ctlb.client("tcp", DEAD_VIP, 80) == "ERR 1"  # EPERM


def test_disabled_mode_leaves_connect_alone(ctlb: Ctlb, tcp_server: int) -> None:
    ctlb.frontend(VIP, 80, nl.Proto.TCP, ((LOOPBACK, tcp_server),), svc_id=1)
    ctlb.mode(nl.CtlbMode.DISABLED)
    try:
        assert ctlb.client("tcp", VIP, 80) == "ERR 111"  # nothing listens on the VIP
    finally:
        ctlb.mode(nl.CtlbMode.TCP)


def test_udp_request_reply_shows_the_vip(ctlb: Ctlb, udp_server: int) -> None:
    ctlb.frontend(VIP, 1053, nl.Proto.UDP, ((LOOPBACK, udp_server),), svc_id=3)
    ctlb.mode(nl.CtlbMode.ALL)
    try:
        assert ctlb.client("udp", VIP, 1053) == f"pong:ping {VIP} 1053"
    finally:
        ctlb.mode(nl.CtlbMode.TCP)


def test_udp_is_not_balanced_in_tcp_mode(ctlb: Ctlb, udp_server: int) -> None:
    ctlb.frontend(VIP, 1053, nl.Proto.UDP, ((LOOPBACK, udp_server),), svc_id=3)
    ctlb.mode(nl.CtlbMode.TCP)
    # straight to 127.1.1.1:1053 where nothing listens: refused (ICMP) or timeout
    assert ctlb.client("udp", VIP, 1053).startswith("ERR")


def test_host_nat_in_tcp_mode_is_balanced_for_the_nodes_namespace_alone(
    ctlb: Ctlb, udp_server: int
) -> None:
    """TCP mode with the node's namespace named: UDP from a socket in it is
    balanced at connect time and its replies show the VIP; a socket in any
    other namespace (a pod's) is left to tc, as before."""
    ctlb.frontend(VIP, 1053, nl.Proto.UDP, ((LOOPBACK, udp_server),), svc_id=3)
    here = netns_cookie()
    assert here is not None
    try:
        ctlb.mode(nl.CtlbMode.TCP, host_netns=here & 0xFFFFFFFF)
        assert ctlb.client("udp", VIP, 1053) == f"pong:ping {VIP} 1053"
        ctlb.mode(nl.CtlbMode.TCP, host_netns=(here + 1) & 0xFFFFFFFF)  # another namespace's
        before = ctlb.balanced_udp()
        assert ctlb.client("udp", VIP, 1053).startswith("ERR")
        assert ctlb.balanced_udp() == before
    finally:
        ctlb.mode(nl.CtlbMode.TCP)


def test_disabled_mode_still_balances_the_nodes_own_sockets(
    ctlb: Ctlb, tcp_server: int, udp_server: int
) -> None:
    """Mode Disabled with the node's namespace named: its own TCP and UDP
    are balanced (no tc program would see them); other namespaces' are not."""
    ctlb.frontend(VIP, 80, nl.Proto.TCP, ((LOOPBACK, tcp_server),), svc_id=1)
    ctlb.frontend(VIP, 1053, nl.Proto.UDP, ((LOOPBACK, udp_server),), svc_id=3)
    here = netns_cookie()
    assert here is not None
    try:
        ctlb.mode(nl.CtlbMode.DISABLED, host_netns=here & 0xFFFFFFFF)
        assert ctlb.client("tcp", VIP, 80) == "pong"
        assert ctlb.client("udp", VIP, 1053) == f"pong:ping {VIP} 1053"
        ctlb.mode(nl.CtlbMode.DISABLED, host_netns=(here + 1) & 0xFFFFFFFF)
        assert ctlb.client("tcp", VIP, 80) == "ERR 111"  # nothing listens on the VIP
    finally:
        ctlb.mode(nl.CtlbMode.TCP)
