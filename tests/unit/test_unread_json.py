"""A JSON file in a config directory or commit is not read (reconcile reads
the *.yaml and *.yml files of a tree), but it is never passed over without
a word: each is a note at that file, counted by --validate's summary and
listed by --format json, for a directory, a --repo commit and the
pre-receive hook's reading alike. ignorePaths / --ignore-paths silence it;
a JSON file named on the command line is read as before."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.config import safe_tree, source
from reconciler.config.diagnostics import Severity
from reconciler.config.repo_config import for_commit
from reconciler.config.spec import open_source
from reconciler.config.validate import validate_source

SERVICE = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
    "spec: {clusterIP: 10.96.0.10, ports: [{port: 80, protocol: TCP}]}\n"
)
# what `kubectl get svc -A -o json` writes: a List of Services
EXPORT = json.dumps({
    "apiVersion": "v1",
    "kind": "List",
    "items": [{
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 443, "protocol": "TCP"}]},
    }],
})  # fmt: skip
NOT_READ = safe_tree.NOT_READ


@pytest.fixture
def cfg(tmp_path):
    cfg = tmp_path / "cfg"
    (cfg / "dashboards").mkdir(parents=True)
    (cfg / "web.yaml").write_text(SERVICE)
    (cfg / "services.json").write_text(EXPORT)
    (cfg / "dashboards" / "package.json").write_text("{not even json")  # never opened
    return cfg


def _validate(capsys, *args):
    code = cli.main(["--validate", *map(str, args), "--no-cache"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _notes(out: str) -> list[tuple[str, int, str, str]]:
    report = json.loads(out)
    return [
        (d["file"], d["line"], d["path"], d["message"])
        for d in report["diagnostics"]
        if d["severity"] == "note"
    ]


def test_a_directory_names_every_json_file_it_does_not_read(cfg, capsys):
    code, out, err = _validate(capsys, cfg)
    assert (code, out) == (0, "")
    assert err == (
        "1 file(s), 1 resource(s): valid (2 document(s) not validated: --format json lists them)\n"
    )
    code, out, _ = _validate(capsys, cfg, "--format", "json")
    assert code == 0 and json.loads(out)["valid"] is True
    assert _notes(out) == [
        (f"{cfg}/dashboards/package.json", 1, "(file)", NOT_READ),
        (f"{cfg}/services.json", 1, "(file)", NOT_READ),
    ]


def test_the_note_is_said_in_text_with_the_file_and_what_to_do(cfg):
    src = open_source({"kind": "dir", "paths": [str(cfg)]}, use_cache=False,
                      sources=source.SourceCache())  # fmt: skip
    notes = [d for d in validate_source(src).diagnostics if d.severity is Severity.NOTE]
    assert [d.render() for d in notes] == [
        f"{cfg}/services.json:1: note: not read: reconcile reads *.yaml and *.yml files of a "
        "directory; a JSON manifest here is not applied (name it on the command line to "
        "validate it, convert it to YAML to apply it, or add it to ignorePaths)",
        f"{cfg}/dashboards/package.json:1: note: {NOT_READ}",
    ]


def test_a_tree_of_json_files_only_is_still_empty_and_says_why(tmp_path, capsys):
    (tmp_path / "services.json").write_text(EXPORT)
    code, out, _ = _validate(capsys, tmp_path, "--format", "json")
    assert code == 1
    messages = [(d["severity"], d["message"]) for d in json.loads(out)["diagnostics"]]
    assert ("note", NOT_READ) in messages
    assert any(s == "error" and "holds no configuration file" in m for s, m in messages)


@pytest.mark.parametrize("ignore", ["*.json", "services.json,dashboards/"])
def test_ignore_paths_silence_the_note(cfg, capsys, ignore):
    code, out, err = _validate(capsys, cfg, "--ignore-paths", ignore)
    assert (code, out, err) == (0, "", "1 file(s), 1 resource(s): valid\n")


def test_the_repository_config_file_silences_it_too(cfg, capsys):
    (cfg / ".reconcile.yaml").write_text('ignorePaths: ["dashboards/"]\n')
    code, out, _ = _validate(capsys, cfg, "--format", "json")
    assert code == 0
    assert _notes(out) == [(f"{cfg}/services.json", 1, "(file)", NOT_READ)]


def test_a_json_file_named_on_the_command_line_is_read_as_before(cfg, capsys):
    code, out, err = _validate(capsys, cfg / "services.json")
    assert (code, out, err) == (0, "", "1 file(s), 1 resource(s): valid\n")
    code, out, err = _validate(capsys, cfg / "dashboards" / "package.json")
    assert code == 1 and "YAML syntax" in out


def test_a_json_symlink_directory_or_hidden_file_is_not_named(tmp_path, capsys):
    (tmp_path / "web.yaml").write_text(SERVICE)
    (tmp_path / "real").mkdir()
    (tmp_path / "dir.json").mkdir()  # a directory: walked, holds nothing
    (tmp_path / ".hidden.json").write_text("{}")
    os.symlink("/etc/hostname", tmp_path / "link.json")  # passed over, as any non-YAML link
    code, out, _ = _validate(capsys, tmp_path, "--format", "json")
    assert code == 0 and _notes(out) == []


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def repo(cfg):
    _git(cfg, "init", "-q")
    _git(cfg, "add", "-A")
    _git(cfg, "commit", "-qm", "export")
    return cfg


def test_a_commit_names_them_as_the_directory_does(repo, capsys):
    code, out, _ = _validate(capsys, "--repo", repo, "--ref", "HEAD", "--format", "json")
    assert code == 0
    assert _notes(out) == [
        ("dashboards/package.json", 1, "(file)", NOT_READ),
        ("services.json", 1, "(file)", NOT_READ),
    ]
    code, out, err = _validate(capsys, "--repo", repo, "--ref", "HEAD")
    assert err.endswith("valid (2 document(s) not validated: --format json lists them)\n")
    code, out, err = _validate(capsys, "--repo", repo, "--ref", "HEAD", "--ignore-paths", "*.json")
    assert (code, out, err) == (0, "", "1 file(s), 1 resource(s): valid\n")


def test_the_commit_s_own_config_file_and_a_later_commit_read_by_difference(repo):
    """As the pre-receive hook reads a pushed commit (for_commit(from_git))
    and as a watcher reads the next one (git_tree's diff-tree update)."""
    sources = source.SourceCache()

    def notes(ref: str) -> list[str]:
        src = for_commit(source.from_git(str(repo), ref, None, sources))
        return [d.file for d in validate_source(src).diagnostics if d.severity is Severity.NOTE]

    assert notes("HEAD") == ["dashboards/package.json", "services.json"]
    (repo / ".reconcile.yaml").write_text('ignorePaths: ["dashboards/"]\n')
    (repo / "more.json").write_text("{}")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "ignore dashboards")
    assert notes("HEAD") == ["more.json", "services.json"]
    _git(repo, "rm", "-q", "services.json")
    _git(repo, "commit", "-qm", "converted")
    assert notes("HEAD") == ["more.json"]


