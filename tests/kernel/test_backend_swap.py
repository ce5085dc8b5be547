"""A pod's open flow to a service whose backend changes (connect-time
balancing off, so tc NAT balances it): the pod's egress policy approved the
flow as it sent it (to the VIP), but service NAT balances it afresh once the
reconciler removed its entries with the old backend. That new backend is
judged as a new flow's would be (bpf/lib/tc_path.h rcl_ingress): one the
pod's egress denies gets nothing more from the flow, one it allows gets the
flow on.

att keeps one UDP socket sending to the VIP; the EndpointSlice moves the
service from oth (att may reach it) to the outside host ext, which att's
egress allows only in the second test. A fresh socket to the VIP after the
move is the control: it is judged as any new flow."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.kernel.policy_site import FELIX as BASE_FELIX
from tests.kernel.policy_site import sandbox_site
from tests.kernel.rcl_bcc import skip_unless_kernel
from tests.kernel.test_policy_bypass import ATT, EXT_IP, MARK, OTH, Site, spawn

pytestmark = pytest.mark.kernel

VIP, PORT, TARGET = "10.96.0.61", 5300, 9100
KEPT_PORT, FRESH_PORT = 40000, 40001

FELIX = BASE_FELIX + "  bpfConnectTimeLoadBalancing: Disabled\n"
POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: att-eg, namespace: shop}}
spec:
  selector: app == "att"
  types: [Egress]
  egress:
  - {{action: Allow, destination: {{selector: app == "oth"}}}}
  - {{action: Allow, destination: {{nets: [{extra}]}}}}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: swap, namespace: shop}}
spec:
  clusterIP: {vip}
  ports: [{{name: swap, protocol: UDP, port: {port}, targetPort: {target}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: swap-a
  namespace: shop
  labels: {{kubernetes.io/service-name: swap}}
addressType: IPv4
ports: [{{name: swap, protocol: UDP, port: {target}}}]
endpoints:
- {{addresses: ["{backend}"], nodeName: {node}, conditions: {{ready: true}}}}
"""

# Sends marked datagrams to the VIP from one socket bound to argv[1] until killed.
SENDER = f"""\
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({ATT.ip!r}, int(sys.argv[1])))
print("ready", flush=True)
while True:
    s.sendto({MARK!r}, ({VIP!r}, {PORT}))
    time.sleep(0.05)
"""
# Prints "ready", then for argv[2] seconds counts marked datagrams per source port.
RECEIVER = f"""\
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
seen, end = {{}}, time.time() + float(sys.argv[2])
while time.time() < end:
    s.settimeout(max(end - time.time(), 0.01))
    try:
        data, peer = s.recvfrom(2048)
    except OSError:
        break
    if {MARK!r} in data:
        seen[peer[1]] = seen.get(peer[1], 0) + 1
print(json.dumps(seen), flush=True)
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    skip_unless_kernel()
    tmp = tmp_path_factory.mktemp("swap")
    with sandbox_site(tmp, (ATT, OTH), {"felix.yaml": FELIX}) as s:
        yield s


def apply(site: Site, backend: str, node: str, extra: str) -> None:
    """The service on `backend`, att's egress allowing oth and `extra`;
    applied twice, the second time with nothing to do."""
    (site.config / "policy.yaml").write_text(POLICY.format(extra=extra))
    (site.config / "service.yaml").write_text(
        SERVICE.format(vip=VIP, port=PORT, target=TARGET, backend=backend, node=node)
    )
    assert "Verified" in site.reconcile("--apply")
    assert "No changes." in site.reconcile("--apply")


def ports_seen(netns: str, secs: float = 1.0) -> dict[int, int]:
    """Marked datagrams arriving at TARGET in netns over secs, by source port."""
    proc = spawn(netns, RECEIVER, str(TARGET), str(secs))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        out, err = proc.communicate(timeout=secs + 10)
        return {int(k): v for k, v in json.loads(out or f"-1{err}").items()}
    finally:
        proc.kill()
        proc.wait()


def sender(site: Site, port: int) -> subprocess.Popen[str]:
    proc = spawn(site.ns(ATT), SENDER, str(port))
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.parametrize("new_backend_allowed", [False, True], ids=["denied", "allowed"])
def test_an_open_flow_moved_to_a_new_backend_is_judged_there(site, new_backend_allowed):
    # ext unreachable for att's egress at first (a documentation address)
    apply(site, OTH.ip, "node-1", "192.0.2.1/32")
    kept = sender(site, KEPT_PORT)
    fresh = None
    try:
        assert ports_seen(site.ns(OTH)).get(KEPT_PORT, 0) > 0  # the flow runs
        apply(site, EXT_IP, "node-2", f"{EXT_IP}/32" if new_backend_allowed else "192.0.2.1/32")
        time.sleep(0.2)
        fresh = sender(site, FRESH_PORT)
        seen = ports_seen(site.sandbox.ext)
        if new_backend_allowed:
            assert seen.get(KEPT_PORT, 0) > 0 and seen.get(FRESH_PORT, 0) > 0, seen
        else:
            assert seen == {}, seen  # neither the kept flow nor a fresh one
    finally:
        for proc in (kept, fresh):
            if proc:
                proc.kill()
                proc.wait()
