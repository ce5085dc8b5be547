"""A node follows a repository whose `.reconcile.yaml` (or --skip-kinds /
--ignore-paths) filters what is read: its source identity carries the
policy's fingerprint, yet every next commit applies (the rewind guard
compares commits, not identities), and while a bad commit holds the node,
drift against the last good commit is still repaired."""

from __future__ import annotations

from pathlib import Path

import git

from tests.kernel.conftest import FELIX, KNS_SHOP, PODS, WEP
from tests.kernel.gitops_support import delete_filter, watch
from tests.kernel.test_gitops_push import attached, repo_args
from tests.unit.test_repo_config_git import commit
from tests.unit.test_validate_cli import BAD

FRONT, BACK = PODS
POLICY = "ignorePaths: [charts/]\nskipKinds: [Deployment]\n"
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n"


def test_a_watcher_follows_commits_read_under_reconcile_yaml_and_repairs_while_held(node, tmp_path):
    repo = git.Repo.init(tmp_path / "work", initial_branch="main")  # no hooks: bad commits land
    first = commit(repo, {
        ".reconcile.yaml": POLICY, "felix.yaml": FELIX.format(enabled="true", pattern="^eth"),
        "profile.yaml": KNS_SHOP, "wep-front0.yaml": WEP.format(name=FRONT.name, ip=FRONT.ip),
        "deploy.yaml": DEPLOYMENT,
    })  # fmt: skip
    work = Path(str(repo.working_tree_dir))
    with watch([*repo_args(node, work, "--poll-interval", "0"), "--interval", "1"]) as w:
        r = w.wait_record(lambda r: r["source"].startswith(f"git:{first}+"))
        assert r["result"] == "applied", r
        # a commit that only touches an ignored path, then one that adds a pod
        second = commit(repo, {"charts/values.yaml": "foo: [unclosed\n"})
        r = w.wait_record(lambda r: r["source"].startswith(f"git:{second}+"), timeout=90)
        assert r["result"] == "no-op" and not r["error"], r
        third = commit(repo, {"wep-back0.yaml": WEP.format(name=BACK.name, ip=BACK.ip)})
        r = w.wait_record(lambda r: r["source"].startswith(f"git:{third}+"), timeout=90)
        assert r["result"] == "applied" and not r["error"], r
        assert attached(node, "cali-front0") and attached(node, "cali-back0")
        # an invalid commit holds the node at the third; a filter deleted by hand
        # meanwhile is put back by a held pass, and reported as drift
        bad = commit(repo, {"bad.yaml": BAD})
        held = w.wait_record(lambda r: r["source"] == f"git:{bad}", timeout=90)
        assert held["result"] == "failed" and held["held"].startswith(f"git:{third}+"), held
        assert "bad.yaml:7: GlobalNetworkPolicy/broken" in held["error"], held
        mark = w.mark()
        delete_filter(node, "cali-front0", "ingress")
        repaired = w.wait_after(mark, lambda r: r["drift"], timeout=90)
        assert repaired["result"] == "failed" and repaired["held"] == held["held"], repaired
        assert any("cali-front0" in a for a in repaired["drift"]), repaired
        assert attached(node, "cali-front0")
    # one-shot runs, with the flags adding to the commit's policy: the next
    # commit applies over the watcher's, then nothing is left to do
    fixed = commit(repo, {"bad.yaml": "# fixed\n"})
    one_shot = ["--repo", str(work), "--ref", "main", "--skip-kinds", "Job"]
    rc, out, err = node.run("--apply", *one_shot)
    assert rc == 0 and "No changes." in out, out + err  # the same state, read anew
    rc, out, err = node.run("--plan", *one_shot)
    assert rc == 0 and "No changes." in out, out + err
    status = node.run("--status", "--json")[1]
    assert f'"commit": "{fixed}"' in status, status