def test_the_pre_receive_hook_accepts_a_push_with_a_json_file(repo, tmp_path, capsys):
    """A note is not an error: the hook, which prints errors only, lets it in."""
    from reconciler.cli import hooks_cmd

    head = _git(repo, "rev-parse", "HEAD")
    line = f"{'0' * 40} {head} refs/heads/main\n"
    assert hooks_cmd.pre_receive([line], str(repo / ".git"), None) == 0
    assert "error" not in capsys.readouterr().err


def _unread_shape(src: source.Source) -> tuple[str, list[str], list[str]]:
    return src.identity, [f.path for f in src.files], list(src.unread)


@pytest.mark.parametrize("seed", range(4))
def test_a_watcher_s_refresh_keeps_them_as_a_full_walk_does(tmp_path, seed):
    rng = random.Random(seed)
    root = tmp_path / "cfg"
    dirs = ["", "svc", "svc/deep", "zz"]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
        (root / d / "a.json").write_text("{}")
        (root / d / "a.yaml").write_text("a: 1\n")
    sources = source.SourceCache()
    source.from_paths([str(root)], None, sources)
    for step in range(20):
        op = rng.choice(["add", "remove", "add-dir", "remove-dir"])
        changed: list[Path] = []
        existing = [p for p in root.rglob("*.json") if p.is_file()]
        if op == "add":
            changed.append(root / rng.choice(dirs) / f"n{step}.json")
            changed[0].write_text("{}")
        elif op == "remove" and existing:
            changed.append(rng.choice(existing))
            changed[0].unlink()
        elif op == "add-dir":
            d = root / f"new{step}"
            (d / "sub").mkdir(parents=True)
            (d / "sub" / "x.json").write_text("{}")
            (d / "y.json").write_text("{}")
            changed.append(d)
        elif op == "remove-dir":
            victims = [d for d in root.iterdir() if d.name.startswith("new")]
            if victims:
                changed.append(rng.choice(victims))
                shutil.rmtree(changed[0])
        got = sources.refresh(str(root), [str(c) for c in changed], None)
        assert got is not None
        assert _unread_shape(got) == _unread_shape(source.from_paths([str(root)], None))
