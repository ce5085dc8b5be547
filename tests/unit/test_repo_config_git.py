"""`.reconcile.yaml` of a `--repo` commit: read from the commit's tree (its
root), never from a working tree, by the rules the commit's other files
follow; honoured by --validate, --plan and the pre-receive hook."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import git
import pytest

from reconciler.cli.hooks_cmd import pre_receive
from reconciler.cli.main import main
from reconciler.config.source import from_git
from tests.unit.test_validate_cli import GOOD

CONFIG = "skipKinds: [Deployment]\nignorePaths: ['charts/']\n"
DEPLOYMENT = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec: {}\n"
TEMPLATE = "kind: {{ .Values.kind }}\n"  # not YAML until Helm renders it


def commit(repo: git.Repo, files: dict[str, str], message: str = "c") -> str:
    root = Path(str(repo.working_tree_dir))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        repo.index.add([name])
    return repo.index.commit(message).hexsha


def link(repo: git.Repo, name: str, target: str) -> str:
    os.symlink(target, Path(str(repo.working_tree_dir)) / name)
    repo.index.add([name])
    return repo.index.commit("link").hexsha


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> git.Repo:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = git.Repo.init(tmp_path / "work", initial_branch="main")
    commit(repo, {"gnp.yaml": GOOD, "deploy.yaml": DEPLOYMENT, "charts/t/svc.yaml": TEMPLATE})
    return repo


def validate(repo: git.Repo, ref: str, capsys: Any, *flags: str) -> tuple[int, dict[str, Any]]:
    code = main(
        [
            "--validate",
            "--repo",
            str(repo.working_tree_dir),
            "--ref",
            ref,
            "--format",
            "json",
            *flags,
        ]
    )
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_without_the_file_the_commit_is_invalid(work: git.Repo, capsys: Any) -> None:
    code, data = validate(work, "main", capsys)
    assert code == 1 and data["files"] == 3
    assert [d["file"] for d in data["diagnostics"] if d["severity"] == "error"] == [
        "charts/t/svc.yaml"
    ]


def test_the_commits_file_is_honoured(work: git.Repo, capsys: Any) -> None:
    commit(work, {".reconcile.yaml": CONFIG})
    code, data = validate(work, "main", capsys)
    assert (code, data["files"], data["resources"], data["diagnostics"]) == (0, 2, 1, [])


def test_the_flags_add_to_the_commits_file(work: git.Repo, capsys: Any) -> None:
    commit(work, {".reconcile.yaml": "ignorePaths: ['charts/']\n"})
    code, data = validate(work, "main", capsys)
    assert code == 0 and [d["severity"] for d in data["diagnostics"]] == ["note"]
    code, data = validate(work, "main", capsys, "--skip-kinds", "Deployment")
    assert (code, data["diagnostics"]) == (0, [])


def test_the_file_of_that_commit_not_the_working_tree(work: git.Repo, capsys: Any) -> None:
    first = commit(work, {".reconcile.yaml": CONFIG})
    root = Path(str(work.working_tree_dir))
    (root / ".reconcile.yaml").write_text("ignorePaths: []\n")  # uncommitted
    assert validate(work, first, capsys)[0] == 0
    second = commit(work, {".reconcile.yaml": "ignorePaths: []\n"})
    assert validate(work, second, capsys)[0] == 1
    assert validate(work, first, capsys)[0] == 0  # an older commit keeps its own


def test_only_the_root_file_counts(work: git.Repo, capsys: Any) -> None:
    commit(work, {"sub/.reconcile.yaml": CONFIG})
    assert validate(work, "main", capsys)[0] == 1


def test_errors_name_the_commit_and_the_file(work: git.Repo, capsys: Any) -> None:
    sha = commit(work, {".reconcile.yaml": "skipKind: [Deployment]\n"})
    assert main(["--validate", "--repo", str(work.working_tree_dir), "--ref", "main"]) == 1
    err = capsys.readouterr().err
    assert (
        f"{work.working_tree_dir}@{sha} ({sha[:12]}): .reconcile.yaml: "
        "unknown key 'skipKind' (known: skipKinds, ignorePaths)"
    ) in err


def test_a_symlink_inside_the_tree_is_followed(work: git.Repo, capsys: Any) -> None:
    commit(work, {"settings/reconcile.yaml": CONFIG})
    link(work, ".reconcile.yaml", "settings/reconcile.yaml")
    code, data = validate(work, "main", capsys)
    assert (code, data["resources"]) == (0, 1)  # charts/ ignored: the link was followed


def test_a_symlink_out_of_the_tree_is_refused(work: git.Repo, tmp_path: Path, capsys: Any) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(CONFIG)
    sha = link(work, ".reconcile.yaml", str(outside))
    assert main(["--validate", "--repo", str(work.working_tree_dir), "--ref", "main"]) == 1
    assert (
        f"{work.working_tree_dir}@{sha}: .reconcile.yaml: "
        "is a symlink that leaves the repository tree (refused)"
    ) in capsys.readouterr().err


def test_a_file_over_the_size_limit_is_refused(work: git.Repo, capsys: Any) -> None:
    commit(work, {".reconcile.yaml": "# " + "x" * (2 << 20) + "\n"})
    assert main(["--validate", "--repo", str(work.working_tree_dir), "--ref", "main"]) == 1
    assert ".reconcile.yaml: larger than 2 MiB" in capsys.readouterr().err


def test_the_source_carries_the_file(work: git.Repo, tmp_path: Path) -> None:
    assert from_git(str(work.working_tree_dir), "main", tmp_path).config is None
    commit(work, {".reconcile.yaml": CONFIG})
    src = from_git(str(work.working_tree_dir), "main", tmp_path)
    assert src.config is not None and src.config.read() == CONFIG.encode()
    assert ".reconcile.yaml" not in [f.path for f in src.files]


SNAPSHOT = {
    "format_version": 1,
    "node": "node-a",
    "bpffs_root": "/sys/fs/bpf/calico-reconciler",
    "taken_at": "2026-01-01T00:00:00Z",
    "host": {"cgroup_id": 1, "cgroup_path": "/sys/fs/cgroup", "hz": 250},
    "links": [],
    "objects": [],
    "foreign": [],
    "tables": {},
}


def test_plan_honours_the_commits_file(work: git.Repo, tmp_path: Path, capsys: Any) -> None:
    observed = tmp_path / "node.json"
    observed.write_text(json.dumps(SNAPSHOT))
    argv = ["--plan", "--observed", str(observed), "--repo", str(work.working_tree_dir)]
    assert main([*argv, "--ref", "main"]) == 1
    assert "charts/t/svc.yaml:1:" in capsys.readouterr().err
    commit(work, {".reconcile.yaml": CONFIG})
    code = main([*argv, "--ref", "main"])
    out = capsys.readouterr().out
    # valid now; the Deployment and the template are not read (bpfEnabled is
    # unset, so the node holds nothing of ours either way)
    assert code == 0 and "No changes. The kernel matches the configuration." in out, out


def test_the_pre_receive_hook_honours_the_pushed_file(work: git.Repo, capsys: Any) -> None:
    bad = work.head.commit.hexsha
    good = commit(work, {".reconcile.yaml": CONFIG})
    zero = "0" * 40
    git_dir = str(Path(str(work.working_tree_dir)) / ".git")
    assert pre_receive([f"{zero} {bad} refs/heads/main"], git_dir, None) == 1
    assert pre_receive([f"{zero} {good} refs/heads/main"], git_dir, None) == 0
    capsys.readouterr()
