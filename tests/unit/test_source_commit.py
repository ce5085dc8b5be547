"""The commit of a source read under a skip/ignore policy (.reconcile.yaml,
--skip-kinds, --ignore-paths): its identity carries the policy's
fingerprint, and everything that needs the commit (the rewind guard, the
status, the metrics' label) reads the commit itself."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from reconciler.config import repo_config
from reconciler.config.source import from_git
from reconciler.engine import history
from reconciler.gitops.repo import pinned_spec
from reconciler.observe.status import source_words
from reconciler.source_identity import identity_commit, recorded_commit
from tests.unit.test_repo_config_git import commit
from tests.unit.test_validate_cli import GOOD

SHA = "3386baf4e4bc" + "0" * 28


def test_identity_commit_reads_past_a_policy_fingerprint() -> None:
    assert identity_commit(f"git:{SHA}") == SHA
    assert identity_commit(f"git:{SHA}+5edcb83faed4") == SHA
    assert identity_commit("dir:0123456789abcdef0123+5edcb83faed4") is None
    assert identity_commit("") is None


def test_recorded_commit_prefers_the_field_and_reads_an_older_record() -> None:
    assert recorded_commit({"identity": f"git:{SHA}+5edcb83faed4", "commit": SHA}) == SHA
    assert recorded_commit({"identity": f"git:{SHA}+5edcb83faed4"}) == SHA  # older record
    assert recorded_commit({"identity": "dir:abc"}) is None


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> git.Repo:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return git.Repo.init(tmp_path / "work", initial_branch="main")


def applied_record(state: Path, repo: git.Repo, source: dict[str, str]) -> None:
    spec = {"kind": "git", "repo": str(repo.working_tree_dir), "ref": "x", "policy": {}}
    state.mkdir(parents=True, exist_ok=True)
    (state / "applied.json").write_text(json.dumps({"source": {**source, "spec": spec}}))


def test_a_commit_read_under_its_reconcile_yaml_keeps_its_commit(repo: git.Repo) -> None:
    sha = commit(repo, {"gnp.yaml": GOOD, ".reconcile.yaml": "ignorePaths: [charts/]\n"})
    read = repo_config.for_commit(from_git(str(repo.working_tree_dir), sha, None))
    assert read.identity.startswith(f"git:{sha}+") and read.commit == sha
    flags = repo_config.for_commit(
        from_git(str(repo.working_tree_dir), sha, None), skip_kinds="Job"
    )
    assert flags.identity != read.identity and flags.commit == sha


@pytest.mark.parametrize("with_field", [True, False], ids=["record", "older record"])
def test_the_next_commit_is_not_a_rewind_of_one_applied_under_a_policy(
    repo: git.Repo, tmp_path: Path, with_field: bool
) -> None:
    first = commit(repo, {"gnp.yaml": GOOD, ".reconcile.yaml": "ignorePaths: [charts/]\n"})
    source = {"identity": f"git:{first}+5edcb83faed4", "description": f"work@main ({first[:12]})"}
    applied_record(tmp_path / "state", repo, {**source, "commit": first} if with_field else source)
    assert history.applied_commit(tmp_path / "state", str(repo.working_tree_dir)) == first
    second = commit(repo, {"charts/values.yaml": "foo: [unclosed\n"})
    for ref in (first, second):  # the applied commit itself, and one after it
        spec = pinned_spec(str(repo.working_tree_dir), ref, {}, tmp_path / "state")
        assert spec["ref"] == ref
    assert source_words(source) == f"work@main ({first[:12]})"


def test_the_applied_info_metric_labels_the_commit_alone() -> None:
    from reconciler.engine.history import PassRecord
    from reconciler.gitops.metrics import Metrics

    metrics = Metrics(None)  # type: ignore[arg-type]  # the kernel is read only when scraped
    identity = f"git:{SHA}+5edcb83faed4"
    metrics.observe_pass(PassRecord("", 0.1, "poll", "failed", "git:" + "f" * 40, held=identity))
    labels = {"source": identity, "commit": SHA}
    assert metrics.registry.get_sample_value("calico_reconciler_applied_info", labels) == 1.0


def test_the_changes_since_the_applied_commit_read_it_past_the_fingerprint(
    repo: git.Repo,
) -> None:
    import argparse

    from reconciler.cli.change_summary import resource_changes
    from reconciler.plan.plan import Plan

    work = str(repo.working_tree_dir)
    policy = ".reconcile.yaml"
    first = commit(repo, {"gnp.yaml": GOOD, policy: "ignorePaths: [charts/]\n"})
    second = commit(repo, {"gnp.yaml": GOOD.replace("allow-dns", "allow-dns-2")})
    spec = {"kind": "git", "repo": work, "ref": second, "policy": {}}
    new = {"identity": f"git:{second}+5edcb83faed4", "commit": second, "spec": spec}
    applied = {"source": {"identity": f"git:{first}+5edcb83faed4", "spec": {**spec, "ref": first}}}
    plan = Plan(node="n1", source=new, bpffs_root="/x", observed_fingerprint="", changes=())
    found = resource_changes(argparse.Namespace(repo=work, no_cache=True), plan, applied)
    assert isinstance(found, tuple) and found[0] == first, found
    assert any("allow-dns-2" in line for line in found[1]), found
