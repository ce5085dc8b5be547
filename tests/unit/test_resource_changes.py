"""The resource-level change summary beside a plan (deepdiff)."""

from __future__ import annotations

import git

from reconciler.config.source import from_git
from reconciler.engine.changes import diff_bodies, field_path, resource_changes, resources
from tests.unit.test_git_source import commit
from tests.unit.test_validate_cli import GOOD


def gnp(selector: str, ports: list[int]) -> dict:
    return {
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "allow-web"},
        "spec": {"ingress": [{"action": "Allow", "source": {"selector": selector},
                              "destination": {"ports": ports}}]},
    }  # fmt: skip


def test_field_paths_and_values_as_argo_shows_them():
    assert field_path(["spec", "ingress", 0, "source", "selector"]) == (
        "spec.ingress[0].source.selector"
    )
    lines = diff_bodies("GlobalNetworkPolicy/allow-web", gnp("a", [80]), gnp("b", [80, 443]))
    assert lines == [
        "GlobalNetworkPolicy/allow-web: spec.ingress[0].destination.ports[1]: added 443",
        'GlobalNetworkPolicy/allow-web: spec.ingress[0].source.selector: "a" -> "b"',
    ]
    old = {"GlobalNetworkPolicy/allow-web": gnp("a", [80]), "Service/shop/gone": {"x": 1}}
    new = {"GlobalNetworkPolicy/allow-web": gnp("a", []), "Tier/new": {"y": 2}}
    assert resource_changes(old, new) == [
        "~ GlobalNetworkPolicy/allow-web: spec.ingress[0].destination.ports[0]: removed (was 80)",
        "- Service/shop/gone",
        "+ Tier/new",
    ]
    assert resource_changes(old, old) == []


def test_two_commits_of_a_repository(tmp_path):
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    first = commit(work, {"gnp.yaml": GOOD}, "one")
    second = commit(work, {"gnp.yaml": GOOD.replace("53", "5353")}, "two")
    repo = work.working_tree_dir
    old = resources(from_git(repo, first, tmp_path), None)
    new = resources(from_git(repo, second, tmp_path), None)
    assert old is not None and new is not None
    [line] = resource_changes(old, new)
    assert line.startswith("~ GlobalNetworkPolicy/allow-dns: spec.") and "53 -> 5353" in line
