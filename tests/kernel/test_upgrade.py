"""Upgrading the reconciler on a node: the state that the last release before
the package layout (commit BASELINE) applied is taken over by this code
without disturbing it. Service entries, interface slots, maps and cgroup links
stay as they are (workload interfaces gain the flag that puts them under
policy); the only changes allowed are rebuilding the program sets
(when bpf/ changed), pointing filters and links at them, and adding what the
new code adds. After that apply, a plan is "No changes." and service traffic
still flows between pods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.datapath.maps.iface_types import IF_POLICY
from tests.kernel.conftest import PODS
from tests.kernel.test_config_shapes import SERVICE, SLICE

BASELINE = "421939b"  # the flat reconciler/ package, before the layered layout
REPO = Path(__file__).resolve().parents[2]


def tree_of(rev: str, tmp_path: Path) -> Path:
    """The reconciler of commit `rev`, unpacked under `tmp_path` (skips
    when the clone does not have it)."""
    known = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
    )
    if known.returncode != 0:
        pytest.skip(f"commit {rev} is not in this clone (shallow?)")
    tree = tmp_path / f"at-{rev}"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "reconciler", "bpf", "schemas"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@pytest.fixture
def old_code(tmp_path):
    return tree_of(BASELINE, tmp_path)


def run_old(
    tree: Path, argv: list[str], module: str = "reconciler.cli"
) -> subprocess.CompletedProcess[str]:
    """The CLI of the tree at `tree` (the flat layout's main is in reconciler.cli)."""
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); "
        f"from {module} import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300
    )


# Objects whose contents must survive the upgrade untouched.
KEPT = ("map/rcl_nat_", "map/rcl_ifstate", "map/rcl_ct", "map/rcl_globals")


POLICY_FLAG = IF_POLICY  # workloads are now under policy


def gains_policy(change: dict) -> bool:
    """An interface entry whose only difference is the policy flag it gains."""
    if not change["address"].startswith("map/rcl_ifstate/") or change["action"] != "update":
        return False
    before, after = dict(change["before"]), dict(change["after"])
    return before.pop("flags") | POLICY_FLAG == after.pop("flags") and before == after


def gains_host_nat(change: dict) -> bool:
    """The NAT settings entry whose only difference is the node's own UDP
    now balanced at connect time (in TCP mode, the default)."""
    if change["address"] != "map/rcl_nat_globals/0" or change["action"] != "update":
        return False
    before, after = dict(change["before"]), dict(change["after"])
    gained = (before.pop("host_nat"), after.pop("host_nat"), before.pop("host_netns"))
    return gained == (0, 1, 0) and after.pop("host_netns") > 0 and before == after


def gains_globals(change: dict) -> bool:
    """The globals entry whose only differences are settings the datapath
    has gained since, at their defaults: the reverse-path check on, as
    Calico's default (bpfEnforceRPF unset: Loose), and the VXLAN port that
    encapsulation from workloads is refused on (vxlanPort unset: 4789; an
    older entry has no port, which refuses nothing)."""
    if change["address"] != "map/rcl_globals/0" or change["action"] != "update":
        return False
    before, after = dict(change["before"]), dict(change["after"])
    gained = [("rpf", "Disabled", "Loose"), ("vxlan_port", 0, 4789)]
    return all(
        before.pop(k, old) in (old, new) and after.pop(k) == new for k, old, new in gained
    ) and (before == after)


def grows_nat_stats(change: dict) -> bool:
    """The NAT counters' map replaced by a larger one (counters the datapath
    has gained, masquerade's): its counts start again, no flow notices."""
    if change["address"] != "map/rcl_nat_stats" or change["action"] != "replace":
        return False
    before, after = dict(change["before"]), dict(change["after"])
    return before.pop("max_entries") < after.pop("max_entries") and before == after


def test_a_node_applied_by_the_previous_layout_is_taken_over_undisturbed(node, old_code):
    node.felix()
    for pod in PODS:
        node.wep(pod)
    node.write("svc.yaml", SERVICE + "---\n" + SLICE)
    old = run_old(old_code, ["--apply", *node.args()])
    assert old.returncode == 0 and "Verified" in old.stdout, old.stdout + old.stderr

    rc, out, err = node.run("--plan", "--json")
    assert rc in (0, 2), out + err
    plan = json.loads(out)
    disturbed = [
        (c["action"], c["address"])
        for c in plan["changes"]
        if c["address"].startswith(KEPT) and c["action"] != "create"
        and not gains_policy(c) and not gains_host_nat(c) and not gains_globals(c)
        and not grows_nat_stats(c)
    ]  # fmt: skip
    assert disturbed == [], disturbed
    for change in plan["changes"]:
        if change["kind"] in ("tc", "cgroup"):
            # only the program reference may move (a rebuilt program set)
            before, after = change["before"] or {}, change["after"] or {}
            assert {k: v for k, v in before.items() if k != "prog"} == {
                k: v for k, v in after.items() if k != "prog"
            } or change["action"] == "create", change

    node.apply_converged()
    ping = node.sandbox.exec(node.sandbox.pod_ns(PODS[0]), "ping", "-c", "1", "-W", "2", PODS[1].ip)
    assert ping.returncode == 0, ping.stdout + ping.stderr
