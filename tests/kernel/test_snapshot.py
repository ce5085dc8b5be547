"""`--snapshot` on the node, `--plan --observed` anywhere: the same plan as
the live one, made with no kernel access (and without bcc)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.kernel.conftest import PODS
from tests.kernel.gitops_support import ENV
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
    ci = subprocess.run(
        [sys.executable, "-c", NO_KERNEL, "--plan", "--json", "--observed", str(path),
         "--config", str(node.config), "--no-cache",
         "--bpffs-root", "/nonexistent", "--state-dir", str(tmp_path / "ci-state")],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert ci.returncode == 2, ci.stderr
    live_plan, ci_plan = json.loads(live), json.loads(ci.stdout)
    assert ci_plan["changes"] == live_plan["changes"]
    assert ci_plan["observed_fingerprint"] == live_plan["observed_fingerprint"]
    addresses = {c["address"] for c in ci_plan["changes"]}
    assert "tc/cali-back0/ingress" in addresses and any("10.96.0.2" in a for a in addresses)
    # text form, and a snapshot that is not one
    rc, out, _ = node.run("--plan", "--observed", str(path))
    assert rc == 2 and "planned against the snapshot" in out and "+ tc/cali-back0/ingress" in out
    (tmp_path / "bad.json").write_text('{"format_version": 99}')
    rc, _, err = node.run("--plan", "--observed", str(tmp_path / "bad.json"))
    assert rc == 1 and "not a snapshot of format 1 (found 99)" in err
    # applied, the snapshot plan of the new state is empty too
    node.apply_converged()
    rc, snap, _ = node.run("--snapshot")
    path.write_text(snap)
    rc, out, _ = node.run("--plan", "--observed", str(path))
    assert rc == 0 and "No changes." in out
