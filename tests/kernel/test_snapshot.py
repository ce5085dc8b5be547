"""`--snapshot` on the node, `--plan --observed` anywhere: the same plan as
the live one, made with no kernel access (and without bcc)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.kernel.conftest import PODS
from tests.kernel.gitops_support import ENV
from tests.kernel.test_policy import BACK_FROM_FRONT
from tests.kernel.test_watch import SERVICE

FRONT, BACK = PODS

NO_KERNEL = """
import sys
from reconciler.kernel import bpf, rtnetlink

def refuse(*a, **k):
    raise AssertionError("touched the kernel")

bpf._lib = refuse
rtnetlink.Rtnl = refuse
from reconciler.cli.main import main
rc = main(sys.argv[1:])
assert "bcc" not in sys.modules, "imported bcc"
sys.stdout.flush()
sys.exit(rc)
"""


def plan_elsewhere(path, node, tmp_path) -> subprocess.CompletedProcess[str]:
    """`--plan --json --observed path` with no kernel, no bcc and no record."""
    return subprocess.run(
        [sys.executable, "-c", NO_KERNEL, "--plan", "--json", "--observed", str(path),
         "--config", str(node.config), "--no-cache",
         "--bpffs-root", "/nonexistent", "--state-dir", str(tmp_path / "ci-state")],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip


def test_a_snapshot_plans_as_the_live_kernel_does(node, tmp_path):
    node.felix()
    node.wep(FRONT)
    node.write("svc/a.yaml", SERVICE.format(name="a", vip="10.96.0.1", ip="10.65.0.20"))
    node.apply_converged()
    # the change a pull request would make: a pod, a service edited, one added
    node.wep(BACK)
    node.write("svc/a.yaml", SERVICE.format(name="a", vip="10.96.0.1", ip="10.65.0.21"))
    node.write("svc/b.yaml", SERVICE.format(name="b", vip="10.96.0.2", ip="10.65.0.22"))
    rc, live, _ = node.run("--plan", "--json")
    assert rc == 2
    rc, snap, _ = node.run("--snapshot")
    assert rc == 0
    path = tmp_path / "node.json"
    path.write_text(snap)
    taken = json.loads(snap)
    assert taken["node"] == "node-1" and "rcl_nat_be" in taken["tables"]
    ci = plan_elsewhere(path, node, tmp_path)
    assert ci.returncode == 2, ci.stderr
    live_plan, ci_plan = json.loads(live), json.loads(ci.stdout)
    assert ci_plan["changes"] == live_plan["changes"]
    assert ci_plan["observed_fingerprint"] == live_plan["observed_fingerprint"]
    addresses = {c["address"] for c in ci_plan["changes"]}
    # (cali-back0, held closed until its endpoint lands, gets its policy)
    assert "map/rcl_pol_ep/cali-back0" in addresses and any("10.96.0.2" in a for a in addresses)
    # text form, and a snapshot that is not one
    rc, out, _ = node.run("--plan", "--observed", str(path))
    assert rc == 2 and "planned against the snapshot" in out
    assert "+ map/rcl_pol_ep/cali-back0" in out, out
    # --detail lists every entry, as the live plan's does
    rc, detail, _ = node.run("--plan", "--observed", str(path), "--detail")
    _, live_detail, _ = node.run("--plan", "--detail")
    assert rc == 2 and "summarised" not in detail
    assert change_lines(detail) == change_lines(live_detail), detail
    (tmp_path / "bad.json").write_text('{"format_version": 99}')
    rc, _, err = node.run("--plan", "--observed", str(tmp_path / "bad.json"))
    assert rc == 1 and "not a snapshot of format 1 (found 99)" in err
    # applied, the snapshot plan of the new state is empty too
    node.apply_converged()
    rc, snap, _ = node.run("--snapshot")
    path.write_text(snap)
    rc, out, _ = node.run("--plan", "--observed", str(path))
    assert rc == 0 and "No changes." in out


def _removed(plan: dict) -> dict[str, dict]:
    return {c["address"]: c["info"] for c in plan["changes"] if c["action"] == "delete"}


def test_removals_are_named_from_the_applied_record_live_and_in_a_snapshot(
    node, tmp_path, monkeypatch
):
    """A Service and a policy removed from the source: their entries are gone
    from the kernel's point of view only, and the plan names them from the
    state the node last applied, in its own plan and in one against its snapshot."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    node.cached = True
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    node.write("svc/a.yaml", SERVICE.format(name="a", vip="10.96.0.1", ip="10.65.0.20"))
    node.write("policy.yaml", BACK_FROM_FRONT)
    node.apply_converged()
    node.remove("svc/a.yaml")
    node.remove("policy.yaml")
    rc, live, err = node.run("--plan", "--json")
    assert rc == 2, err
    removed = _removed(json.loads(live))
    assert removed["map/rcl_nat_fe/10.96.0.1:80/tcp"] == {
        "frontend": "nat/10.96.0.1:80/tcp", "service": "shop/a:http/tcp",
    }  # fmt: skip
    named = {info.get("policy") for info in removed.values()}
    assert "policy/shop/back-from-front ingress rule 1" in named
    assert "tier/default default action" in named
    rc, out, _ = node.run("--plan")
    assert "10.96.0.1:80/tcp" in out and "(shop/a:http/tcp)" in out
    # the same plan, names and all, against a snapshot, with no record there
    rc, snap, _ = node.run("--snapshot")
    path = tmp_path / "node.json"
    path.write_text(snap)
    ci = plan_elsewhere(path, node, tmp_path)
    assert ci.returncode == 2, ci.stderr
    assert json.loads(ci.stdout)["changes"] == json.loads(live)["changes"]
    # a saved plan with its names applies (its changes are checked again, names too)
    plan_file = tmp_path / "p.json"
    node.run("--plan", "--out", str(plan_file))
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 0 and "Verified" in out, out + err


def change_lines(text: str) -> list[str]:
    """A text plan's change lines."""
    return [line for line in text.splitlines()
            if line.lstrip().startswith(("+ ", "~ ", "- ", "-/+ "))]  # fmt: skip
