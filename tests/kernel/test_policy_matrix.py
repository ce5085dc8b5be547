"""A matrix of allowed and denied flows: every rule field, tiers, Pass, order,
defaultAction, profiles and the end-of-profiles drop, NetworkPolicy scoping,
sets and named ports. One config holds every case; it is applied once, then
each case is probed with real traffic (all probes of a source pod at once)
and asked of `--explain --kernel`, which must agree with the traffic and name
the rule the case expects."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from sandbox.netns import Pod
from tests.kernel.conftest import PODS

FRONT, BACK = PODS  # front0 10.65.0.10, back0 10.65.0.20 (namespace shop)
C0 = Pod("c0", "10.65.0.21")  # shop, service account sa-c
D0 = Pod("d0", "10.65.0.30")  # namespace other
E0 = Pod("e0", "10.65.0.40")  # shop, only its own profile prof-e
POD_NS = {"front0": "shop", "back0": "shop", "c0": "shop", "d0": "other", "e0": "shop"}
PROFILES = {"front0": "kns.shop", "back0": "kns.shop", "c0": "kns.shop", "d0": "kns.other",
            "e0": "prof-e"}  # fmt: skip
SERVICE_ACCOUNTS = {"front0": "sa-front", "c0": "sa-c"}
# Servers (TCP and UDP echo on each port); back0 names 9090 "http".
PORTS = {"front0": (8080, 8081), "back0": (8080, 8081, 9090, 9100, 9150, 7000),
         "c0": (8080,), "d0": (8080,), "e0": (8080,)}  # fmt: skip
IPS = {p.name: p.ip for p in (FRONT, BACK, C0, D0, E0)}

CONFIG = """\
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.shop}
spec:
  labelsToApply: {pcns.team: shop}
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: kns.other}
spec:
  labelsToApply: {pcns.team: other}
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: prof-e}
spec:
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]
  egress: [{action: Deny, protocol: UDP}]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: trusted, labels: {kind: trusted}}
spec: {nets: [10.65.0.21/32]}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: sec}
spec: {order: 10, defaultAction: Pass}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: last}
spec: {order: 50, defaultAction: Deny}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sec.p2}
spec:
  tier: sec
  order: 2
  selector: app == "back0"
  ingress:
  - {action: Deny, protocol: TCP, source: {selector: all()}, destination: {ports: [8080]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: sec.p1}
spec:
  tier: sec
  order: 1
  selector: app == "back0"
  ingress:
  - {action: Pass, source: {nets: [10.65.0.10/32]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: last.front-out}
spec:
  tier: last
  selector: app == "front0"
  types: [Egress]
  egress:
  - {action: Allow, destination: {notSelector: app == "c0"}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: b-in, namespace: shop}
spec:
  order: 100
  selector: app == "back0"
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == "front0"},
     destination: {ports: [8080]}}
  - {action: Allow, protocol: UDP, source: {nets: [10.65.0.21/32]},
     destination: {ports: ["8081:8082"]}}
  - {action: Allow, protocol: TCP, source: {namespaceSelector: team == "other"},
     destination: {ports: [http]}}
  - {action: Allow, protocol: ICMP, icmp: {type: 8, code: 0},
     source: {notNets: [10.65.0.0/28]}}
  - {action: Allow, notProtocol: TCP,
     source: {namespaceSelector: team == "other", selector: app == "d0"}}
  - {action: Allow, protocol: TCP, source: {serviceAccounts: {names: [sa-c]}},
     destination: {ports: ["9100:9200"], notPorts: [9150]}}
  - {action: Allow, protocol: 17, source: {ports: [40000]}, destination: {ports: [7000]}}
  - {action: Allow, protocol: ICMP, notICMP: {type: 8}, source: {selector: app == "c0"}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: front-in, namespace: shop}
spec:
  selector: app == "front0"
  ingress:
  - {action: Allow, protocol: TCP,
     source: {namespaceSelector: global(), selector: kind == "trusted"},
     destination: {ports: [8080]}}
  - {action: Allow, protocol: TCP, source: {selector: app == "d0"},
     destination: {ports: [8081]}}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-all, namespace: other}
spec:
  selector: all()
  types: [Ingress]
  ingress: [{action: Deny}]
