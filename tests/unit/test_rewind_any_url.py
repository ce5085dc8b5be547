"""The rewind guard compares commits whatever URL the running one was
applied under (an ssh and an https URL of one repository, a server-local
path for a break-glass apply): a commit the followed repository holds must
be contained; one it does not hold is another repository's, unless the
fetch failed, when it may be newer: then nothing is applied."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from reconciler.config.source import SourceError
from reconciler.gitops.repo import Follower, RewindError, guarded_commit, pinned_spec
from tests.unit.test_repo_config_git import commit


def _applied(state: Path, repo: str, sha: str) -> None:
    state.mkdir(exist_ok=True)
    spec = {"kind": "git", "repo": repo, "ref": sha, "policy": {}}
    source = {"identity": f"git:{sha}", "commit": sha, "spec": spec}
    (state / "applied.json").write_text(json.dumps({"source": source}))


@pytest.fixture
def history(tmp_path) -> tuple[str, str, str]:
    repo = git.Repo.init(tmp_path / "work", initial_branch="main")
    old = commit(repo, {"a.yaml": "a: 1\n"})
    new = commit(repo, {"a.yaml": "a: 2\n"})
    return str(repo.working_tree_dir), old, new


def test_a_commit_applied_under_another_url_of_the_repository_is_never_rolled_back(
    history, tmp_path
):
    work, old, new = history
    state = tmp_path / "state"
    _applied(state, "ssh://git@git.example/config.git", new)  # the same repository, elsewhere
    git.Repo(work).git.reset("--hard", old)  # the followed ref is behind the running commit
    follower = Follower(work, "main", None)
    assert guarded_commit(follower, state) == new
    with pytest.raises(RewindError, match=f"{old[:12]} does not contain the applied commit"):
        follower.check_forward(old, guarded_commit(follower, state))
    with pytest.raises(RewindError):
        pinned_spec(work, "main", {}, state)  # a one-shot --plan/--apply refuses it too
    assert pinned_spec(work, "main", {}, state, allow_rewind=True)["ref"] == old


def test_a_commit_the_repository_does_not_hold_is_anothers_unless_the_fetch_failed(
    history, tmp_path
):
    work, _, new = history
    state = tmp_path / "state"
    unknown = "f" * 40
    _applied(state, "https://git.example/other.git", unknown)
    follower = Follower(work, "main", None)
    assert guarded_commit(follower, state) is None  # another repository: a switch, allowed
    with pytest.raises(SourceError) as refused:
        guarded_commit(follower, state, fetched=False)
    assert str(refused.value) == (
        f"the node runs commit {unknown[:12]} (applied from https://git.example/other.git), "
        f"which the commits last fetched from {work} do not hold, and the fetch failed: it may "
        "be newer than them; the kernel is left as it is until a fetch succeeds (or "
        "--allow-rewind)"
    )
    _applied(state, work, new)  # applied from this very repository: compared as before
    assert guarded_commit(follower, state, fetched=False) == new
