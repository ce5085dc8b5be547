"""IPv4 fragments through service NAT in tc (connect-time balancing off):
a datagram larger than the MTU to a VIP reaches its backend whole, its
first fragment translated as any packet of the flow and the later ones by
the ports it left behind; the backend's big reply comes back from the VIP,
fragments and all."""

from __future__ import annotations

import sys

from tests.kernel.test_fragments import started
from tests.kernel.test_services import BACKENDS, CLIENT, VIP, svc

__all__ = ["svc"]  # the fixture, shared with test_services

BACK = BACKENDS[0]
PORT, TARGET = 5300, 9053

SERVICE = f"""\
apiVersion: v1
kind: Service
metadata: {{name: big, namespace: shop}}
spec:
  clusterIP: {VIP}
  ports: [{{name: big, protocol: UDP, port: {PORT}, targetPort: {TARGET}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: big-a
  namespace: shop
  labels: {{kubernetes.io/service-name: big}}
addressType: IPv4
ports: [{{name: big, protocol: UDP, port: {TARGET}}}]
endpoints:
- {{addresses: ["{BACK.ip}"], nodeName: node-1, conditions: {{ready: true}}}}
"""

# Answers each datagram with "<its length> <sender>" padded to 4000 bytes.
BIG_SERVER = f"""\
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {TARGET}))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(f"{{len(data)}} {{peer[0]}} ".encode().ljust(4000, b"y"), peer)
"""

# Sends 4000 bytes to the VIP; prints who answered, and the answer's head and length.
BIG_CLIENT = f"""\
import socket
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(2)
    s.sendto(b"x" * 4000, ("{VIP}", {PORT}))
    try:
        data, peer = s.recvfrom(65535)
        print(peer[0], peer[1], *data[:40].decode().split()[:2], len(data))
    except TimeoutError:
        print("TIMEOUT")
"""


def test_a_big_datagram_to_a_service_and_its_big_reply_are_translated(svc):
    node = svc.node
    sb = node.sandbox
    svc.start("Disabled")
    node.write("service.yaml", SERVICE)
    node.apply_converged()  # the second plan is "No changes."
    server = started(sb, BACK, BIG_SERVER)
    try:
        for netns, client in ((sb.pod_ns(CLIENT), CLIENT.ip), (sb.ext, sb.ext_ip)):
            out = sb.exec(netns, sys.executable, "-c", BIG_CLIENT)
            assert out.returncode == 0, out.stderr
            # the backend got all 4000 bytes from the client itself; the
            # reply, 4000 bytes in fragments, came back from the VIP
            assert out.stdout.split() == [VIP, str(PORT), "4000", client, "4000"], out
    finally:
        server.kill()
        server.wait()