"""

WEP = """\
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: {name}}}
spec:
  node: node-1
  orchestrator: k8s
  interfaceName: cali-{name}
  ipNetworks: ["{ip}/32"]
  profiles: [{profile}]
{extra}"""


def wep(name: str) -> str:
    extra = ""
    if name in SERVICE_ACCOUNTS:
        extra += f"  serviceAccountName: {SERVICE_ACCOUNTS[name]}\n"
    if name == "back0":
        extra += "  ports: [{name: http, protocol: TCP, port: 9090}]\n"
    return WEP.format(name=name, ns=POD_NS[name], ip=IPS[name], profile=PROFILES[name],
                      extra=extra)  # fmt: skip


@dataclass(frozen=True)
class Case:
    src: str
    dst: str
    proto: str  # tcp, udp, icmp
    port: int  # ICMP: the type
    allowed: bool
    ref: str  # the rule, tier default or profile end that decides (in --explain)
    code: int = 0  # ICMP code
    sport: int | None = None  # bind the source port (explain asks with 40000)
    why: str = ""

    @property
    def explainable(self) -> bool:
        return self.code == 0 and self.sport in (None, 40000)


CASES = [
    # the default tier after sec's Pass; named and numeric ports; ranges
    Case("front0", "back0", "tcp", 8080, True, "policy/shop/b-in ingress rule 1",
         why="sec.p1 passes front0 before sec.p2's deny; b-in rule 1 (selector) allows"),
    Case("c0", "back0", "tcp", 8080, False, "policy/sec.p2 ingress rule 1",
         why="tier sec: p2 denies TCP 8080 from all()"),
    Case("c0", "back0", "udp", 8081, True, "policy/shop/b-in ingress rule 2",
         why="nets + a port range"),
    Case("front0", "back0", "udp", 8081, False, "tier/default default action",
         why="rule 2 names c0's net only"),
    Case("d0", "back0", "tcp", 9090, True, "policy/shop/b-in ingress rule 3",
         why="namespaceSelector + the named port http"),
    Case("c0", "back0", "tcp", 9090, False, "tier/default default action",
         why="namespaceSelector: c0 is in shop"),
    # ICMP type and code, notNets
    Case("c0", "back0", "icmp", 8, True, "policy/shop/b-in ingress rule 4"),
    Case("c0", "back0", "icmp", 8, False, "", code=1, why="icmp code 0 only"),
    Case("front0", "back0", "icmp", 8, False, "tier/default default action",
         why="front0 is in notNets"),
    # notProtocol, protocol by number, source ports, notICMP
    Case("d0", "back0", "udp", 8080, True, "policy/shop/b-in ingress rule 5",
         why="notProtocol TCP"),
    Case("d0", "back0", "tcp", 8080, False, "policy/sec.p2 ingress rule 1"),
    Case("front0", "back0", "udp", 7000, True, "policy/shop/b-in ingress rule 7",
         sport=40000, why="protocol 17 and source port 40000"),
    Case("front0", "back0", "udp", 7000, False, "", sport=40001, why="another source port"),
    # (from c0: a timestamp reply is not tracked, so d0's deny-all would drop it)
    Case("c0", "back0", "icmp", 13, True, "policy/shop/b-in ingress rule 8",
         why="protocol 1, notICMP type 8: a timestamp request"),
    Case("front0", "back0", "icmp", 13, False, "tier/default default action",
         why="rule 8 names c0 only"),
    Case("d0", "back0", "icmp", 8, True, "policy/shop/b-in ingress rule 4",
         why="echo: rule 4 (d0 is outside the notNets)"),
    # serviceAccounts, ports with notPorts
    Case("c0", "back0", "tcp", 9100, True, "policy/shop/b-in ingress rule 6"),
    Case("c0", "back0", "tcp", 9150, False, "tier/default default action", why="notPorts"),
    Case("front0", "back0", "tcp", 9100, False, "tier/default default action",
         why="front0's service account is not sa-c"),
    # a tier with defaultAction Deny and notSelector (front0's egress)
    Case("front0", "c0", "tcp", 8080, False, "tier/last default action"),
    Case("front0", "d0", "tcp", 8080, False, "policy/other/deny-all ingress rule 1",
         why="front0's egress allows it (notSelector); d0's namespace denies"),
    # sets through global(), NetworkPolicy selector scoping
    Case("c0", "front0", "tcp", 8080, True, "policy/shop/front-in ingress rule 1",
         why="a GlobalNetworkSet through namespaceSelector global()"),
    Case("back0", "front0", "tcp", 8080, False, "tier/default default action"),
    Case("d0", "front0", "tcp", 8081, False, "tier/default default action",
         why="a NetworkPolicy's selector sees its own namespace only"),
    # NetworkPolicy scoping of the policy itself; profiles and their end
    Case("d0", "c0", "tcp", 8080, True, "profile/kns.shop ingress rule 1",
         why="other/deny-all selects nothing in shop"),
    Case("e0", "front0", "udp", 8080, False, "profile/prof-e egress rule 1"),
    Case("e0", "c0", "tcp", 8080, False, "end of profiles (drop)"),
    Case("c0", "e0", "tcp", 8080, True, "profile/prof-e ingress rule 1"),
    Case("c0", "e0", "udp", 8080, False, "end of profiles (drop)"),
]  # fmt: skip

# Runs in a source pod's namespace: every probe at once, a short timeout each.
PROBE = r"""
import json, os, socket, struct, sys, threading

