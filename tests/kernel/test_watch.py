"""`--watch` converges on config changes and on kernel events (interfaces coming and going)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.netns import Pod
from tests.kernel.conftest import PODS, bpftool_dump
from tests.kernel.test_reconcile import has_endpoint, ifstate, tc_filters

FRONT, BACK = PODS


BUILD_S = 120.0  # the first pass builds the programs: slow on a loaded machine


def wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


@contextmanager
def watching(
    node, interval: int, cache: Path | None = None, extra: tuple[str, ...] = ()
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """A `reconcile --watch` process for the test's node; yields it and, once it
    has been stopped, its stderr (in the list). With `cache`, the process keeps
    its caches there instead of running with --no-cache."""
    reconcile = str(Path(sys.executable).parent / "reconcile")
    args = node.args()
    env = None
    if cache is not None:
        args = [a for a in args if a != "--no-cache"]
        env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.Popen(
        [reconcile, "--watch", "--interval", str(interval), *args, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stderr: list[str] = []
    try:
        yield proc, stderr
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        stderr.append(err)


def test_watch_follows_config_and_interfaces(node):
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    with watching(node, interval=1) as (proc, stderr):
        assert wait_for(lambda: "rcl:tc@" in tc_filters(node, "cali-front0", "ingress"), BUILD_S)
        assert "rcl:tc@" in tc_filters(node, "cali-back0", "ingress")
        node.remove("wep-front0.yaml")  # a file event: its policy goes, the pod is held closed
        assert wait_for(lambda: not has_endpoint(node, "cali-front0"))
        assert "rcl:tc@" in tc_filters(node, "cali-front0", "ingress")
        entries_before = len(ifstate(node))
        node.sandbox.remove_pod(BACK)  # an interface goes away
        assert wait_for(lambda: len(ifstate(node)) == entries_before - 1)
        assert proc.poll() is None  # still running
        # the whole source gone (a checkout half-way, a wrong directory):
        # refused without --allow-empty, the node keeps what it has
        for path in node.config.iterdir():
            path.unlink()
        assert wait_for(lambda: node.run("--status")[0] == 1, 30)  # the watcher's pass failed
        assert "rcl:tc@" in tc_filters(node, "eth0", "ingress")
        assert len(ifstate(node)) == entries_before - 1
        assert proc.poll() is None
    assert "holds no resources" in stderr[0] and "--allow-empty" in stderr[0], stderr[0]


def test_watch_attaches_a_new_pod_on_its_link_event(node):
    """The drift timer is far away: only the netlink event can explain a quick attach."""
    node.felix()
    late = Pod("late0", "10.65.0.30")
    node.wep(late)  # the WorkloadEndpoint exists before its interface does, as with a CNI
    with watching(node, interval=300) as (_, stderr):
        assert wait_for(lambda: "rcl:tc@" in tc_filters(node, "eth0", "ingress"), BUILD_S)
        node.sandbox.add_pod(late)
        assert wait_for(lambda: "rcl:tc@" in tc_filters(node, "cali-late0", "ingress"), 15)
    assert "reconciling: interfaces changed" in stderr[0]


SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  clusterIP: {vip}
  ports: [{{name: http, protocol: TCP, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-a
  namespace: shop
  labels: {{kubernetes.io/service-name: {name}}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- addresses: ["{ip}"]
  conditions: {{ready: true}}
"""


def nat_backends(node) -> set[str]:
    """Backend addresses in rcl_nat_be, as bpftool reads them."""
    pin = Path(node.sandbox.bpffs_root) / "maps" / "rcl_nat_be"
    if not pin.exists():
        return set()
    return {".".join(str(b) for b in value[:4]) for _, value in bpftool_dump(pin)}


