"""What a new operator meets on a real node: an empty or wrong source is
refused instead of wiping the node, plans list what is validated but not
enforced and the pod interfaces nobody configured, and --status says by its
exit code whether the kernel still matches."""

from __future__ import annotations

import json
import subprocess

from tests.kernel.conftest import PODS

FRONT, BACK = PODS

FELIX_EXTRA = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  bpfEnabled: true
  bpfDataIfacePattern: "^eth"
  bpfEnforceRPF: Strict
  prometheusMetricsEnabled: true
  ipipEnabled: true
  vxlanEnabled: true
  healthPort: 9099
"""


def tc_filters(node, iface: str) -> str:
    return subprocess.run(
        ["tc", "-n", node.sandbox.node, "filter", "show", "dev", iface, "ingress"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_a_source_with_no_resources_is_refused_unless_allowed(node):
    # a directory without YAML, as `--config .` in the wrong place
    for mode in ("--plan", "--apply"):
        rc, out, err = node.run(mode)
        assert rc == 1, out + err
        assert "holds no resources (0 file(s))" in err
        assert "pass --allow-empty if that is meant; nothing was changed" in err
    rc, out, err = node.run("--plan", "--allow-empty")
    # with no FelixConfiguration, bpfEnabled is false: nothing of ours on this node
    assert rc == 0, out + err
    assert "Warning: bpfEnabled is false: no FelixConfiguration" in out


def test_emptying_an_applied_node_needs_allow_empty(node):
    node.felix()
    node.wep(FRONT)
    node.apply_converged()
    assert "rcl:tc@" in tc_filters(node, "cali-front0")
    node.remove("felix.yaml")  # resources remain, but nothing turns the dataplane on
    rc, out, err = node.run("--apply")
    assert rc == 1, out + err
    assert "the plan would destroy all " in err
    assert "(bpfEnabled is false: no FelixConfiguration (default or this node's) sets it" in err
    node.remove(f"wep-{FRONT.name}.yaml")
    node.remove("profile-kns-shop.yaml")  # the namespace profile the endpoint fixture wrote
    rc, out, err = node.run("--apply")
    assert rc == 1 and "holds no resources" in err, out + err
    assert "rcl:tc@" in tc_filters(node, "cali-front0")  # untouched
    rc, out, err = node.run("--apply", "--allow-empty")
    assert rc == 0, out + err
    assert "- tc/cali-front0/ingress" in out
    assert tc_filters(node, "cali-front0") == ""
    rc, out, err = node.run("--plan", "--allow-empty")
    assert rc == 0 and "No changes." in out, out + err


def test_plan_lists_what_is_not_enforced_and_unconfigured_pod_interfaces(node):
    node.write("felix.yaml", FELIX_EXTRA)
    node.wep(FRONT)  # cali-back0 exists, but no WorkloadEndpoint names it: held closed
    wep = node.config / f"wep-{FRONT.name}.yaml"  # a field no datapath of ours acts on
    wep.write_text(wep.read_text() + "  mac: ee:ee:ee:ee:ee:ee\n")
    rc, out, err = node.run("--plan")
    assert rc == 2, out + err
    for field in ("ipipEnabled", "vxlanEnabled"):
        assert (
            f"  FelixConfiguration/default: spec.{field}: not enforced: not a setting this "
            "node's datapath has" in out
        )
    assert "spec.bpfEnforceRPF" not in out  # enforced (tests/kernel/test_rpf.py)
    # the watcher's (tests/kernel/test_gitops_watch.py)
    assert "spec.healthPort" not in out and "spec.prometheusMetricsEnabled" not in out
    assert "WorkloadEndpoint/shop/front0: spec.mac: not enforced" in out
    assert (
        "Warning: interface cali-back0: no WorkloadEndpoint on node 'node-1' names it: "
        "its traffic is dropped until one does" in out
    )
    rc, out, _ = node.run("--plan", "--json")
    plan = json.loads(out)
    assert "FelixConfiguration/default: spec.vxlanEnabled: not enforced: not a setting this " \
        "node's datapath has" in plan["not_enforced"]  # fmt: skip
    assert plan["version"]
    node.apply_converged()
    # a WorkloadEndpoint whose interface is not there (yet)
    node.write(
        "wep-ghost.yaml",
        (node.config / f"wep-{FRONT.name}.yaml").read_text()
        .replace("name: front0", "name: ghost").replace("cali-front0", "cali-ghost")
        .replace("  mac: ee:ee:ee:ee:ee:ee\n", ""),
    )  # fmt: skip
    rc, out, _ = node.run("--plan")
    assert "Warning: WorkloadEndpoint/shop/ghost: interface cali-ghost does not exist" in out


def test_plan_and_status_leave_the_bpffs_root_to_the_apply(node):
    """Before the first apply, --plan and --status read the node and change
    nothing, not even by making the bpffs root; the apply makes it 0700."""
    import os
    import stat

    node.felix()
    node.wep(FRONT)
    root = node.sandbox.bpffs_root
    assert not os.path.exists(root)
    rc, out, _ = node.run("--plan")
    assert rc == 2, out
    rc, out, _ = node.run("--status")
    assert rc == 0, out
    assert not os.path.exists(root)
    node.apply_converged()
    st = os.lstat(root)
    assert stat.S_ISDIR(st.st_mode) and st.st_mode & 0o777 == 0o700


def test_status_exit_codes_in_sync_drifted_out_of_sync_failed(node, monkeypatch):
    rc, out, _ = node.run("--status", "--json")
    assert rc == 0 and json.loads(out)["sync"]["state"] == "never applied"
    node.felix()
    node.wep(FRONT)
    node.apply_converged()
    rc, out, _ = node.run("--status")
    assert rc == 0, out
    assert "In sync: the kernel matches the source of the last apply." in out
    assert "Warning: interface cali-back0: no WorkloadEndpoint" in out
    # another state directory has no record, and the node holds our objects: not "in sync"
    from reconciler.cli.main import main

    node.capsys.readouterr()
    elsewhere = node.state.parent / "elsewhere"
    args = [a if a != str(node.state) else str(elsewhere) for a in node.sandbox.target_args(
        str(node.state))]  # fmt: skip
    assert main(["--status", "--json", *args]) == 1
    status = json.loads(node.capsys.readouterr().out)
    assert status["sync"]["reason"] == (
        f"the node holds {sum(status['owned'].values())} object(s) of ours, but {elsewhere} has "
        "no record of an apply (applied with another --state-dir?)"
    )
    assert status["sync"]["state"] == "unknown" and sum(status["owned"].values()) > 30

    # a hand edit: our filter removed behind our back
    subprocess.run(
        ["tc", "-n", node.sandbox.node, "filter", "del", "dev", "cali-front0", "ingress"],
        check=True,
    )
    rc, out, _ = node.run("--status", "--json")
    status = json.loads(out)
    assert rc == 2, out
    assert status["sync"]["state"] == "drifted" and status["sync"]["changes"] >= 1
    assert status["version"] and status["format_version"] == 2
    node.apply_converged()

    node.wep(BACK)  # the source moved on, not yet applied
    rc, out, _ = node.run("--status")
    assert rc == 2, out
    assert "Out of sync: the source changed since the last apply" in out

    from reconciler.apply import executor

    def broken(self, change):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(executor.Executor, "run", broken)
    rc, out, err = node.run("--apply")
    assert rc == 1 and "apply failed at" in err, out + err
    rc, out, _ = node.run("--status")
    assert rc == 1, out
    assert "Last reconcile failed: apply failed at" in out
    monkeypatch.undo()
    node.apply_converged()
    rc, out, _ = node.run("--status")
    assert rc == 0, out


def test_a_netns_that_does_not_exist_is_refused_and_never_created(tmp_path):
    """A mistyped --netns once made pyroute2 create an empty namespace that
    --watch's link watcher then opened, and the node converged into it.
    Every mode that targets a node refuses the name before anything starts."""
    import os
    import sys
    import uuid
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    name = f"rcl-typo-{uuid.uuid4().hex[:8]}"
    root = f"/sys/fs/bpf/rcl-test-typo-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "state"
    target = ["--netns", name, "--bpffs-root", root, "--state-dir", str(state), "--node", "node-1"]
    config = ["--config", str(repo / "examples" / "cluster-config")]
    try:
        for mode, args in (
            ("--plan", config),
            ("--apply", config),
            ("--watch", [*config, "--interval", "1"]),
            ("--status", []),
            ("--snapshot", []),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "reconciler.cli.main", mode, *args, *target],
                capture_output=True, text=True, timeout=30, cwd=repo,
            )  # fmt: skip
            assert done.returncode == 1, (mode, done.stdout, done.stderr)
            assert done.stderr == (
                f"error: --netns: network namespace {name!r} does not exist (/run/netns/{name}); "
                "nothing was changed\n"
            ), mode
            assert not os.path.exists(f"/run/netns/{name}"), mode
            assert not os.path.exists(root), mode
            assert not state.exists(), mode
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        subprocess.run(["rm", "-rf", root], capture_output=True)


def test_plan_and_status_on_a_node_without_bpffs_mount_nothing(node):
    """A node that never mounted bpffs (the apply mounts it): --plan and
    --status read it as holding nothing of ours, and leave the mount table as
    they found it. Run in a private mount namespace with /sys/fs/bpf detached;
    the sandbox's root is under /sys/fs/bpf, so no bpffs serves it there."""
    from tests.kernel.test_bpffs_mount import in_private_mount_ns

    node.felix()
    node.wep(FRONT)
    script = f"""
        import sys
        from reconciler.cli.main import main
        def bpf_mounts():
            return [l.split()[1] for l in open("/proc/self/mounts") if l.split()[2] == "bpf"]
        before = bpf_mounts()
        assert "/sys/fs/bpf" not in before, before
        plan = main(["--plan", *{node.args()!r}])
        status = main(["--status", *{node.sandbox.target_args(str(node.state))!r}])
        print("exits", plan, status, file=sys.stderr)
        assert bpf_mounts() == before, (before, bpf_mounts())
        """
    assert node.sandbox.bpffs_root.startswith("/sys/fs/bpf/")
    done = in_private_mount_ns(script)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exits 2 0" in done.stderr, done.stderr
    assert "+ prog/tc@" in done.stdout  # everything to create: nothing pinned was found
    assert "Warning: bpffs is not mounted at /sys/fs/bpf: the apply mounts it" in done.stdout
