"""A symlink the tree's rules refuse fails the read only where the read
would go: a name that is not YAML, or a path ignorePaths / --ignore-paths
leave unread (a directory as a whole too), is never followed; a YAML file
or a walked directory that leaves the tree, dangles or loops is refused as
before. A directory source and a --repo source alike."""

import os
import subprocess

import pytest

from reconciler.cli import main as cli
from reconciler.config import repo_config, safe_tree, source
from reconciler.config.repo_config import RepoConfig
from reconciler.config.source import Source, SourceCache, SourceError
from reconciler.config.spec import open_source
from tests.unit.test_safe_tree import _git

TIER = (
    "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: {name}}}\n"
    "spec: {{order: 1}}\n"
)
LEAVES = "is a symlink that leaves the config tree (refused)"
GIT_LEAVES = "is a symlink that leaves the repository tree (refused)"


@pytest.fixture
def cfg(tmp_path):
    cfg = tmp_path / "cfg"
    (cfg / "charts").mkdir(parents=True)
    (cfg / "a.yaml").write_text(TIER.format(name="a"))
    (tmp_path / "outside.yaml").write_text("secret: root-only-content\n")
    return cfg


def _validate(capsys, *args):
    code = cli.main(["--validate", *map(str, args), "--no-cache"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _valid(capsys, *args, files=1):
    code, out, err = _validate(capsys, *args)
    assert (code, out, err) == (0, "", f"{files} file(s), {files} resource(s): valid\n")


def _refused(capsys, *args, lines):
    code, out, err = _validate(capsys, *args)
    assert code == 1
    assert out == ""
    assert err == "".join(f"error: {line}\n" for line in lines)
    assert "root-only-content" not in out + err


@pytest.mark.parametrize("target", ["/etc/hostname", "../outside.yaml", "nowhere", "notes.txt"])
def test_a_symlink_that_is_not_yaml_is_passed_over(cfg, capsys, target):
    os.symlink(target, cfg / "notes.txt")  # out of the tree, dangling, a loop
    _valid(capsys, cfg)


@pytest.mark.parametrize("ignored", ["l.yaml", "*.yaml", "charts/", "charts/*", "charts/**"])
def test_an_ignored_yaml_symlink_is_never_followed(cfg, capsys, ignored):
    os.symlink("../../outside.yaml", cfg / "charts" / "l.yaml")
    os.symlink("missing.yaml", cfg / "charts" / "d.yaml")
    os.symlink("o.yaml", cfg / "charts" / "o.yaml")
    if ignored in ("l.yaml", "*.yaml"):
        for name in ("d.yaml", "o.yaml"):
            os.remove(cfg / "charts" / name)
    (cfg / ".reconcile.yaml").write_text(f"ignorePaths: [{ignored!r}]\n")
    if ignored == "*.yaml":
        code, out, err = _validate(capsys, cfg)  # a.yaml too: nothing left
        assert code == 1 and "holds no configuration file" in out and "error:" not in err
    else:
        _valid(capsys, cfg)
    # the flags' patterns, when the reader is given them
    (cfg / ".reconcile.yaml").unlink()
    with pytest.raises(SourceError, match="charts/l.yaml: is a symlink that leaves"):
        source.from_paths([str(cfg)])
    src = source.from_paths([str(cfg)], config=RepoConfig(ignore_paths=(ignored,)))
    kept = repo_config.apply_to(src, RepoConfig(ignore_paths=(ignored,)), [str(cfg)])
    assert len(kept.files) == (0 if ignored == "*.yaml" else 1)


def test_ignore_paths_given_on_the_command_line_cover_a_yaml_symlink(cfg, capsys):
    os.symlink("../../outside.yaml", cfg / "charts" / "l.yaml")
    _refused(capsys, cfg, lines=[f"{cfg / 'charts' / 'l.yaml'}: {LEAVES}"])
    _valid(capsys, cfg, "--ignore-paths", "charts/")


def test_reconcile_yaml_ignore_paths_cover_a_directory_and_a_symlinked_one(
    cfg, capsys, tmp_path, monkeypatch
):
    os.symlink("/etc/passwd", cfg / "charts" / "x.yaml")
    os.symlink(str(tmp_path), cfg / "vendor")  # a directory out of the tree
    os.symlink("..", cfg / "charts" / "up")  # the tree again, under another name
    (cfg / ".reconcile.yaml").write_text('ignorePaths: ["charts/", "vendor"]\n')
    _valid(capsys, cfg)
    _valid(capsys, f"{cfg}/")  # the root as spelt with a slash, or not
    monkeypatch.chdir(cfg.parent)
    _valid(capsys, "./cfg")


def test_what_would_be_read_is_still_refused_with_the_same_message(cfg, capsys, tmp_path):
    os.symlink("/etc/passwd", cfg / "charts" / "x.yaml")
    os.symlink("nowhere.yaml", cfg / "d.yaml")
    os.symlink("l.yaml", cfg / "l.yaml")
    os.symlink(str(tmp_path), cfg / "vendor")  # a directory that would be walked
    _refused(capsys, cfg, lines=[
        f"{cfg}/d.yaml: is a dangling symlink (No such file or directory)",
        f"{cfg}/l.yaml: is a symlink loop",
        f"{cfg}/vendor: {LEAVES}",
        f"{cfg}/charts/x.yaml: {LEAVES}",
    ])  # fmt: skip
    # ignoring some paths leaves the others refused
    (cfg / ".reconcile.yaml").write_text('ignorePaths: ["charts", "vendor"]\n')
    _refused(capsys, cfg, lines=[
        f"{cfg}/d.yaml: is a dangling symlink (No such file or directory)",
        f"{cfg}/l.yaml: is a symlink loop",
    ])  # fmt: skip


def test_a_pattern_that_matches_no_parent_does_not_cover_a_directory(cfg, capsys, tmp_path):
    os.symlink(str(tmp_path), cfg / "vendor")
    (cfg / ".reconcile.yaml").write_text('ignorePaths: ["vendor/*.yaml"]\n')
    _refused(capsys, cfg, lines=[f"{cfg}/vendor: {LEAVES}"])


def test_the_walk_itself_still_refuses(cfg):
    os.symlink("/etc/hostname", cfg / "notes.txt")
    assert list(safe_tree.walk(str(cfg))) == [f"{cfg}/a.yaml"]
    os.symlink("/etc/passwd", cfg / "charts" / "x.yaml")
    with pytest.raises(safe_tree.TreeError) as caught:
        list(safe_tree.walk(str(cfg)))
    assert caught.value.problems == [f"{cfg}/charts/x.yaml: {LEAVES}"]
    found, refused = safe_tree.walk_refusals(str(cfg))
    assert [p for p, _ in found] == [f"{cfg}/a.yaml"]
    assert refused == [(f"{cfg}/charts/x.yaml", False, f"{cfg}/charts/x.yaml: {LEAVES}")]


def test_a_source_carries_ignored_refusals_to_apply_to(cfg):
    os.symlink("/etc/passwd", cfg / "charts" / "x.yaml")
    (cfg / ".reconcile.yaml").write_text('ignorePaths: ["charts/"]\n')
    src = source.from_paths([str(cfg)])
    assert [f.path for f in src.files] == [f"{cfg}/a.yaml"]
    assert src.refused == ((f"{cfg}/charts/x.yaml", False, f"{cfg}/charts/x.yaml: {LEAVES}"),)
    # a policy that no longer ignores it (the file was edited since) raises it
    with pytest.raises(SourceError, match=r"^" + f"{cfg}/charts/x.yaml: " + r"is a symlink"):
        repo_config.apply_to(src, RepoConfig(), [str(cfg)])
    kept = repo_config.apply_to(src, RepoConfig(ignore_paths=("charts/",)), [str(cfg)])
    assert [f.path for f in kept.files] == [f"{cfg}/a.yaml"] and kept.refused == ()
    # a refused root, or a path under no root, is never ignored
    root = Source("dir:x", "x", (), refused=((str(cfg), True, "cfg: cannot read"),))
    with pytest.raises(SourceError, match="^cfg: cannot read$"):
        repo_config.apply_to(root, RepoConfig(ignore_paths=("cfg",)), [str(cfg)])


def test_ignores_dir():
    config = RepoConfig(ignore_paths=("charts/", "a/b/**", "c/*", "*.tmp", "x/*.yaml"))
    for covered in ("charts", "d/charts", "a/b", "c", "c/d", "e.tmp", "x/y.yaml"):
        assert config.ignores_dir(covered), covered
    for walked in ("a", "a/bb", "x", "d", "cc"):
        assert not config.ignores_dir(walked), walked


def test_a_watch_refresh_reads_in_full_while_a_refusal_stands(cfg):
    os.symlink("/etc/passwd", cfg / "charts" / "x.yaml")
    (cfg / ".reconcile.yaml").write_text('ignorePaths: ["charts/"]\n')
    spec = {"kind": "dir", "paths": [str(cfg)], "policy": {}}
    sources = SourceCache()
    assert len(open_source(spec, False, sources=sources).files) == 1
    (cfg / "b.yaml").write_text(TIER.format(name="b"))
    changed = frozenset({str(cfg / "b.yaml")})
    assert len(open_source(spec, False, changed, sources=sources).files) == 2
    (cfg / ".reconcile.yaml").write_text("ignorePaths: []\n")  # (hidden: no event of its own)
    with pytest.raises(SourceError, match="charts/x.yaml: is a symlink that leaves"):
        open_source(spec, False, changed, sources=sources)


def test_a_repo_source_behaves_alike(tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "charts").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "a.yaml").write_text(TIER.format(name="a"))
    os.symlink("/etc/hostname", repo / "notes.txt")
    os.symlink("/etc/passwd", repo / "charts" / "x.yaml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "x")
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    _refused(capsys, "--repo", repo, "--ref", "HEAD", lines=[
        f"{repo}@{head}: charts/x.yaml: {GIT_LEAVES}"
    ])  # fmt: skip
    _valid(capsys, "--repo", repo, "--ref", "HEAD", "--ignore-paths", "charts/")
    _valid(capsys, "--repo", repo, "--ref", "HEAD", "--ignore-paths", "x.yaml")
    (repo / ".reconcile.yaml").write_text('ignorePaths: ["charts/**"]\n')
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "y")
    _valid(capsys, "--repo", repo, "--ref", "HEAD")
    _valid(capsys, repo)  # and the working tree, by the same file
