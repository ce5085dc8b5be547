"""The kube-proxy (iptables mode) baseline: the same services as KUBE-* nat rules.

Shape per service port, as kube-proxy writes it: one KUBE-SERVICES rule matching
VIP:port that jumps to KUBE-SVC-<hash>; there, M rules pick an endpoint with
`-m statistic --mode random --probability 1/(M-i)` (the last one unconditionally)
and jump to KUBE-SEP-<hash>, which marks hairpin traffic for masquerade and DNATs.
That is 1 + M + 2M rules per service plus 3 fixed ones (31 N + 3 for M = 10).
Rules are loaded with `iptables-restore` inside a named network namespace only.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Address

from bench import services_gen as gen


def chain_hash(text: str) -> str:
    """kube-proxy's chain suffix: 16 base32 characters of a SHA-256."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:16].decode()


def rules(services: int, endpoints: Sequence[IPv4Address]) -> tuple[str, int]:
    """The `iptables-restore` input for the nat table and its rule count."""
    chains = [":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    body = [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    ]
    count = 3
    m = len(endpoints)
    for i in range(services):
        port_name = f"{gen.NAMESPACE}/{gen.name(i)}:http"
        svc = "KUBE-SVC-" + chain_hash(port_name + "tcp")
        vip = gen.vip(i)
        chains.append(f":{svc} - [0:0]")
        body.append(
            f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "{port_name} cluster IP"'
            f" -m tcp --dport {gen.SERVICE_PORT} -j {svc}"
        )
        count += 1
        for k, ep in enumerate(endpoints):
            dest = f"{ep}:{gen.TARGET_PORT}"
            sep = "KUBE-SEP-" + chain_hash(port_name + "tcp" + dest)
            chains.append(f":{sep} - [0:0]")
            pick = (
                f" -m statistic --mode random --probability {1 / (m - k):.11f}" if k < m - 1 else ""
            )
            body.append(f'-A {svc} -m comment --comment "{port_name} -> {dest}"{pick} -j {sep}')
            body.append(f'-A {sep} -s {ep}/32 -m comment --comment "{port_name}" -j KUBE-MARK-MASQ')
            body.append(
                f'-A {sep} -p tcp -m comment --comment "{port_name}" -m tcp'
                f" -j DNAT --to-destination {dest}"
            )
            count += 3
    text = "\n".join(["*nat", *chains, *body, "COMMIT", ""])
    return text, count


def restore(netns: str, text: str) -> subprocess.CompletedProcess[str]:
    """Replace the namespace's nat table with `text` (what kube-proxy's full sync does)."""
    return subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "iptables-restore"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )


def flush(netns: str) -> None:
    restore(netns, "*nat\nCOMMIT\n")


def count_rules(netns: str) -> int:
    out = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "iptables-save", "-t", "nat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sum(1 for line in out.splitlines() if line.startswith("-A "))
