"""GitOps: a sandbox node converged to 10,000 services x 10 endpoints, following
a bare repository with `reconcile --watch --repo`.

1. `push_latency`: from the start of `git push` (a one-service change) until
   the changed NAT backend entry holds its new value in the kernel; woken by
   the post-receive hook (`--wake-addr`), and by polling the ref every second.
2. `idle`: a converged watcher's CPU (user+sys, its git children included)
   per wall second, and its RSS, over a window without events.
3. `veth`: a new workload veth that a WorkloadEndpoint names: from the link
   appearing to our tc filter on it (p50/p95 over 20 veths), and how many
   were attached on the link event itself, ahead of the pass.

Run: python -m bench.gitops_bench [--quick]
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import services_gen as gen
from bench.common import RECONCILE, cli_env, report
from bench.nat_bench import (
    BACKEND,
    BACKEND_ADDRS,
    CLIENT,
    CT_SIZE,
    ENDPOINTS,
    _edit_one_service,
    _populate,
    run_rss,
)
from reconciler.datapath.maps import nat_types as nl
from reconciler.kernel import bpf as bpfsys
from sandbox.netns import Pod, Sandbox
from tests.kernel.gitops_support import Watch

ROOT = Path(__file__).resolve().parents[1]
SERVICES = 10_000
# Pods whose WorkloadEndpoints are in the repository from the start; their
# veths are created one by one while the watcher runs.
LATE = tuple(Pod(f"late{n}", f"10.65.2.{10 + n}") for n in range(20))
FLUX_POLL_S, ARGO_POLL_S = 60, 120  # the default poll intervals of Flux and Argo CD
CONVERGE_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _late_weps() -> str:
    return "".join(
        f"""---
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: {pod.name}, namespace: {gen.NAMESPACE}, labels: {{role: late}}}}
spec: {{node: {gen.NODE}, orchestrator: k8s, interfaceName: {pod.host_iface},
        ipNetworks: [{pod.ip}/32]}}
"""
        for pod in LATE
    )


class Node:
    """A sandbox node, a working repository (the config) and the bare server
    repository it pushes to, with our hooks installed."""

    def __init__(self, sb: Sandbox, tmp: Path) -> None:
        self.sb = sb
        self.config = tmp / "work"  # what _edit_one_service edits
        self.bare = tmp / "server.git"
        # the children run this checkout's package, as the hooks will
        self.env = cli_env({"XDG_CACHE_HOME": str(tmp / "cache"), "PYTHONPATH": str(ROOT)})
        self.args = [
            *sb.target_args(str(tmp / "state"), gen.NODE),
            "--repo",
            str(self.bare),
            "--ref",
            "main",
        ]
        gen.write_node(
            self.config,
            (CLIENT.name, gen.CLIENT_IP),
            (BACKEND.name, BACKEND_ADDRS),
            conntrack_size=CT_SIZE,
        )
        (self.config / "late.yaml").write_text(_late_weps())
        gen.write_services(self.config, SERVICES, ENDPOINTS)
        self.git("init", "-q", "--bare", "-b", "main", str(self.bare), cwd=tmp)
        self.git("init", "-q", "-b", "main")
        self.git("remote", "add", "origin", str(self.bare))
        self.git("add", "-A")
        self.git("commit", "-q", "-m", f"{SERVICES} services")

    def git(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        cmd = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args]
        return subprocess.run(
            cmd, cwd=cwd or self.config, capture_output=True, text=True, env=self.env, check=True
        )

    def install_hooks(self, *node_urls: str) -> None:
        urls = [a for url in node_urls for a in ("--node-url", url)]
        subprocess.run(
            [RECONCILE, "--install-hooks", str(self.bare), *urls],
            capture_output=True,
            text=True,
            env=self.env,
            check=True,
        )

    def reconcile(self, *extra: str) -> tuple[float, float, str]:
        return run_rss([RECONCILE, *self.args, *extra], self.env)

    @contextmanager
    def watcher(self, *extra: str) -> Iterator[Watch]:
        proc = subprocess.Popen(
            [RECONCILE, "--watch", "--json", *self.args, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        w = Watch(proc)
        try:
            w.wait_record(lambda r: r["result"] != "failed", timeout=300)
            time.sleep(1.0)  # idle: it writes its caches
            yield w
        finally:
            if proc.poll() is None:
                w.stop(60)


def push_latency(node: Node, w: Watch, services: list[int]) -> dict[str, list[float]]:
    """One commit and push per service; seconds from the start of `git push`
    until the kernel holds the new entry, the push's own wall time, and the
    watcher's pass times."""
    fd = bpfsys.obj_get(f"{node.sb.bpffs_root}/maps/{nl.MAP_NAT_BE}")
    out: dict[str, list[float]] = {"latency": [], "push": [], "pass": []}
    try:
        for i in services:
            for name, value in zip(
                ("latency", "push", "pass"), _one_push(node, w, fd, i), strict=True
            ):
                out[name].append(value)
            time.sleep(0.5 + random.random() * 0.5)  # idle: caches written; a random poll phase
    finally:
        bpfsys.close(fd)
    return out


