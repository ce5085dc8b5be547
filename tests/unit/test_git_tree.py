"""A commit read through the git command (config.git_tree): every YAML blob
by its id, symlinks resolved inside the tree only, a missing object found
even when no content is read, and contents through one cat-file process."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.config import git_tree
from reconciler.config.source import SourceError, blob_id


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def repo_with(tmp_path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    for name, target in (links or {}).items():
        os.symlink(target, repo / name)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "x")
    return repo


def test_every_file_reads_back_its_own_content_in_any_order(tmp_path):
    trees: dict = {}  # as a SourceCache keeps them
    files = {f"d{n % 3}/f{n}.yaml": f"kind: Tier\nn: {n}\n" * (n + 1) for n in range(30)}
    repo = repo_with(tmp_path, files)
    src = git_tree.read_commit(str(repo), "HEAD", "repo@HEAD", trees)
    head = _git(repo, "rev-parse", "HEAD")
    assert src.identity == f"git:{head}" and src.description == f"repo@HEAD ({head[:12]})"
    assert [f.path for f in src.files] == sorted(files)
    for f in reversed(src.files):  # one cat-file process answers them all
        assert f.read() == files[f.path].encode() and f.digest == blob_id(f.read())


def test_symlinks_inside_the_tree_are_followed_and_others_named(tmp_path):
    trees: dict = {}  # as a SourceCache keeps them
    repo = repo_with(
        tmp_path,
        {"c.yaml": "kind: Tier\n", "sub/x.txt": "x"},
        {"a.yaml": "b.yaml", "b.yaml": "c.yaml", "dir.yaml": "sub", "loop.yaml": "loop.yaml",
         "out.yaml": "../outside.yaml", "abs.yaml": "/etc/passwd"},
    )  # fmt: skip
    with pytest.raises(SourceError) as err:
        git_tree.read_commit(str(repo), "HEAD", "r@HEAD", trees)
    text = str(err.value)
    assert "r@HEAD: dir.yaml: is a symlink to no file of the tree (dangling, or a dir" in text
    assert "r@HEAD: loop.yaml: is a symlink loop" in text
    assert "r@HEAD: out.yaml: is a symlink that leaves the repository tree (refused)" in text
    assert "r@HEAD: abs.yaml: is a symlink that leaves the repository tree (refused)" in text
    for name in ("dir.yaml", "loop.yaml", "out.yaml", "abs.yaml"):
        _git(repo, "rm", "-q", name)
    _git(repo, "commit", "-qm", "y")
    src = git_tree.read_commit(str(repo), "HEAD", "r@HEAD", trees)
    by_path = {f.path: f for f in src.files}
    assert set(by_path) == {"a.yaml", "b.yaml", "c.yaml"}
    assert by_path["a.yaml"].read() == b"kind: Tier\n"
    assert by_path["a.yaml"].digest == by_path["c.yaml"].digest


def test_a_missing_object_is_an_error_before_anything_is_read(tmp_path):
    trees: dict = {}  # as a SourceCache keeps them
    repo = repo_with(tmp_path, {"a.yaml": "kind: Tier\n", "b.yaml": "kind: Tier\nx: 1\n"})
    blob = _git(repo, "rev-parse", "HEAD:b.yaml")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    with pytest.raises(SourceError, match=rf"r@HEAD: b.yaml: the object {blob[:12]} is missing"):
        git_tree.read_commit(str(repo), "HEAD", "r@HEAD", trees)


def test_bad_refs_and_paths_that_are_no_repository(tmp_path):
    trees: dict = {}  # as a SourceCache keeps them
    repo = repo_with(tmp_path, {"a.yaml": "kind: Tier\n"})
    with pytest.raises(SourceError, match="r@nope: no such branch, tag or commit"):
        git_tree.read_commit(str(repo), "nope", "r@nope", trees)
    with pytest.raises(SourceError, match="r@--all: no such branch"):
        git_tree.read_commit(str(repo), "--all", "r@--all", trees)  # never read as an option
    (repo / "sub").mkdir()  # inside a repository, but none itself
    with pytest.raises(SourceError, match="sub: not a Git repository"):
        git_tree.read_commit(str(repo / "sub"), "HEAD", "x", trees)


@pytest.mark.parametrize("where", ["plain", "inside"])
def test_validate_repo_that_is_no_repository_says_so(tmp_path, capsys, monkeypatch, where):
    """A one-shot --repo resolves its ref first: a directory inside another
    repository must not resolve that one's HEAD, and neither may read as a
    missing branch."""
    from reconciler.cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if where == "plain":
        path = tmp_path / "plain"
    else:
        path = repo_with(tmp_path, {"a.yaml": "kind: Tier\n"}) / "sub"
    path.mkdir()
    assert main(["--validate", "--repo", str(path)]) == 1
    assert capsys.readouterr().err == f"error: {path}: not a Git repository\n"


def test_a_blob_past_the_size_limit_is_read_only_up_to_it(tmp_path, monkeypatch):
    trees: dict = {}  # as a SourceCache keeps them
    repo = repo_with(tmp_path, {"big.yaml": "x" * 5000, "small.yaml": "kind: Tier\n"})
    monkeypatch.setattr(git_tree, "MAX_FILE_BYTES", 100)
    src = git_tree.read_commit(str(repo), "HEAD", "r@HEAD", trees)
    big, small = src.files
    assert big.read() == b"x" * 101  # the loader refuses it for its size
    assert small.read() == b"kind: Tier\n"


def _shape(src) -> list[tuple[str, str, bytes]]:
    return [(f.path, f.digest, f.read()) for f in src.files]


def test_the_next_commit_is_read_by_its_difference_and_reads_the_same(tmp_path, monkeypatch):
    trees: dict = {}  # as a SourceCache keeps them
    repo = repo_with(tmp_path, {"a.yaml": "a: 1\n", "d/b.yaml": "b: 1\n", "d/c.yaml": "c: 1\n",
                                ".hidden/x.yaml": "x\n", "notes.txt": "n\n"})  # fmt: skip
    first = git_tree.read_commit(str(repo), "HEAD", "r", trees)
    assert [f.path for f in first.files] == ["a.yaml", "d/b.yaml", "d/c.yaml"]
    (repo / "a.yaml").write_text("a: 2\n")
    (repo / "d" / "b.yaml").unlink()
    (repo / "e").mkdir()
    (repo / "e" / "f.yaml").write_text("f: 1\n")
    (repo / ".h.yaml").write_text("h\n")
    _git(repo, "mv", "d/c.yaml", "g.yml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "y")
    calls: list[tuple[str, ...]] = []
    real_git = git_tree._git
    monkeypatch.setattr(git_tree, "_git", lambda d, *a: calls.append(a) or real_git(d, *a))
    second = git_tree.read_commit(str(repo), "HEAD", "r", trees)
    assert not any(a[0] == "ls-tree" for a in calls) and any(a[0] == "diff-tree" for a in calls)
    (updated,) = trees.values()
    trees.clear()  # as a new process reads it
    assert _shape(second) == _shape(git_tree.read_commit(str(repo), "HEAD", "r", trees))
    (full,) = trees.values()
    assert updated.blobs == full.blobs  # modes, ids and sizes alike
    assert [f.path for f in second.files] == ["a.yaml", "e/f.yaml", "g.yml"]
    # a symlink appears: the whole tree is read again, and the link followed
    os.symlink("a.yaml", repo / "link.yaml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "z")
    calls.clear()
    third = git_tree.read_commit(str(repo), "HEAD", "r", trees)
    assert any(a[0] == "ls-tree" for a in calls)
    assert {f.path: f.read() for f in third.files}["link.yaml"] == b"a: 2\n"


def test_an_added_blob_that_is_missing_is_named_by_the_read_after_a_difference(tmp_path):
    trees: dict = {}  # as a SourceCache keeps them
    repo = repo_with(tmp_path, {"a.yaml": "a: 1\n"})
    git_tree.read_commit(str(repo), "HEAD", "r", trees)
    (repo / "b.yaml").write_text("b: 1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "y")
    blob = _git(repo, "rev-parse", "HEAD:b.yaml")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    with pytest.raises(SourceError, match=rf"r: b.yaml: the object {blob[:12]} is missing"):
        git_tree.read_commit(str(repo), "HEAD", "r", trees)


def test_the_root_config_file_is_read_in_full_and_by_difference(tmp_path):
    trees: dict = {}  # as a SourceCache keeps them
    repo = repo_with(tmp_path, {"a.yaml": "a: 1\n", "d/.reconcile.yaml": "skipKinds: [X]\n"})
    first = git_tree.read_commit(str(repo), "HEAD", "r", trees)
    assert first.config is None  # only the root's counts
    (repo / ".reconcile.yaml").write_text("skipKinds: [Deployment]\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "y")
    second = git_tree.read_commit(str(repo), "HEAD", "r", trees)  # by difference
    assert second.config is not None and second.config.read() == b"skipKinds: [Deployment]\n"
    assert [f.path for f in second.files] == ["a.yaml"]  # not a resource file
    fresh = git_tree.read_commit(str(repo), "HEAD", "r", {})
    assert fresh.config is not None and fresh.config.digest == second.config.digest
    os.unlink(repo / ".reconcile.yaml")
    os.symlink("../outside.yaml", repo / ".reconcile.yaml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "z")
    with pytest.raises(SourceError, match=r"r: .reconcile.yaml: is a symlink that leaves"):
        git_tree.read_commit(str(repo), "HEAD", "r", trees)


def test_git_that_cannot_run_fails_or_times_out_as_a_source_error(tmp_path, monkeypatch):
    """One runner for every git command, the followed repository's included:
    a missing git binary, a failing command and one past its time each end
    as a SourceError saying what happened, never as a traceback."""
    from reconciler.gitops import repo

    repo_dir = repo_with(tmp_path, {"a.yaml": "a: 1\n"})
    with pytest.raises(SourceError, match=r"^git rev-parse in .*: fatal: "):
        repo.git(repo_dir, "rev-parse", "--verify", "no-such-ref^{commit}")
    with pytest.raises(SourceError, match=r"^git version: no answer after 1e-06s$"):
        git_tree.run_git((), "version", timeout=1e-6)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(SourceError, match=r"^cannot run git: No such file or directory$"):
        repo.git(repo_dir, "rev-parse", "HEAD")
    with pytest.raises(SourceError, match=r"cannot run git: No such file or directory"):
        git_tree.read_commit(str(repo_dir), "HEAD", "r@HEAD", {})
