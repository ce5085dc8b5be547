"""Hostile configuration and hostile neighbours on a real node: a Service
that would take over node ports, someone else's filter at our priority,
edited or outdated plan files, and kill -9 at random points of apply."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from reconciler.engine.lock import apply_lock
from tests.kernel.conftest import PODS, bpftool_dump, foreign_tc_filter
from tests.kernel.test_reconcile import _snapshot, tc_filters

FRONT, BACK = PODS
ROOT = str(Path(__file__).resolve().parents[2])

SSH_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: grab, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.0.77
  ports:
  - {name: ssh, port: 22, protocol: TCP, nodePort: 22}
"""


def test_node_port_22_is_refused_and_nothing_is_programmed(node):
    node.felix()
    node.wep(FRONT)
    node.apply_converged()
    before = _snapshot(node)
    fe_before = _nat_frontends(node)
    node.write("svc.yaml", SSH_SERVICE)
    for mode in ("--plan", "--apply"):
        rc, out, err = node.run(mode)
        assert rc == 1, out + err
        assert "svc.yaml:8: Service/shop/grab: spec.ports[0].nodePort: 22/TCP is a failsafe" in err
    assert _snapshot(node) == before
    assert _nat_frontends(node) == fe_before
    assert not any(k.endswith(":22/") for k in _nat_frontends(node))


def test_loopback_external_ip_is_refused(node):
    node.felix()
    cluster_ip = SSH_SERVICE.replace("NodePort", "ClusterIP").replace(", nodePort: 22", "")
    node.write("svc.yaml", cluster_ip + "  externalIPs: [127.0.0.1]\n")
    rc, out, err = node.run("--plan")
    assert rc == 1
    assert "svc.yaml:9: Service/shop/grab: spec.externalIPs[0]: '127.0.0.1' is a loopback" in err


def _nat_frontends(node) -> list[str]:
    """rcl_nat_fe's keys as bpftool (not our code) reads them, as ip:port."""
    from tests.support.nat_records import FrontendKey

    pin = Path(node.sandbox.bpffs_root) / "maps" / "rcl_nat_fe"
    if not pin.exists():
        return []
    keys = [FrontendKey.decode(k) for k, _ in bpftool_dump(pin)]
    return sorted(f"{k.vip}:{k.port}/" for k in keys)


def test_foreign_filter_at_our_priority_is_left_alone_and_named(node):
    """On the data interface too (tests/kernel/test_foreign_at_ours.py applies around one)."""
    from reconciler.datapath.programs import TC_PRIO

    node.felix()
    foreign_tc_filter(node, "eth0", TC_PRIO)
    rc, out, err = node.run("--plan")
    assert rc == 2, out + err
    warning = f"Warning: tc/eth0/ingress prio {TC_PRIO} someone-else: a tc filter that is not ours"
    assert warning in out, out
    assert "+ tc/eth0/" not in out and "+ prog/tc@" in out, out
    shown = tc_filters(node, "eth0", "ingress")
    assert "someone-else" in shown and "rcl:" not in shown


def test_edited_plan_file_is_refused(node, tmp_path):
    node.felix()
    node.wep(FRONT)
    plan_file = tmp_path / "p.json"
    rc, _, _ = node.run("--plan", "--out", str(plan_file))
    assert rc == 2
    before = _snapshot(node)
    made = json.loads(plan_file.read_text())
    edited = {**made, "changes": [c for c in made["changes"]
                                  if not c["address"].startswith("tc/cali")]}  # fmt: skip
    plan_file.write_text(json.dumps(edited))
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 1 and "plan file does not match the changes" in err
    assert _snapshot(node) == before
    # the same changes, another build (what the programs are compiled with)
    edited = {**made, "build": {**made["build"], "flags": ["-include", "/etc/shadow"]}}
    plan_file.write_text(json.dumps(edited))
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 1, out + err
    assert err.splitlines()[-1] == (
        "error: plan file's build does not match the configuration's; run --plan again"
    )
    assert _snapshot(node) == before


def test_plan_file_is_refused_after_a_new_interface_appears(node, tmp_path):
    node.felix()
    plan_file = tmp_path / "p.json"
    node.apply_converged()
    node.wep(FRONT)
    rc, _, _ = node.run("--plan", "--out", str(plan_file))
    assert rc == 2
    subprocess.run(["ip", "-n", node.sandbox.node, "link", "add", "eth9", "type", "veth",
                    "peer", "name", "eth9p"],
                   check=True)  # fmt: skip
    subprocess.run(["ip", "-n", node.sandbox.node, "link", "set", "eth9", "up"], check=True)
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 1, out + err
    assert "plan is stale" in err or "plan file does not match" in err
    assert tc_filters(node, "eth9", "ingress") == ""
    node.apply_converged()
    assert "rcl:" in tc_filters(node, "eth9", "ingress")


def test_two_state_dirs_share_one_lock(node, tmp_path):
    node.felix()
    with apply_lock(node.sandbox.bpffs_root, node.sandbox.node):
        rc, out, err = node.run("--apply", "--state-dir", str(tmp_path / "other-state"))
    assert rc == 1 and "another apply is running" in err


def test_kill_9_at_random_points_of_apply_converges(node, tmp_path):
    """Apply killed at random moments: the next apply converges, the lock is
    free at once, and nothing is left running or pinned outside our root."""
    node.felix()
    for pod in PODS:
        node.wep(pod)
    svc = (
        "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: shop}}\n"
        "spec:\n  clusterIP: 10.96.1.{i}\n  selector: {{app: back0}}\n"
        "  ports: [{{name: http, port: 80, protocol: TCP}}]\n"
    )
    for i in range(1, 40):
        node.write(f"svc-{i}.yaml", svc.format(i=i))
    rng = random.Random(7)
    args = [sys.executable, "-m", "reconciler.cli.main", "--apply", *node.args()]
    env = {**os.environ, "PYTHONPATH": ROOT}
    killed = 0
    for round_ in range(8):
        # change something each round, so every apply has work to do
        node.write("svc-extra.yaml", svc.format(i=100 + round_).replace("s100", f"x{round_}"))
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(0.05, 3.0))  # start-up, plan, build, apply, verify
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(30)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in children)
        with apply_lock(node.sandbox.bpffs_root, node.sandbox.node):
            pass  # free at once: no descriptor outlived its holder
    assert killed
    node.apply_converged()
    pins = [p for p in Path(node.sandbox.bpffs_root).rglob("*") if ".tmp" in p.name]
    assert pins == []


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    return out
