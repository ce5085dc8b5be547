"""`make demo`: a sandbox node in network namespaces, reconciled from the example repo.

Shows validate, plan, apply, a second plan with "No changes.", real traffic
through the programs, --status, and tears everything down (also on failure).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.netns import Pod, Sandbox

CONFIG = "examples/cluster-config"
PODS = (Pod("front0", "10.65.0.10"), Pod("back0", "10.65.0.20"))
CLUSTER_IP = "10.96.0.50"  # Service shop/backend in the example config


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def reconcile(*args: str, ok: tuple[int, ...] = (0,)) -> int:
    shown = " ".join(shlex.quote(a) for a in args)
    print(f"$ reconcile {shown}", flush=True)
    rc = subprocess.run([str(Path(sys.executable).parent / "reconcile"), *args]).returncode
    if rc not in ok:
        raise SystemExit(f"demo: reconcile exited {rc}, expected {ok}")
    return rc


def main() -> int:
    sandbox = Sandbox(prefix="rcldemo")
    sandbox.down()  # a previous demo killed half-way leaves nothing behind either
    state = tempfile.mkdtemp(prefix="rcldemo-state-")
    try:
        banner("Sandbox node: namespace rcldemo-node with eth0 and two pods")
        sandbox.up(PODS)
        node_args = ["--config", CONFIG, *sandbox.target_args(state)]
        banner("Validate (what CI and the pre-receive hook run; no root needed)")
        reconcile("--validate", CONFIG)
        banner("Plan")
        reconcile("--plan", *node_args, ok=(2,))
        banner("Apply")
        reconcile("--apply", *node_args)
        banner("Plan again: converged")
        reconcile("--plan", *node_args)
        banner("Policy: frontend pod pings the backend pod; only TCP 8080 is allowed in")
        r = sandbox.exec(sandbox.pod_ns(PODS[0]), "ping", "-c", "2", "-W", "1", PODS[1].ip)
        summary = [line for line in r.stdout.splitlines() if "packets transmitted" in line]
        print(summary[0] if summary else r.stderr.strip())
        why = ["--config", CONFIG, "--node", "node-1", "--bpffs-root", sandbox.bpffs_root]
        reconcile("--explain", "--from", PODS[0].ip, "--to", f"{PODS[1].ip}:8/ICMP", "--kernel",
                  *why)  # fmt: skip
        reconcile("--explain", "--from", PODS[0].ip, "--to", f"{PODS[1].ip}:8080/TCP", *why)
        banner(f"Service: frontend pod -> ClusterIP {CLUSTER_IP}:80, served by BPF NAT")
        server = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{sandbox.pod_ns(PODS[1])}",
                sys.executable,
                "-m",
                "sandbox.echo",
                "backend-0",
                "8080",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            code = (
                f"import socket; s = socket.create_connection(('{CLUSTER_IP}', 80), timeout=3); "
                "print('reply from', s.makefile().readline().strip())"
            )
            r = sandbox.exec(sandbox.pod_ns(PODS[0]), sys.executable, "-c", code)
            print(r.stdout.strip() or r.stderr.strip())
            print("(the backend saw the frontend pod's own address: no SNAT)")
        finally:
            server.kill()
            server.wait()
        reconcile("--explain", "--from", PODS[0].ip, "--to", f"{CLUSTER_IP}:80/TCP", "--kernel",
                  *why)  # fmt: skip
        banner("Status")
        reconcile("--status", *sandbox.target_args(state))
        return 0
    finally:
        banner("Teardown")
        sandbox.down()
        subprocess.run(["rm", "-rf", state])
        print("removed namespaces rcldemo-*, pins under", sandbox.bpffs_root)


if __name__ == "__main__":
    sys.exit(main())