def _one_push(node: Node, w: Watch, fd: int, i: int) -> tuple[float, float, float]:
    _, key, value = _edit_one_service(node, i)  # type: ignore[arg-type]
    node.git("commit", "-q", "-am", f"move {gen.name(i)}'s last endpoint")
    source = "git:" + node.git("rev-parse", "HEAD").stdout.strip()
    mark = w.mark()
    ended: list[float] = []

    def push() -> None:
        cmd = ["git", "push", "-q", "origin", "main"]
        done = subprocess.run(cmd, cwd=node.config, capture_output=True, env=node.env)
        ended.append(time.perf_counter())
        if done.returncode != 0:
            ended.append(-1.0)

    start = time.perf_counter()
    pusher = threading.Thread(target=push)
    pusher.start()
    while bpfsys.map_lookup(fd, key) != value:
        if time.perf_counter() - start > CONVERGE_TIMEOUT_S:
            raise RuntimeError(f"{gen.name(i)} did not converge:\n{w.log[-3000:]}")
        time.sleep(0.002)
    latency = time.perf_counter() - start
    pusher.join(60)
    if len(ended) != 1:
        raise RuntimeError(f"git push of {gen.name(i)} failed or hung")
    record = w.wait_after(mark, lambda r: r["source"] == source, timeout=30)
    return latency, ended[0] - start, float(record["duration_s"])


def _cpu_s(pid: int) -> float:
    """User+sys seconds of a process and of the children it waited for (git)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[n]) for n in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def idle(w: Watch, seconds: float) -> dict[str, float]:
    """CPU per wall second and RSS of a watcher left alone for `seconds`."""
    pid, mark = w.proc.pid, w.mark()
    cpu0, t0 = _cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, t1 = _cpu_s(pid), time.monotonic()
    passes = w.records[mark:]
    return {
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "rss_mb": _status_kb(pid, "VmRSS") / 1024,
        "hwm_mb": _status_kb(pid, "VmHWM") / 1024,
        "passes": float(len(passes)),
        "pass_s": sum(float(r["duration_s"]) for r in passes),
    }


def _attached(node: Node, iface: str) -> bool:
    out = subprocess.run(
        ["tc", "-n", node.sb.node, "filter", "show", "dev", iface, "ingress"],
        capture_output=True,
        text=True,
    ).stdout
    return "rcl:tc@" in out


def veth(node: Node, w: Watch, pods: tuple[Pod, ...]) -> dict[str, list[float]]:
    """Per pod: seconds from its host veth appearing to our tc filter on it
    (polled with ip and tc, as the kernel test does), and the pass time."""
    out: dict[str, list[float]] = {"attach": [], "pass": [], "on_event": []}
    for pod in pods:
        seen: dict[str, float] = {}
        mark = w.mark()
        poller = threading.Thread(target=_follow, args=(node, pod.host_iface, seen))
        poller.start()
        node.sb.add_pod(pod)
        poller.join()
        if "filter" not in seen:
            raise RuntimeError(f"{pod.host_iface} was not attached:\n{w.log[-3000:]}")
        out["attach"].append(seen["filter"] - seen["link"])
        record = w.wait_after(
            mark, lambda r: r["trigger"] == "interfaces changed" and r["changes"], timeout=30
        )
        out["pass"].append(float(record["duration_s"]))
        out["on_event"].append(float(f"tc/{pod.host_iface}/ingress" in record.get("attached", ())))
        time.sleep(1.0)
    return out


def _follow(node: Node, iface: str, seen: dict[str, float]) -> None:
    """Note when `iface` appears in the node, then when our filter is on it."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    while time.monotonic() < deadline and "filter" not in seen:
        if "link" not in seen:
            shown = subprocess.run(
                ["ip", "-n", node.sb.node, "link", "show", iface], capture_output=True
            )
            if shown.returncode == 0:
                seen["link"] = time.monotonic()
        elif _attached(node, iface):
            seen["filter"] = time.monotonic()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def _latency_rows(how: str, got: dict[str, list[float]], target: str) -> list[tuple[str, Any, str]]:
    lat, push, passes = got["latency"], got["push"], got["pass"]
    n = len(lat)
    return [
        (f"{how}: push -> kernel, p50: s ({n} pushes)", statistics.median(lat), target),
        (f"{how}: push -> kernel, p95: s", _p95(lat), f"range {min(lat):.3f}-{max(lat):.3f}"),
        (f"{how}: git push wall (pre-receive included), p50: s", statistics.median(push), ""),
        (f"{how}: the watcher's pass, p50: s", statistics.median(passes),
         f"p95 {_p95(passes):.3f}"),
    ]  # fmt: skip


