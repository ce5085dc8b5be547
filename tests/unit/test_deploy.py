"""The deployment files under deploy/ run the watcher with options it takes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ruamel.yaml import YAML

from reconciler.cli.main import parser

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def parsed(argv: list[str]):
    return parser().parse_intermixed_args(argv)


def test_daemonset_runs_the_watcher_on_the_host_network_with_the_mounts_it_needs():
    docs = list(YAML(typ="safe").load_all((DEPLOY / "kubernetes" / "daemonset.yaml").read_text()))
    [ds] = [d for d in docs if d["kind"] == "DaemonSet"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    [c] = pod["containers"]
    env = {e["name"] for e in c["env"]}
    args = [re.sub(r"\$\((\w+)\)", lambda m: f"<{m.group(1)}>", a) for a in c["args"]]
    assert {"NODE_NAME", "RECONCILE_REPO", "RECONCILE_REF"} <= env
    ns = parsed([*c["command"][1:], *args])
    assert ns.watch and ns.repo == "<RECONCILE_REPO>" and ns.node == "<NODE_NAME>"
    assert ns.metrics_addr == "0.0.0.0:9464" and ns.wake_addr == "0.0.0.0:9465"
    # the probes ask the watcher's own answers, on the metrics address
    for probe, path in (("livenessProbe", "/liveness"), ("readinessProbe", "/readiness")):
        assert c[probe]["httpGet"] == {"path": path, "port": 9464}, c[probe]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/fs/bpf", "/sys/fs/cgroup", "/var/lib/calico-reconciler"} <= mounts
    assert {"BPF", "NET_ADMIN", "SYS_ADMIN"} <= set(c["securityContext"]["capabilities"]["add"])
    assert all(m.get("mountPropagation") != "Bidirectional" for m in c["volumeMounts"])


def test_systemd_unit_runs_the_watcher():
    text = (DEPLOY / "systemd" / "calico-reconciler.service").read_text()
    unit = text.replace("\\\n", " ")
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0] == "/usr/local/bin/reconcile"
    [wake] = [line.split("=", 2)[2] for line in unit.splitlines()
              if line.startswith("Environment=RECONCILE_WAKE_ADDR=")]  # fmt: skip
    argv = [a.replace("${RECONCILE_REPO}", "R").replace("${RECONCILE_REF}", "main")
            .replace("${RECONCILE_WAKE_ADDR}", wake) for a in argv]  # fmt: skip
    ns = parsed([a for a in argv[1:] if a != "$RECONCILE_ARGS"])
    assert ns.watch and ns.repo == "R" and ns.metrics_addr == "127.0.0.1:9464"
    # unauthenticated wake-ups: loopback unless the node's settings name a trusted address
    assert ns.wake_addr == "127.0.0.1:9465"
    assert "Restart=always" in text and "KillSignal=SIGTERM" in text
    assert "KillMode=mixed" in text  # a pass's build children are not signalled with it
    assert "EnvironmentFile=/etc/default/calico-reconciler" in text