def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def tcp(p):
    with socket.socket() as s:
        s.settimeout(1.5)
        if p["sport"]:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", p["sport"]))
        s.connect((p["dst"], p["port"]))
        return bool(s.recv(100))

def udp(p):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.5)
        if p["sport"]:
            s.bind(("0.0.0.0", p["sport"]))
        s.sendto(b"hi", (p["dst"], p["port"]))
        return bool(s.recvfrom(100)[0])

def icmp(p):
    ident = p["i"] + 1000
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(1.5)
        body = bytes(12) if p["port"] == 13 else b"probe"
        msg = struct.pack("!BBHHH", p["port"], p["code"], 0, ident, 1) + body
        msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
        s.sendto(msg, (p["dst"], 0))
        want = {8: 0, 13: 14}[p["port"]]
        while True:
            data, addr = s.recvfrom(200)
            ihl = (data[0] & 15) * 4
            t, _, _, got = struct.unpack("!BBHH", data[ihl:ihl + 6])
            if addr[0] == p["dst"] and t == want and got == ident:
                return True

probes = json.loads(sys.argv[1])
out = [None] * len(probes)
def run(i, p):
    try:
        out[i] = {"tcp": tcp, "udp": udp, "icmp": icmp}[p["proto"]](p)
    except OSError:
        out[i] = False
threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(probes)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"""


@pytest.fixture
def matrix(node):
    sb = node.sandbox
    servers: list[subprocess.Popen[str]] = []
    try:
        for pod in (C0, D0, E0):
            sb.add_pod(pod)
        for name, ports in PORTS.items():
            for port in ports:
                proc = subprocess.Popen(
                    ["nsenter", f"--net=/run/netns/{sb.pod_ns(name)}", sys.executable,
                     "-m", "sandbox.echo", name, str(port)],
                    stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                servers.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        node.felix()
        node.write("policy.yaml", CONFIG)
        node.write("weps.yaml", "".join(wep(name) for name in IPS))
        yield node
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()


def probe_all(node, cases: list[Case]) -> dict[Case, bool]:
    """Real traffic for every case: one process per source pod, probes in parallel."""
    got: dict[Case, bool] = {}
    for src in sorted({c.src for c in cases}):
        mine = [c for c in cases if c.src == src]
        spec = [
            {"i": i, "proto": c.proto, "dst": IPS[c.dst], "port": c.port, "code": c.code,
             "sport": c.sport}
            for i, c in enumerate(mine)
        ]  # fmt: skip
        out = node.sandbox.exec(node.sandbox.pod_ns(src), sys.executable, "-c", PROBE,
                                json.dumps(spec), timeout=30, check=True)  # fmt: skip
        got.update(zip(mine, json.loads(out.stdout), strict=True))
    return got


def test_every_case_of_the_matrix_in_traffic_and_in_explain(matrix):
    node = matrix
    node.apply_converged()
    traffic = probe_all(node, CASES)
    wrong = [
        f"{c.src} -> {c.dst} {c.proto}/{c.port} code {c.code} sport {c.sport}: "
        f"{'passed' if traffic[c] else 'dropped'}, expected {'allow' if c.allowed else 'deny'}"
        f" ({c.why or c.ref})"
        for c in CASES
        if traffic[c] != c.allowed
    ]
    assert not wrong, "\n".join(wrong)
    for c in CASES:
        if not c.explainable:
            continue
        rc, out, err = node.run("--explain", "--from", c.src, "--to",
                                f"{c.dst}:{c.port}/{c.proto}", "--kernel")  # fmt: skip
        assert rc == 0, out + err
        assert f"Verdict: {'Allow' if c.allowed else 'Deny'}" in out, (c, out)
        assert f"by {c.ref} " in out or out.count(f"by {c.ref}\n"), (c, out)
        assert "DISAGREES" not in out and "agrees: NO" not in out, (c, out)
        assert out.count("(agrees)") == out.count("compiled program") > 0, (c, out)
    # Both directions, both kinds of cases: the matrix is not one-sided.
    assert {c.allowed for c in CASES} == {True, False}
    assert {c.proto for c in CASES if c.allowed} == {"tcp", "udp", "icmp"}
    assert {c.proto for c in CASES if not c.allowed} == {"tcp", "udp", "icmp"}