def _idle_rows(how: str, got: dict[str, float], seconds: float) -> list[tuple[str, Any, str]]:
    return [
        (
            f"{how}: idle CPU over {seconds:g} s: % of a core",
            100 * got["cpu_share"],
            f"target < 1%; {got['passes']:.0f} pass(es), {got['pass_s']:.3f} s in passes",
        ),
        (f"{how}: RSS after idle: MiB", got["rss_mb"],
         f"peak {got['hwm_mb']:.0f} MiB; target < 300"),
    ]  # fmt: skip


def main(quick: bool = False) -> dict[str, Any]:
    pushes = 10 if quick else 50
    window = 20.0 if quick else 60.0
    veths = LATE[:5] if quick else LATE
    load = os.getloadavg()
    sb = Sandbox(prefix=f"rclbgit{uuid.uuid4().hex[:4]}")
    rows: list[tuple[str, Any, str]] = []
    with tempfile.TemporaryDirectory(prefix="rclbgit-") as tmpdir:
        try:
            _populate(sb)
            node = Node(sb, Path(tmpdir))
            node.install_hooks()
            node.git("push", "-q", "origin", "main")
            cold, rss, _ = node.reconcile("--apply")
            node.reconcile("--apply")  # as a node that has been following: caches warm
            rows.append(
                (f"cold --apply --repo, {SERVICES:,} services: s", cold, f"peak RSS {rss:,.0f} MiB")
            )
            picks = random.Random(11).sample(range(SERVICES), 2 * pushes)
            port = _free_port()
            node.install_hooks(f"http://127.0.0.1:{port}")
            with node.watcher("--wake-addr", f"127.0.0.1:{port}") as w:
                signal = push_latency(node, w, picks[:pushes])
                idle_signal = idle(w, window)
                attach = veth(node, w, veths)
            node.install_hooks()  # no node to wake: the watcher polls
            with node.watcher("--poll-interval", "1") as w:
                polled = push_latency(node, w, picks[pushes:])
                idle_poll = idle(w, window)
        finally:
            sb.down()
    rows += _latency_rows("post-receive wake-up", signal, "target p50 < 1 s, p95 < 2 s")
    rows += _latency_rows("polling every 1 s", polled, f"Flux polls every {FLUX_POLL_S} s, "
                          f"Argo CD every {ARGO_POLL_S} s")  # fmt: skip
    rows += _idle_rows("watcher (wake-up, poll 15 s, drift check 30 s)", idle_signal, window)
    rows += _idle_rows("watcher (poll 1 s, drift check 30 s)", idle_poll, window)
    took = attach["attach"]
    rows += [
        (f"new veth: link -> our tc filter, p50: s ({len(veths)} veths)", statistics.median(took),
         f"range {min(took):.3f}-{max(took):.3f}; target 0.1 s"),
        ("new veth: link -> our tc filter, p95: s", _p95(took), ""),
        ("new veth: attached on the link event, ahead of the pass",
         f"{sum(attach['on_event']):.0f} of {len(veths)}", ""),
        ("new veth: the watcher's pass, median: s", statistics.median(attach["pass"]), ""),
        ("load average (1, 5, 15 min) at the start", " ".join(f"{x:.2f}" for x in load), ""),
        ("load average at the end", " ".join(f"{x:.2f}" for x in os.getloadavg()), ""),
    ]
    return report(f"gitops: {SERVICES:,} services x {ENDPOINTS} endpoints", rows)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
