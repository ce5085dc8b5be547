"""Services from Git served by our BPF NAT, end to end with real traffic: ClusterIP,
NodePort, session affinity, hairpin, backends leaving, and conntrack across layouts."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.datapath.maps import codecs as entries
from reconciler.datapath.maps import nat_types as nl
from reconciler.plan.address import Address
from sandbox.nat_stats import pinned_stat
from sandbox.netns import Pod
from tests.kernel.conftest import PODS, bpftool_dump

HERE = Path(__file__).resolve().parent
CLIENT = PODS[0]
BACKENDS = (PODS[1], Pod("back1", "10.65.0.21"), Pod("back2", "10.65.0.22"))
VIP = "10.96.0.50"

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: {type}
  clusterIP: {vip}
  sessionAffinity: {affinity}
  externalTrafficPolicy: {etp}
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 8080
{nodeport}  - name: dns
    protocol: UDP
    port: 53
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  protocol: TCP
  port: 8080
- name: dns
  protocol: UDP
  port: 8080
endpoints:
{endpoints}"""

ENDPOINT = """\
- addresses: ["{ip}"]
  nodeName: {node}
  conditions: {conditions}
"""
READY = "{ready: true}"
TERMINATING = "{ready: false, serving: true, terminating: true}"


class Services:
    def __init__(self, node):
        self.node = node
        self.servers: list[subprocess.Popen[str]] = []

    def start(self, ctlb: str = "Disabled") -> None:
        sb = self.node.sandbox
        for pod in BACKENDS[1:]:
            sb.add_pod(pod)
        for pod in BACKENDS:
            self.serve(pod)
        self.node.felix()
        self.node.write("felix.yaml", self._felix(ctlb))
        self.node.wep(CLIENT)
        for pod in BACKENDS:
            self.node.wep(pod)

    def serve(self, pod: Pod) -> None:
        """The echo server (sandbox.echo) on port 8080 in a pod."""
        proc = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{self.node.sandbox.pod_ns(pod)}",
                sys.executable,
                "-m",
                "sandbox.echo",
                pod.name,
                "8080",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def _felix(self, ctlb: str) -> str:
        return f"""\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  bpfEnabled: true
  bpfDataIfacePattern: "^eth"
  bpfConnectTimeLoadBalancing: {ctlb}
  bpfMapSizeConntrack: 16384
  bpfMapSizeNATAffinity: 4096
"""

    def service(
        self,
        backends=BACKENDS,
        *,
        remote: tuple[Pod, ...] = (),
        terminating: tuple[Pod, ...] = (),
        type_: str = "ClusterIP",
        affinity: str = "None",
        etp: str = "Cluster",
        nodeport: int | None = None,
    ) -> None:
        eps = "".join(
            ENDPOINT.format(
                ip=p.ip, node="node-1", conditions=TERMINATING if p in terminating else READY
            )
            for p in backends
        )
        eps += "".join(ENDPOINT.format(ip=p.ip, node="node-2", conditions=READY) for p in remote)
        np_line = f"    nodePort: {nodeport}\n" if nodeport else ""
        self.node.write(
            "service.yaml",
            SERVICE.format(
                type=type_,
                vip=VIP,
                affinity=affinity,
                etp=etp,
                nodeport=np_line,
                endpoints=eps or "[]\n",
            ),
        )

    def request(
        self,
        proto: str,
        host: str,
        port: int,
        count: int = 1,
        *,
        ns: str | None = None,
        in_cgroup: bool = False,
    ) -> list[str]:
        sb = self.node.sandbox
        netns = ns or sb.pod_ns(CLIENT)
        cmd = (sys.executable, str(HERE / "client.py"), proto, host, str(port), str(count))
        run = sb.exec_in_cgroup if in_cgroup else sb.exec
        out = run(netns, *cmd, timeout=30)
        return out.stdout.split("\n")[:-1]

    def stop(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()


@pytest.fixture
def svc(node):
    s = Services(node)
    try:
        yield s
    finally:
        s.stop()


def names(replies: list[str]) -> collections.Counter[str]:
    return collections.Counter(r.split()[0] for r in replies)


@pytest.mark.parametrize(
    "ctlb,in_cgroup", [("Disabled", False), ("Enabled", True)], ids=["tc-nat", "connect-time"]
)
def test_clusterip_tcp_and_udp_reach_backends_and_spread(svc, ctlb, in_cgroup):
    svc.start(ctlb)
    svc.service()
    rc, out, _ = svc.node.run("--plan")
    assert rc == 2
    assert f"+ map/rcl_nat_fe/{VIP}:80/tcp" in out and f"nat/{VIP}:53/udp backend 2" in out
    svc.node.apply_converged()
    tcp = svc.request("tcp", VIP, 80, 30, in_cgroup=in_cgroup)
    assert set(names(tcp)) == {"front0", "back0", "back1", "back2"} - {"front0"}, tcp
    # the backend sees the client's own address: no SNAT on the way in
    assert {r.split()[1] for r in tcp} == {CLIENT.ip}
    udp = svc.request("udp", VIP, 53, 30, in_cgroup=in_cgroup)
    assert set(names(udp)) == {"back0", "back1", "back2"}, udp


@pytest.mark.parametrize("ctlb", ["TCP", "Disabled"])
def test_host_networked_clients_reach_services_in_every_mode(svc, ctlb):
    """With connect-time LB for TCP only (Calico's default) or none, the
    node's own TCP and UDP to a ClusterIP are balanced at connect time
    (bpfHostNetworkedNATWithoutCTLB, Enabled by default); a pod's UDP, and
    in mode Disabled its TCP too, still by tc. With the field Disabled in
    mode TCP, the node's UDP goes to the VIP itself, which nothing answers;
    in mode Disabled the field is forced on, as Calico does, and the plan
    says so."""
    svc.start(ctlb)
    svc.service()
    svc.node.apply_converged()
    sb = svc.node.sandbox
    served = {"back0", "back1", "back2"}

    def balanced_at_connect() -> int:
        return sum(
            pinned_stat(sb.bpffs_root, which)
            for which in (nl.NatStat.CTLB_TCP, nl.NatStat.CTLB_UDP)
        )

    before = balanced_at_connect()
    for proto, port in (("udp", 53), ("tcp", 80)):
        host = svc.request(proto, VIP, port, 5, ns=sb.node, in_cgroup=True)
        assert set(names(host)) <= served and len(host) == 5, host
    assert balanced_at_connect() == before + 10
    pod = svc.request("udp", VIP, 53, 5, in_cgroup=True)
    assert set(names(pod)) <= served and len(pod) == 5, pod
    pod = svc.request("tcp", VIP, 80, 5, in_cgroup=True)
    assert set(names(pod)) <= served and len(pod) == 5, pod
    tcp_by_pods = 5 if ctlb == "TCP" else 0
    assert balanced_at_connect() == before + 10 + tcp_by_pods  # the pod's UDP: tc NAT

    svc.node.write("felix.yaml", svc._felix(ctlb).replace(
        "  bpfEnabled: true\n", "  bpfEnabled: true\n  bpfHostNetworkedNATWithoutCTLB: Disabled\n"
    ))  # fmt: skip
    rc, out, err = svc.node.run("--plan")
    if ctlb == "Disabled":
        assert rc == 0 and "acting as Enabled, as Calico does" in out + err, out + err
        host = svc.request("udp", VIP, 53, 1, ns=sb.node, in_cgroup=True)
        assert set(names(host)) <= served and len(host) == 1, host
    else:
        assert rc == 2 and "rcl_nat_globals/0" in out and "host_nat" in out, out
        svc.node.apply_converged()
        assert svc.request("udp", VIP, 53, 1, ns=sb.node, in_cgroup=True) == ["ERR TIMEOUT"]
    pod = svc.request("udp", VIP, 53, 3, in_cgroup=True)
    assert set(names(pod)) <= served and len(pod) == 3, pod


def test_removed_backend_gets_no_new_connections_and_others_survive(svc):
    svc.start()
    svc.service()
    svc.node.apply_converged()
    sb = svc.node.sandbox
    holder = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{sb.pod_ns(CLIENT)}",
            sys.executable,
            str(HERE / "client.py"),
            "hold",
            VIP,
            "80",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        kept = holder.stdout.readline().split()[0]
        gone = next(p for p in BACKENDS if p.name != kept)
        svc.service(tuple(p for p in BACKENDS if p is not gone))
        rc, out, _ = svc.node.run("--plan")
        assert rc == 2 and "- map/rcl_nat_be/" in out
        svc.node.apply_converged()
        assert gone.name not in names(svc.request("tcp", VIP, 80, 30))
        holder.stdin.write("still there?\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == f"{kept} still there?"
    finally:
        holder.kill()
        holder.wait()


def test_nodeport_from_outside_and_etp_local_keeps_source(svc):
    svc.start()
    # back1 is "on node-2": with externalTrafficPolicy Local only back0 may serve
    svc.service(
        (BACKENDS[0],), remote=(BACKENDS[1],), type_="NodePort", etp="Local", nodeport=30080
    )
    svc.node.apply_converged()
    sb = svc.node.sandbox
    replies = svc.request("tcp", sb.node_ip, 30080, 20, ns=sb.ext)
    assert names(replies) == {"back0": 20}, replies
    assert {r.split()[1] for r in replies} == {sb.ext_ip}  # the real client address
    # A pod of this node and the node itself are inside the cluster: as
    # kube-proxy short-circuits them, they reach every endpoint (in tc, and
    # at connect time).
    from_pod = svc.request("tcp", sb.node_ip, 30080, 30)
    from_node = svc.request("tcp", sb.node_ip, 30080, 30, ns=sb.node, in_cgroup=True)
    for replies in (from_pod, from_node):
        assert set(names(replies)) == {"back0", "back1"}, replies


LB_IP = "10.99.0.1"  # routed to the node from the outside (sandbox.netns: 10.0.0.0/8)
RANGED = """\
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: shop}}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.60
  loadBalancerSourceRanges: {ranges}
  ports:
  - {{name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30090}}
status:
  loadBalancer:
    ingress: [{{ip: {lb}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: lb-abc
  namespace: shop
  labels: {{kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- {{addresses: ["{backend}"], nodeName: node-1, conditions: {{ready: true}}}}
"""


def test_load_balancer_source_ranges_admit_their_sources_alone(svc):
    """A load balancer IP takes new connections from its Service's
    loadBalancerSourceRanges alone, from outside and from pods (a pod's
    socket in the node's cgroup too: it is not balanced at connect time);
    the cluster IP and NodePort of the same Service stay open to all."""
    svc.start(ctlb="TCP")
    sb = svc.node.sandbox

    def ranged(ranges: list[str]) -> None:
        text = RANGED.format(ranges=json.dumps(ranges), lb=LB_IP, backend=BACKENDS[0].ip)
        svc.node.write("service.yaml", text)
        svc.node.apply_converged()

    def denied() -> int:
        rc, out, _ = svc.node.run("--status", "--json")
        assert rc == 0, out
        return json.loads(out)["service_nat"]["src_denied"]

    ranged([f"{sb.ext_ip}/32"])
    assert names(svc.request("tcp", LB_IP, 80, 3, ns=sb.ext)) == {"back0": 3}
    before = denied()
    assert svc.request("tcp", LB_IP, 80, 1, in_cgroup=True) == ["ERR TIMEOUT"]
    assert denied() > before  # the SYN and its retransmits
    assert names(svc.request("tcp", "10.96.0.60", 80, 2, in_cgroup=True)) == {"back0": 2}
    assert names(svc.request("tcp", sb.node_ip, 30090, 2, ns=sb.ext)) == {"back0": 2}

    ranged(["10.64.0.0/10"])  # the pods', not the outside client's
    assert svc.request("tcp", LB_IP, 80, 1, ns=sb.ext) == ["ERR TIMEOUT"]
    assert names(svc.request("tcp", LB_IP, 80, 2, in_cgroup=True)) == {"back0": 2}


def test_terminating_local_pod_serves_etp_local_while_cluster_traffic_avoids_it(svc):
    """A rolling update on this node: its only pod is terminating but still
    serving, ready pods run elsewhere. NodePort with externalTrafficPolicy
    Local keeps answering from the local pod instead of dropping (KEP-1669);
    the ClusterIP (cluster policy) uses only the ready pods."""
    svc.start()
    svc.service(
        (BACKENDS[0],),
        remote=(BACKENDS[1], BACKENDS[2]),
        terminating=(BACKENDS[0],),
        type_="NodePort",
        etp="Local",
        nodeport=30080,
    )
    svc.node.apply_converged()
    sb = svc.node.sandbox
    assert names(svc.request("tcp", sb.node_ip, 30080, 10, ns=sb.ext)) == {"back0": 10}
    assert set(names(svc.request("tcp", VIP, 80, 30))) == {"back1", "back2"}
    # its replacement is ready: one list again, the local pod serves both
    svc.service(
        (BACKENDS[0],), remote=(BACKENDS[1],), type_="NodePort", etp="Local", nodeport=30080
    )
    svc.node.apply_converged()
    assert names(svc.request("tcp", sb.node_ip, 30080, 10, ns=sb.ext)) == {"back0": 10}
    assert set(names(svc.request("tcp", VIP, 80, 30))) == {"back0", "back1"}


def test_a_pod_reaches_itself_through_its_service(svc):
    """Hairpin on the tc path (connect-time LB off): the service's only
    backend is the client pod itself. It sees the VIP as its peer, as
    kube-proxy's masquerade would show it a node address, and gets replies."""
    svc.start()  # connect-time LB disabled: the tc programs do all the NAT
    svc.serve(CLIENT)
    svc.service((CLIENT,))
    svc.node.apply_converged()
    for proto, port in (("tcp", 80), ("udp", 53)):
        replies = svc.request(proto, VIP, port, 5)
        assert replies == [f"{CLIENT.name} {VIP}"] * 5, (proto, replies)
    # with a second backend: flows to itself show the VIP, flows to the other
    # backend keep the client's own address
    svc.service((CLIENT, BACKENDS[0]))
    svc.node.apply_converged()
    replies = svc.request("tcp", VIP, 80, 20)
    assert set(names(replies)) == {CLIENT.name, "back0"}
    seen = {name: {r.split()[1] for r in replies if r.startswith(name)} for name in names(replies)}
    assert seen == {CLIENT.name: {VIP}, "back0": {CLIENT.ip}}


def test_session_affinity_pins_a_client(svc):
    svc.start()
    svc.service(affinity="ClientIP")
    svc.node.apply_converged()
    assert len(names(svc.request("tcp", VIP, 80, 20))) == 1


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cached"])
def test_hand_edited_nat_entry_is_drift(svc, cached, tmp_path, monkeypatch):
    """With caches, the apply records how to recognise the kernel's NAT tables
    (the dumps its plan read, and the keys it wrote) and a plan that finds
    them so compares nothing: a hand edit changes the bytes, so it must still
    be found."""
    if cached:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        svc.node.cached = True
    svc.start()
    svc.service()
    svc.node.apply_converged()
    if cached:
        import marshal

        (dumps,) = (tmp_path / "cache").rglob("applied.tables")
        state, tables = marshal.loads(dumps.read_bytes())
        assert state in (dumps.parent / "applied").read_text()
        assert {"rcl_nat_fe", "rcl_nat_be"} <= set(tables)  # dumps recorded
    pin = Path(svc.node.sandbox.bpffs_root) / "maps" / "rcl_nat_fe"
    raw = json.loads(
        subprocess.run(
            ["bpftool", "-j", "map", "dump", "pinned", str(pin)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    entry = raw[0]
    value = [int(b, 16) for b in entry["value"]]
    value[4] = 0  # backend count: as if someone zeroed it by hand
    subprocess.run(
        [
            "bpftool",
            "map",
            "update",
            "pinned",
            str(pin),
            "key",
            "hex",
            *entry["key"],
            "value",
            "hex",
            *[f"{b:02x}" for b in value],
        ],
        check=True,
    )
    rc, out, _ = svc.node.run("--plan")
    assert rc == 2 and "~ map/rcl_nat_fe/" in out and "count: 0 -> 3" in out
    svc.node.apply_converged()


def ct_backends(node) -> set[str]:
    """Backend addresses named by conntrack entries, as bpftool reads them."""
    pin = Path(node.sandbox.bpffs_root) / "maps" / "rcl_ct"
    # struct rcl_ct_bucket: 7 header words (a 32-bit version: 0 unused, odd
    # being written; a tag; a state, 0 when removed), a spare word, then 7
    # 64-byte slots: the key, then struct rcl_ct_val, whose be_ip sits at 28
    # in network order
    found = set()
    for _, bucket in bpftool_dump(pin):
        for way in range(7):
            ver = int.from_bytes(bucket[way * 8 : way * 8 + 4], "little")
            state = bucket[way * 8 + 5]
            slot = bucket[64 + way * 64 : 128 + way * 64]
            # service entries only (type 1, 2 at 36), not the flows policy allowed
            if ver and ver % 2 == 0 and state and slot[16 + 36] in (1, 2):
                found.add(".".join(str(b) for b in slot[16 + 28 : 16 + 32]))
    return found


def test_conntrack_of_a_departed_backend_is_cleaned(svc):
    svc.start()
    svc.service()
    svc.node.apply_converged()
    svc.request("tcp", VIP, 80, 30)
    assert ct_backends(svc.node) == {p.ip for p in BACKENDS}
    svc.service(BACKENDS[:2])
    svc.node.apply_converged()
    assert BACKENDS[2].ip not in ct_backends(svc.node)


@pytest.mark.parametrize(
    "ctlb,where", [("Enabled", "pod"), ("TCP", "node")], ids=["all-udp", "host-udp"]
)
def test_connected_udp_socket_to_a_departed_backend_is_destroyed(svc, ctlb, where):
    """Where connect-time LB covers UDP (everywhere, or the node's own
    sockets in TCP mode), a socket connected to a backend that leaves is
    destroyed."""
    svc.start(ctlb=ctlb)
    svc.service()
    svc.node.apply_converged()
    sb = svc.node.sandbox
    netns = sb.pod_ns(CLIENT) if where == "pod" else sb.node
    script = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
        f"s.connect(('{VIP}', 53)); s.send(b'x'); print(s.recv(100).decode(), flush=True)\n"
        "sys.stdin.readline()\n"
        "try:\n    s.send(b'x'); print('reply', s.recv(100).decode())\n"
        "except OSError as e:\n    print('error', e.errno)\n"
    )
    proc = sb.spawn_in_cgroup(netns, sys.executable, "-c", script)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()[0]
        # its backend leaves: the socket must not keep talking to it forever
        svc.service(tuple(p for p in BACKENDS if p.name != first))
        rc, out, err = svc.node.run("--apply", "--json")
        assert rc == 0, out + err
        doc = json.loads(out)
        results = {r["address"]: r["result"] for r in doc["results"]}
        assert results["sockets"] == "destroyed 1 UDP sockets connected to departed backends"
        # the record counts the plan's changes, not the clean-up after them
        record = json.loads((svc.node.state / "applied.json").read_text())
        assert record["changes_applied"] == len(doc["plan"]["changes"]) < len(doc["results"])
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        # the application learns its socket is gone instead of sending into silence:
        # the destroyed socket is disconnected (EDESTADDRREQ on send, ECONNABORTED on recv)
        assert proc.stdout.readline().strip() in ("error 89", "error 103")
    finally:
        proc.kill()
        proc.wait()


def test_map_resize_is_a_replace_with_entries_migrated(svc):
    svc.start()
    svc.service()
    svc.node.apply_converged()
    felix = (svc.node.config / "felix.yaml").read_text()
    svc.node.write("felix.yaml", felix + "  bpfMapSizeNATFrontend: 1024\n")
    rc, out, _ = svc.node.run("--plan")
    assert rc == 2
    assert "-/+ map/rcl_nat_fe" in out and "max_entries: 65536 -> 1024" in out
    svc.node.apply_converged()
    info = json.loads(
        subprocess.run(
            [
                "bpftool",
                "-j",
                "map",
                "show",
                "pinned",
                str(Path(svc.node.sandbox.bpffs_root) / "maps" / "rcl_nat_fe"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["max_entries"] == 1024
    assert set(names(svc.request("tcp", VIP, 80, 20))) <= {"back0", "back1", "back2"}
    assert len(names(svc.request("tcp", VIP, 80, 20))) > 1


def test_conntrack_resize_carries_the_entries_to_their_new_slots(svc):
    """A conntrack table of another size hashes keys to other slots: the
    migration re-places every entry where the new programs will look."""
    from reconciler.datapath import conntrack as ct_table
    from reconciler.kernel import bpf as bpfsys

    svc.start()
    svc.service()
    svc.node.apply_converged()
    svc.request("tcp", VIP, 80, 30)
    pin = str(Path(svc.node.sandbox.bpffs_root) / "maps" / "rcl_ct")

    def entries() -> dict:
        fd = bpfsys.obj_get(pin)
        try:
            return {k: v for k, (_, _, v) in ct_table.entries(fd).items()}
        finally:
            bpfsys.close(fd)

    # the connections' last packets (their closing handshakes) still move
    # entries after the replies: compare the table once it stands still
    before, now = entries(), None
    for _ in range(50):
        time.sleep(0.1)
        now = entries()
        if now == before:
            break
        before = now
    assert before and now == before
    felix = (svc.node.config / "felix.yaml").read_text()
    smaller = felix.replace("bpfMapSizeConntrack: 16384", "bpfMapSizeConntrack: 3000")
    svc.node.write("felix.yaml", smaller)
    rc, out, _ = svc.node.run("--plan")
    # buckets of 7: 16,384 entries need 2,341 of them, 3,000 need 429
    assert rc == 2 and "-/+ map/rcl_ct" in out and "max_entries: 2341 -> 429" in out
    svc.node.apply_converged()
    fd = bpfsys.obj_get(pin)
    try:
        assert bpfsys.map_info(fd).max_entries == 429
        after = ct_table.entries(fd)
    finally:
        bpfsys.close(fd)
    assert {k: v for k, (_, _, v) in after.items()} == before
    assert all(i // ct_table.WAYS == ct_table.bucket(k, 429) for k, (i, _, _) in after.items())
    assert set(names(svc.request("tcp", VIP, 80, 20))) <= {"back0", "back1", "back2"}


def _conntrack_in_another_layout(kind: str, key, value, size: int) -> tuple[int, str]:
    """A conntrack map in a layout the programs do not use, holding
    key -> value, and how a plan describes its layout."""
    import struct

    from reconciler.datapath import conntrack as ct_table
    from reconciler.datapath.maps import nat_types as nl
    from reconciler.kernel import bpf as bpfsys

    if kind == "lru":  # the kernel LRU hash map, at the same size
        fd = bpfsys.map_create(9, "rcl_ct", nl.CT_KEY.size, nl.CT_VAL.size, size)
        bpfsys.map_update(fd, key.encode(), value.encode())
        return fd, "40-byte values"
    # the 4-way table of 64-byte slots, each with a 64-bit version
    slot = ct_table.LEGACY_SLOT.pack(2, *struct.unpack("=QQ", key.encode()), value.encode())
    fd = bpfsys.map_create(2, "rcl_ct", 4, len(slot), 16384, ct_table.MMAPABLE)
    bpfsys.map_update(fd, nl.U32.pack(1234), slot)
    return fd, "64-byte values"


@pytest.mark.parametrize("kind", ["lru", "slots"])
def test_conntrack_in_another_layout_is_migrated_into_buckets(svc, kind):
    """A node whose conntrack is in a layout the programs do not use (a
    kernel LRU map, or a 4-way slot table): the plan replaces it and the
    entries move into the bucket table, where the datapath finds them."""
    from ipaddress import IPv4Address

    from reconciler.datapath import conntrack as ct_table
    from reconciler.datapath.maps import nat_types as nl
    from reconciler.kernel import bpf as bpfsys
    from tests.support import nat_records as nr

    svc.start()
    svc.service()
    svc.node.apply_converged()
    pin = Path(svc.node.sandbox.bpffs_root) / "maps" / "rcl_ct"
    fd = bpfsys.obj_get(str(pin))
    size = bpfsys.map_info(fd).max_entries
    bpfsys.close(fd)
    key = nr.CtKey(IPv4Address("10.64.0.9"), IPv4Address(VIP), 40000, 80, nl.Proto.TCP)
    value = nr.CtEntry(
        1, time.monotonic_ns(), 7, 0, IPv4Address(VIP), IPv4Address(BACKENDS[0].ip), 80, 8080,
        nl.CtType.FORWARD, nl.CtFlag.SYN | nl.CtFlag.EST,
    )  # fmt: skip
    old, layout = _conntrack_in_another_layout(kind, key, value, size)
    try:
        pin.unlink()
        bpfsys.obj_pin(old, str(pin))
    finally:
        bpfsys.close(old)
    rc, out, _ = svc.node.run("--plan")
    assert rc == 2 and "-/+ map/rcl_ct" in out and layout in out
    svc.node.apply_converged()
    fd = bpfsys.obj_get(str(pin))
    try:
        assert bpfsys.map_info(fd).value_size == ct_table.BUCKET
        moved = ct_table.entries(fd)
    finally:
        bpfsys.close(fd)
    assert nr.CtEntry.decode(moved[key.encode()][2]) == value
    assert set(names(svc.request("tcp", VIP, 80, 10))) <= {"back0", "back1", "back2"}


def test_map_overflow_is_a_plan_time_error_and_changes_nothing(svc):
    svc.start()
    felix = (svc.node.config / "felix.yaml").read_text()
    svc.node.write("felix.yaml", felix + "  bpfMapSizeNATBackend: 2\n")
    svc.service()
    rc, out, err = svc.node.run("--apply")
    assert rc == 1
    # told at the field, before anything is compiled
    assert "felix.yaml:11: FelixConfiguration/default: spec.bpfMapSizeNATBackend: " in err, err
    assert "2 is too small for 6 backends" in err and "nothing was changed" in err, err
    assert not (Path(svc.node.sandbox.bpffs_root) / "maps").exists()


def test_one_changed_endpoint_writes_only_its_entry(svc):
    svc.start()
    svc.service()
    svc.node.apply_converged()
    moved = Pod("back2", "10.65.0.23")  # same pod name, new address: one backend entry changes
    svc.service((*BACKENDS[:2], moved))
    rc, out, err = svc.node.run("--apply", "--json")
    assert rc == 0, out + err
    written = [r["address"] for r in json.loads(out)["results"] if r["address"].startswith("map/")]
    assert len(written) == 2  # the TCP and the UDP port's backend 2, nothing else
    assert all(a.startswith("map/rcl_nat_be/") and a.endswith("/2") for a in written)


def test_status_counts_service_entries(svc):
    svc.start()
    svc.node.apply_converged()

    def entries():
        # per-interface counter entries come and go with any packet: leave them out
        rc, out, _ = svc.node.run("--status", "--json")
        status = json.loads(out)
        return status["owned"]["entry"] - len(status["counters"])

    before = entries()
    svc.service()
    svc.node.apply_converged()
    assert entries() - before == 2 + 6  # two frontends, three backends per port


def test_verify_reads_back_the_table_entries_the_apply_wrote(svc, monkeypatch):
    """Verification after apply checks the written NAT entries in the kernel
    itself: one overwritten behind apply's back makes the apply fail, named."""
    from reconciler.engine import reconcile as pipeline
    from reconciler.kernel import bpf as bpfsys

    svc.start()
    svc.service()
    svc.node.apply_converged()
    moved = Pod("back2", "10.65.0.23")
    svc.service((*BACKENDS[:2], moved))
    real_execute = pipeline.execute
    clobbered: list[str] = []

    def execute_then_clobber(plan, target, backends=None, udp_connected=True):
        results = real_execute(plan, target, backends, udp_connected)
        change = next(c for c in plan.changes if c.address.startswith("map/rcl_nat_be/"))
        address = Address.parse(change.address)
        key, value = entries.encode(address.map, address.key, change.after or {})
        fd = bpfsys.obj_get(f"{target.bpffs_root}/maps/rcl_nat_be")
        try:
            bpfsys.map_update(fd, key, bytes(len(value)))  # zeroes: ip 0.0.0.0, port 0
        finally:
            bpfsys.close(fd)
        clobbered.append(change.address)
        return results

    monkeypatch.setattr(pipeline, "execute", execute_then_clobber)
    rc, out, err = svc.node.run("--apply")
    assert rc == 1
    assert "not converged after apply" in err
    assert clobbered and clobbered[0] in err
    monkeypatch.undo()
    svc.node.apply_converged()  # the next apply repairs it


# What a UDP socket's next recv() says, printed: data, refused (an ICMP
# error reached it) or timeout.
RECV_OUTCOME = """\
try:
    s.recv(100)
    print("data")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("timeout")
"""

# A connected UDP socket: argv DST PORT LOCAL_PORT (0: any) send|wait. It
# sends one datagram, or says "ready" and waits; then prints RECV_OUTCOME.
UDP_CLIENT = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[3])))
s.connect((sys.argv[1], int(sys.argv[2])))
s.settimeout(3)
if sys.argv[4] == "send":
    s.send(b"x")
else:
    print("ready", flush=True)
""" + RECV_OUTCOME


def udp_out_only(name: str, src: Pod, dst: Pod, ports: list[int]) -> str:
    """A NetworkPolicy on `src`: UDP out to `dst` on `ports`, and in only
    TCP 1234 (no ICMP of any kind)."""
    return f"""\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: app == "{src.name}"
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    destination: {{ports: [1234]}}
  egress:
  - action: Allow
    protocol: UDP
    destination: {{selector: app == "{dst.name}", ports: {ports}}}
"""


def test_an_icmp_error_from_a_backend_reaches_the_client_as_the_vips(svc):
    """The backend's port unreachable quotes the packet NAT sent it (to the
    backend's address and port); the client's socket sent to the VIP. NAT
    turns the error back into one about the VIP, so the socket hears of it
    at once instead of waiting for its timeout."""
    node, sb = svc.node, svc.node.sandbox
    node.felix()
    node.write("felix.yaml", svc._felix("Disabled"))
    closed = BACKENDS[0]  # nothing listens in it: every UDP packet is answered with an error
    for pod in (CLIENT, closed):
        node.wep(pod)
    svc.service(backends=(closed,))
    node.apply_converged()

    def answer(dst: str, port: str) -> str:
        done = sb.exec(sb.pod_ns(CLIENT), sys.executable, "-c", UDP_CLIENT, dst, port, "0",
                       "send", timeout=15)  # fmt: skip
        return done.stdout.strip() or done.stderr

    assert answer(VIP, "53") == "refused"
    assert answer(closed.ip, "8080") == "refused"  # no NAT: the error needs no rewriting
    # Under a client policy that lets no ICMP in, the translated error is
    # still related to the flow the client's egress policy allowed.
    node.write("policy-client.yaml", udp_out_only("client-udp-out", CLIENT, closed, [8080]))
    node.apply_converged()
    assert answer(VIP, "53") == "refused"
    assert answer(closed.ip, "8080") == "refused"


# A UDP server that answers its first datagram late, after the client has
# gone: argv PORT. It says "ready", takes one datagram, connects to its
# sender, waits, sends a reply (which finds no socket there), and prints
# what its next recv() says: refused (the client's port unreachable reached
# it), data or timeout.
LATE_SERVER = """\
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", int(sys.argv[1])))
print("ready", flush=True)
_, peer = s.recvfrom(100)
s.connect(peer)
time.sleep(0.5)
s.send(b"late")
s.settimeout(3)
""" + RECV_OUTCOME

# One datagram from a socket that closes at once: argv DST PORT.
SEND_AND_GO = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
s.close()
"""

UDP_NODEPORT = """\
apiVersion: v1
kind: Service
metadata: {{name: dns, namespace: shop}}
spec:
  type: NodePort
  clusterIP: 10.96.0.53
  ports:
  - {{name: dns, protocol: UDP, port: 53, targetPort: 8080, nodePort: {nodeport}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: dns-abc
  namespace: shop
  labels: {{kubernetes.io/service-name: dns}}
addressType: IPv4
ports:
- {{name: dns, protocol: UDP, port: 8080}}
endpoints:
- addresses: ["{ip}"]
  nodeName: node-1
  conditions: {{ready: true}}
"""


def udp_in_only(name: str, dst: Pod, src: Pod) -> str:
    """A NetworkPolicy on `dst`: in, UDP 8080 from `src` alone (no ICMP)."""
    return f"""\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: app == "{dst.name}"
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: UDP
    source: {{selector: app == "{src.name}"}}
    destination: {{ports: [8080]}}
"""


def test_an_icmp_error_about_a_reply_reaches_the_backend(svc):
    """The client's port unreachable quotes the reply as it arrived (from
    the VIP) and goes to the VIP. NAT sends it to the backend, the quote
    made what the backend sent, so the backend's socket hears that its peer
    is gone. From a pod to a ClusterIP, under policies on both ends that let
    no ICMP through, and from outside to a NodePort (the error then goes to
    one of the node's own addresses)."""
    node, sb = svc.node, svc.node.sandbox
    node.felix()
    node.write("felix.yaml", svc._felix("Disabled"))
    backend = BACKENDS[0]
    for pod in (CLIENT, backend):
        node.wep(pod)
    svc.service(backends=(backend,))
    node.write("svc-dns.yaml", UDP_NODEPORT.format(nodeport=30053, ip=backend.ip))
    node.apply_converged()

    def backend_hears(client_ns: str, dst: str, port: int) -> str:
        server = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{sb.pod_ns(backend)}",
             sys.executable, "-c", LATE_SERVER, "8080"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            sb.exec(client_ns, sys.executable, "-c", SEND_AND_GO, dst, str(port), timeout=15)
            out, _ = server.communicate(timeout=15)
            return out.strip()
        finally:
            server.kill()
            server.wait()

    assert backend_hears(sb.pod_ns(CLIENT), VIP, 53) == "refused"
    assert backend_hears(sb.pod_ns(CLIENT), backend.ip, 8080) == "refused"  # no NAT
    assert backend_hears(sb.ext, sb.node_ip, 30053) == "refused"
    node.write("policy-client.yaml", udp_out_only("client-udp-out", CLIENT, backend, [8080]))
    node.write("policy-backend.yaml", udp_in_only("backend-udp-in", backend, CLIENT))
    node.apply_converged()
    assert backend_hears(sb.pod_ns(CLIENT), VIP, 53) == "refused"
    assert backend_hears(sb.pod_ns(CLIENT), backend.ip, 8080) == "refused"


def test_a_pod_reaching_itself_hears_its_own_port_unreachable(svc):
    """A pod reaching itself through its service (hairpin), on a UDP port
    nothing listens on: its own stack's port unreachable, sent to the VIP,
    comes back to it from the VIP, so its socket is refused at once."""
    node, sb = svc.node, svc.node.sandbox
    node.felix()
    node.write("felix.yaml", svc._felix("Disabled"))
    node.wep(CLIENT)
    svc.service(backends=(CLIENT,))  # nothing listens in it
    node.apply_converged()
    done = sb.exec(sb.pod_ns(CLIENT), sys.executable, "-c", UDP_CLIENT, VIP, "53", "0", "send",
                   timeout=15)  # fmt: skip
    assert done.stdout.strip() == "refused", done.stdout + done.stderr


def test_bulk_data_crosses_a_nodeport_and_a_vip_both_ways(svc):
    """Lines of 100,000 bytes each way, through a NodePort from outside and
    through the VIP from a pod: the backend's replies are forwarded by the
    datapath as trains of segments (GSO), not only single packets."""
    svc.start()
    svc.service((BACKENDS[0],), type_="NodePort", nodeport=30080)
    svc.node.apply_converged()
    sb = svc.node.sandbox
    size = 100_000
    for ns, host, port in ((sb.ext, sb.node_ip, "30080"), (sb.pod_ns(CLIENT), VIP, "80")):
        done = sb.exec(ns, sys.executable, str(HERE / "client.py"), "line", host, port,
                       str(size), timeout=30)  # fmt: skip
        assert done.stdout.strip() == str(len("back0 ") + size), (host, done.stdout, done.stderr)


# One UDP datagram to argv[1]:argv[2]; prints who answered and the TTL the
# answer arrived with.
REPLY_TTL_CLIENT = """\
import socket, sys
IP_RECVTTL = 12
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
s.send(b"x")
data, cmsgs, _, _ = s.recvmsg(200, socket.CMSG_SPACE(4))
ttl = [int.from_bytes(d[:4], sys.byteorder) for _, kind, d in cmsgs if kind == socket.IP_TTL]
print(data.decode().split()[0], ttl[0])
"""


def test_a_reply_nat_sends_on_counts_its_hop_as_a_routed_one_does(svc):
    """The datapath sends a service's reply on itself (to the FIB's next
    hop); it arrives with the TTL a reply routed by the kernel arrives with."""
    svc.start()
    svc.service((BACKENDS[0],))
    svc.node.apply_converged()
    sb = svc.node.sandbox
    heard = {
        dst: sb.exec(sb.pod_ns(CLIENT), sys.executable, "-c", REPLY_TTL_CLIENT, dst,
                     port).stdout.strip()  # fmt: skip
        for dst, port in ((str(VIP), "53"), (BACKENDS[0].ip, "8080"))
    }
    assert heard == {str(VIP): "back0 63", BACKENDS[0].ip: "back0 63"}, heard
