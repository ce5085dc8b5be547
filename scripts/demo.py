"""`make demo`: a sandbox node in network namespaces, reconciled from the example repo.

Shows validate, plan, apply, a second plan with "No changes.", real traffic
through the programs, --status, and tears everything down (also on failure).
With --keep (`make demo KEEP=1`) a demo that succeeded leaves its node up
for the user to run the commands by hand; --down (`make demo-down`) removes
it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.netns import Pod, Sandbox

CONFIG = "examples/cluster-config"
PODS = (Pod("front0", "10.65.0.10"), Pod("back0", "10.65.0.20"))
CLUSTER_IP = "10.96.0.50"  # Service shop/backend in the example config
PREFIX = "rcldemo"
KEPT_STATE = "/run/rcldemo-state"  # a kept node's state directory: known to --down


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def reconcile(*args: str, ok: tuple[int, ...] = (0,)) -> int:
    shown = " ".join(shlex.quote(a) for a in args)
    print(f"$ reconcile {shown}", flush=True)
    rc = subprocess.run([str(Path(sys.executable).parent / "reconcile"), *args]).returncode
    if rc not in ok:
        raise SystemExit(f"demo: reconcile exited {rc}, expected {ok}")
    return rc


def down() -> None:
    """Remove the demo's node, pins, cgroup and state, whoever left them."""
    Sandbox.by_prefix(PREFIX).down()
    subprocess.run(["rm", "-rf", KEPT_STATE])
    print(f"removed namespaces {PREFIX}-*, pins under /sys/fs/bpf/{PREFIX}")


def kept(sandbox: Sandbox, state: str) -> None:
    """Say what a kept node is and how to use it."""
    node = " ".join(shlex.quote(a) for a in sandbox.target_args(state))
    front, back = (sandbox.pod_ns(p) for p in PODS)
    print(f"The sandbox node is kept. Try, as root:\n"
          f"  .venv/bin/reconcile --plan --config {CONFIG} {node}\n"
          f"  .venv/bin/reconcile --status {node}\n"
          f"  nsenter --net=/run/netns/{front} ping -c 1 -W 1 {PODS[1].ip}"
          "   # dropped: the example lets only TCP 8080 in\n"
          f"  nsenter --net=/run/netns/{back} ip addr\n"
          f"Edit {CONFIG}, then --plan and --apply with the options above.\n"
          "Remove it with: make demo-down")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true",
                        help="leave the sandbox node up after a demo that succeeded")
    parser.add_argument("--down", action="store_true",
                        help="remove a kept sandbox node and nothing else")  # fmt: skip
    args = parser.parse_args(argv)
    if args.down:
        down()
        return 0
    down()  # a previous demo, kept or killed half-way, leaves nothing behind
    sandbox = Sandbox.by_prefix(PREFIX)
    if args.keep:
        os.makedirs(KEPT_STATE, exist_ok=True)
        state = KEPT_STATE
    else:
        state = tempfile.mkdtemp(prefix="rcldemo-state-")
    keep = False
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
        why = ["--config", CONFIG, "--node", "node-1", "--bpffs-root", sandbox.bpffs_root,
               "--netns", sandbox.node]  # the interfaces are in the node's namespace
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
        keep = args.keep
        return 0
    finally:
        if keep:
            banner("Kept")
            kept(sandbox, state)
        else:
            banner("Teardown")
            sandbox.down()
            subprocess.run(["rm", "-rf", state])
            print(f"removed namespaces {PREFIX}-*, pins under", sandbox.bpffs_root)


if __name__ == "__main__":
    sys.exit(main())
