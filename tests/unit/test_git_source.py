"""Config from a Git commit (no checkout), and the push hooks."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from reconciler.cli.main import main
from reconciler.config.source import SourceCache, SourceError, blob_id, from_git, from_paths
from tests.unit.test_validate_cli import GOOD

ROOT = Path(__file__).resolve().parents[2]


def commit(repo: git.Repo, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        path = Path(repo.working_tree_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        repo.index.add([name])
    return repo.index.commit(message).hexsha


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return git.Repo.init(tmp_path / "work", initial_branch="main")


def test_reads_a_commit_without_checkout_and_ids_match_directories(work, tmp_path):
    first = commit(work, {"policy/gnp.yaml": GOOD, "README.md": "x"}, "one")
    commit(work, {"policy/other.yaml": GOOD.replace("allow-dns", "other")}, "two")
    src = from_git(work.working_tree_dir, first, tmp_path)
    assert src.identity == f"git:{first}"
    assert [f.path for f in src.files] == ["policy/gnp.yaml"]
    assert src.files[0].digest == blob_id(GOOD.encode())
    assert src.files[0].read() == GOOD.encode()
    dir_src = from_paths([str(Path(work.working_tree_dir) / "policy" / "gnp.yaml")])
    assert dir_src.files[0].digest == src.files[0].digest


def test_bare_repository_and_bad_refs(work, tmp_path):
    commit(work, {"gnp.yaml": GOOD}, "one")
    bare = tmp_path / "bare.git"
    work.clone(bare, bare=True)
    assert main(["--validate", "--repo", str(bare), "--ref", "main"]) == 0
    with pytest.raises(SourceError, match="nope"):
        from_git(str(bare), "nope", tmp_path)
    assert main(["--validate", "--repo", str(bare), "--ref", "nope"]) == 1


def test_remote_url_is_mirrored_and_fetched(work, tmp_path):
    first = commit(work, {"gnp.yaml": GOOD}, "one")
    url = f"file://{work.working_tree_dir}"
    assert from_git(url, "main", tmp_path).identity == f"git:{first}"
    second = commit(work, {"other.yaml": GOOD.replace("allow-dns", "other")}, "two")
    src = from_git(url, "main", tmp_path)  # the mirror is fetched, not cloned again
    assert src.identity == f"git:{second}"
    assert len(list((tmp_path / "repos").iterdir())) == 1


def test_a_commit_lists_every_yaml_blob_by_its_full_path(work, tmp_path):
    """Nested and oddly named files are read (git quotes no path in -z
    output); hidden files and directories and other suffixes are not."""
    names = ["a dir/x y.yaml", "deep/er/z.yml", "ünï\tcode.yaml", ".hidden/h.yaml",
             "sub/.h.yaml", "notes.txt"]  # fmt: skip
    for n, name in enumerate(names):
        path = Path(work.working_tree_dir) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(GOOD.replace("allow-dns", f"p{n}"))
    git.Git(work.working_tree_dir).add("-A")
    sha = work.index.commit("odd names").hexsha
    src = from_git(work.working_tree_dir, sha, tmp_path)
    from reconciler.config.safe_tree import shown

    read = ["a dir/x y.yaml", "deep/er/z.yml", "ünï\tcode.yaml"]
    assert [f.path for f in src.files] == [shown(n) for n in read]  # a tab is shown escaped
    for f, name in zip(src.files, read, strict=True):
        data = (Path(work.working_tree_dir) / name).read_bytes()
        assert f.read() == data and f.digest == blob_id(data)


def test_a_commit_read_by_its_id_is_read_once_per_process(work, tmp_path):
    first = commit(work, {"gnp.yaml": GOOD}, "one")
    sources = SourceCache()
    src = from_git(work.working_tree_dir, first, tmp_path, sources)
    (Path(work.working_tree_dir) / ".git").rename(tmp_path / "moved.git")
    # git is not asked again by the same owner; another (a new process) asks
    assert from_git(work.working_tree_dir, first, tmp_path, sources) is src
    with pytest.raises(SourceError):
        from_git(work.working_tree_dir, first, tmp_path, SourceCache())
    with pytest.raises(SourceError):  # a branch name may move: always resolved
        from_git(work.working_tree_dir, "main", tmp_path, sources)


@pytest.fixture
def foreign(work, tmp_path, monkeypatch):
    """A repository owned by another user (nobody), read under a global git
    config of the test's own that trusts no directory."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to give the repository away")
    commit(work, {"gnp.yaml": GOOD}, "one")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (tmp_path / "gitconfig").write_text("")
    repo = Path(work.working_tree_dir)
    for path in [repo, *repo.rglob("*")]:
        os.lchown(path, 65534, 65534)
    return repo


def dubious(repo: Path) -> str:
    return (
        f"{repo}@main: git refuses to read {repo}: detected dubious ownership (the repository's "
        "owner differs from the user running reconcile); if it is trusted: "
        f"git config --global --add safe.directory {repo}"
    )


def test_a_repository_another_user_owns_is_said_so(foreign):
    from reconciler.gitops.repo import Follower

    with pytest.raises(SourceError) as refused:
        Follower.of(str(foreign), "main").resolve()
    assert str(refused.value) == dubious(foreign)


def test_a_one_shot_run_names_the_owner_check(foreign, capsys):
    assert main(["--validate", "--repo", str(foreign), "--ref", "main"]) == 1
    assert capsys.readouterr().err == f"error: {dubious(foreign)}\n"


def test_gits_refusal_is_recognised_wherever_a_ref_is_resolved(foreign):
    from reconciler.config.git_tree import dubious_ownership, run_git

    with pytest.raises(SourceError) as refused:
        run_git(("-C", str(foreign)), "rev-parse", "--verify", "main^{commit}")
    said = dubious_ownership(f"{foreign}@main", refused.value)
    assert said is not None and str(said) == dubious(foreign)
    assert dubious_ownership("x@main", SourceError("fatal: bad revision")) is None
