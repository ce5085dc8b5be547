"""Generate N Services x M endpoints as YAML (Service + EndpointSlice per file).

Address plan shared by the NAT benchmarks: service i has cluster IP vip(i),
port 80 -> targetPort 8080; its M endpoints are the M addresses of one backend
pod (endpoint_ip(k)), so every service is reachable in a sandbox with two pods.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

NAMESPACE = "bench"
NODE = "node-1"
SERVICE_PORT = 80
TARGET_PORT = 8080
VIP_BASE = IPv4Address("10.96.0.0")
CLIENT_IP = IPv4Address("10.65.0.10")
BACKEND_IP = IPv4Address("10.65.1.10")  # the backend pod's first address
MAX_ENDPOINTS = 100


def vip(i: int) -> IPv4Address:
    return VIP_BASE + 1 + i


def endpoint_ip(i: int, k: int) -> IPv4Address:
    """Endpoint k of service i: the backend pod's k-th address (shared by all services)."""
    if not 0 <= k < MAX_ENDPOINTS:
        raise ValueError(f"endpoint {k} out of range")
    return BACKEND_IP + k


def name(i: int) -> str:
    return f"svc-{i:05d}"


def service_yaml(i: int, endpoints: list[IPv4Address]) -> str:
    addresses = "".join(
        f"  - addresses: [{ip}]\n    conditions: {{ready: true}}\n    nodeName: {NODE}\n"
        for ip in endpoints
    )
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name(i)}
  namespace: {NAMESPACE}
  labels: {{app: {name(i)}}}
spec:
  type: ClusterIP
  clusterIP: {vip(i)}
  clusterIPs: [{vip(i)}]
  selector: {{app: {name(i)}}}
  ports:
  - name: http
    protocol: TCP
    port: {SERVICE_PORT}
    targetPort: {TARGET_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name(i)}-abcde
  namespace: {NAMESPACE}
  labels:
    kubernetes.io/service-name: {name(i)}
addressType: IPv4
ports:
- name: http
  protocol: TCP
  port: {TARGET_PORT}
endpoints:
{addresses}"""


def service_path(root: Path, i: int) -> Path:
    return root / "services" / f"{name(i)}.yaml"


def write_services(root: Path, count: int, endpoints: int) -> None:
    """Files for services [0, count); files of services >= count are removed."""
    folder = root / "services"
    folder.mkdir(parents=True, exist_ok=True)
    eps = [endpoint_ip(0, k) for k in range(endpoints)]
    for i in range(count):
        service_path(root, i).write_text(service_yaml(i, eps))
    for stale in folder.glob("svc-*.yaml"):
        if int(stale.stem.split("-")[1]) >= count:
            stale.unlink()


def write_node(
    root: Path,
    client: tuple[str, IPv4Address],
    backend: tuple[str, int],
    *,
    ctlb: str = "Disabled",
    conntrack_size: int = 65536,
) -> None:
    """FelixConfiguration and the two WorkloadEndpoints (client pod, backend pod with
    `backend[1]` addresses)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "felix.yaml").write_text(
        f"""apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec:
  bpfEnabled: true
  bpfConnectTimeLoadBalancing: {ctlb}
  bpfMapSizeConntrack: {conntrack_size}
"""
    )
    nets = ", ".join(f"{BACKEND_IP + k}/32" for k in range(backend[1]))
    # The namespace's profile, as Calico's Kubernetes datastore makes it: the
    # pods accept and send anything (without it, Calico's end-of-profiles
    # drop would take every packet).
    (root / "pods.yaml").write_text(
        f"""apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: kns.{NAMESPACE}}}
spec: {{ingress: [{{action: Allow}}], egress: [{{action: Allow}}]}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {client[0]}, namespace: {NAMESPACE}, labels: {{role: client}}}}
spec: {{node: {NODE}, orchestrator: k8s, interfaceName: cali-{client[0]},
        ipNetworks: [{client[1]}/32], profiles: [kns.{NAMESPACE}]}}
---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {backend[0]}, namespace: {NAMESPACE}, labels: {{role: backend}}}}
spec: {{node: {NODE}, orchestrator: k8s, interfaceName: cali-{backend[0]},
        ipNetworks: [{nets}], profiles: [kns.{NAMESPACE}]}}
"""
    )