def test_watch_follows_service_edits_incrementally_with_its_caches(node, tmp_path):
    """With caches on, service-only edits take the incremental path inside the
    running watcher: an edited file, a new directory, a removed file."""
    node.felix()
    node.wep(FRONT)
    node.write("svc/a.yaml", SERVICE.format(name="a", vip="10.96.0.1", ip="10.65.0.20"))
    with watching(node, interval=300, cache=tmp_path / "cache") as (_, stderr):
        assert wait_for(lambda: nat_backends(node) == {"10.65.0.20"}, BUILD_S)
        node.write("svc/a.yaml", SERVICE.format(name="a", vip="10.96.0.1", ip="10.65.0.21"))
        assert wait_for(lambda: nat_backends(node) == {"10.65.0.21"})
        node.write("more/deep/b.yaml", SERVICE.format(name="b", vip="10.96.0.2", ip="10.65.0.22"))
        assert wait_for(lambda: nat_backends(node) == {"10.65.0.21", "10.65.0.22"})
        node.remove("svc/a.yaml")
        assert wait_for(lambda: nat_backends(node) == {"10.65.0.22"})
    log = stderr[0]
    # three edits, three passes (an edit may share a pass with a link event)
    assert log.count("pass done in") >= 3 and "config changed" in log, log
    assert "Traceback" not in log and log.rstrip().endswith("stopped"), log  # SIGTERM: clean
    # the watcher wrote the state it converged to once idle: a one-shot plan
    # from the same caches finds it and has nothing to do
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    reconcile = str(Path(sys.executable).parent / "reconcile")
    args = [a for a in node.args() if a != "--no-cache"]
    out = subprocess.run([reconcile, "--plan", *args], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "No changes." in out.stdout, out.stdout + out.stderr
    assert list((tmp_path / "cache").rglob("applied"))


HEALTH_CHECKED = """\
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: shop}}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.70
  externalTrafficPolicy: Local
  healthCheckNodePort: {port}
  ports: [{{name: http, protocol: TCP, port: 80, nodePort: 30070}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: lb-a
  namespace: shop
  labels: {{kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{{name: http, protocol: TCP, port: 8080}}]
endpoints:
- addresses: ["{ip}"]
  nodeName: {where}
  conditions: {{ready: true}}
"""

# What a load balancer's health check sees: "<status> <body>", or "ERR ...".
PROBE = """\
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(r.status, r.read().decode().replace(chr(10), ""))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().replace(chr(10), ""))
except OSError as e:
    print("ERR", e)
"""


def test_watch_serves_health_check_node_ports(node):
    """A load balancer asking the node from outside hears 200 while the node
    has a ready endpoint of the Service, 503 when it has none, and nothing
    once the Service is gone; the port moves with the Service."""
    sb = node.sandbox
    node.felix()

    def checked(port: int, where: str) -> None:
        node.write("lb.yaml", HEALTH_CHECKED.format(port=port, ip=BACK.ip, where=where))

    def probe(port: int) -> str:
        url = f"http://{sb.node_ip}:{port}/healthz"
        return sb.exec(sb.ext, sys.executable, "-c", PROBE, url).stdout.strip()

    def metric(name: str) -> str:
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        lines = [ln for ln in text.decode().splitlines() if ln.startswith(name + "{")]
        return "\n".join(lines)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    checked(32070, "node-1")
    with watching(node, 300, extra=("--metrics-addr", f"127.0.0.1:{port}")) as (proc, _):
        assert wait_for(lambda: probe(32070).startswith("200 "), BUILD_S), probe(32070)
        ok = "calico_reconciler_service_health_ok"
        served = f'{ok}{{port="32070",service="shop/lb"}} 1.0'
        assert wait_for(lambda: metric(ok) == served), metric(ok)  # set as the pass reports
        body = json.loads(probe(32070).split(" ", 1)[1])
        assert body == {
            "service": {"namespace": "shop", "name": "lb"},
            "localEndpoints": 1,
            "serviceProxyHealthy": True,
        }
        rc, out, err = node.run("--status")
        assert "health check shop/lb on port 32070: 200 (1 local endpoint(s))" in out, out + err
        checked(32070, "node-2")  # its one endpoint is elsewhere now
        assert wait_for(lambda: probe(32070).startswith("503 ")), probe(32070)
        checked(32071, "node-1")
        assert wait_for(lambda: probe(32071).startswith("200 ")), probe(32071)
        assert probe(32070).startswith("ERR")
        node.remove("lb.yaml")
        assert wait_for(lambda: probe(32071).startswith("ERR")), probe(32071)
        assert proc.poll() is None
