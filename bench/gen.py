"""Generate a realistic config repository of N resources (mixed kinds)."""

from __future__ import annotations

from pathlib import Path

PER_FILE = 10  # resources per multi-document file


def _gnp(i: int) -> str:
    return f"""apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: gnp-{i}
spec:
  order: {100 + i}
  selector: app == 'svc-{i % 97}' && tier in {{'web', 'api'}}
  types: [Ingress, Egress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'client-{i % 13}'
      nets: [10.{i % 250}.0.0/16]
    destination:
      ports: [80, 443, "8000:8100"]
  egress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53]
"""


def _np(i: int) -> str:
    return f"""apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: np-{i}
  namespace: ns-{i % 50}
spec:
  selector: app == 'api-{i % 31}'
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: app == 'web'
    destination:
      ports: [8080]
"""


def _wep(i: int) -> str:
    return f"""apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: pod-{i}
  namespace: ns-{i % 50}
  labels:
    app: svc-{i % 97}
spec:
  node: node-{i % 100}
  orchestrator: k8s
  pod: pod-{i}
  endpoint: eth0
  interfaceName: cali{i:011d}
  ipNetworks: [10.{(i >> 16) % 256}.{(i >> 8) % 256}.{i % 256}/32]
  profiles: [kns.ns-{i % 50}]
"""


def _svc(i: int) -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: svc-{i}
  namespace: ns-{i % 50}
spec:
  type: ClusterIP
  clusterIP: 10.96.{(i >> 8) % 256}.{i % 256}
  selector:
    app: svc-{i}
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 8080
"""


def _netset(i: int) -> str:
    return f"""apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata:
  name: set-{i}
  labels:
    feed: blocklist-{i % 7}
spec:
  nets: [198.51.{i % 256}.0/24, 203.0.{i % 256}.0/24]
"""


MAKERS = (_gnp, _np, _wep, _svc, _netset)


def generate(root: Path, count: int) -> int:
    """Write `count` resources under root in files of PER_FILE documents."""
    root.mkdir(parents=True, exist_ok=True)
    written = 0
    for start in range(0, count, PER_FILE):
        docs = [MAKERS[i % len(MAKERS)](i) for i in range(start, min(start + PER_FILE, count))]
        sub = root / f"group-{start // 1000:03d}"
        sub.mkdir(exist_ok=True)
        (sub / f"resources-{start:06d}.yaml").write_text("---\n".join(docs))
        written += len(docs)
    return written
