"""`--validate` as a CI gate: options anywhere, repositories that hold other
kinds, .reconcile.yaml, list kinds, and the JUnit, SARIF and GitHub reports
(one entry per unknown field; a YAML syntax error has no resource or field,
so no "-" title nor "(document)" path)."""

from __future__ import annotations

import json
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli.main import main
from reconciler.config.repo_config import RepoConfig

TIER = """\
apiVersion: projectcalico.org/v3
kind: Tier
metadata:
  name: security
spec:
  order: 100
"""
BAD_TIER = TIER.replace("order: 100", "order: first")
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
"""
KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [tier.yaml]
"""
VALUES = "replicaCount: 2\nimage:\n  tag: v1\n"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = tmp_path / "cfg"
    root.mkdir()
    return root


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["--validate", "--no-cache", "{repo}"],
        ["{repo}", "--validate", "--no-cache"],
        ["--validate", "{repo}", "--jobs", "1", "--format", "text"],
        ["--format", "text", "--validate", "--jobs", "1", "{repo}", "--no-cache"],
    ],
)
def test_options_and_paths_in_any_order(repo: Path, capsys: Any, argv: list[str]) -> None:
    write(repo, "tier.yaml", BAD_TIER)
    assert main([a.format(repo=repo) for a in argv]) == 1
    out = capsys.readouterr()
    assert "spec.order" in out.out and "1 file(s), 1 resource(s): invalid" in out.err


def test_paths_need_validate(repo: Path, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--plan", str(repo)])
    assert exc.value.code == 1  # a usage error; 2 means changes present
    assert "PATH arguments are only taken by --validate" in capsys.readouterr().err


def test_other_kinds_are_notes_not_errors(repo: Path, capsys: Any) -> None:
    write(repo, "tier.yaml", TIER)
    write(repo, "deploy.yaml", DEPLOYMENT)
    write(repo, "kustomization.yaml", KUSTOMIZATION)
    write(repo, "values.yaml", VALUES)
    assert main(["--validate", str(repo)]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert "4 file(s), 1 resource(s): valid (3 document(s) not validated" in out.err
    assert main(["--validate", str(repo), "--format", "json"]) == 0
    notes = {
        (d["resource"], d["message"]) for d in json.loads(capsys.readouterr().out)["diagnostics"]
    }
    assert notes == {
        ("Deployment/web", "not validated: Deployment (apps/v1) is not a kind reconcile reads"),
        (
            "Kustomization",
            "not validated: Kustomization (kustomize.config.k8s.io/v1beta1)"
            " is not a kind reconcile reads",
        ),
        ("-", "not validated: not a Kubernetes object (no apiVersion or kind)"),
    }


def test_strict_kinds_and_skip_kinds(repo: Path, capsys: Any) -> None:
    deploy = write(repo, "deploy.yaml", DEPLOYMENT)
    assert main(["--validate", str(repo), "--strict-kinds"]) == 1
    assert f"{deploy}:2: Deployment/web: kind: not validated: Deployment" in capsys.readouterr().out
    assert main(["--validate", str(repo), "--strict-kinds", "--skip-kinds", "Deployment"]) == 0
    assert main(["--validate", str(repo), "--format", "json", "--skip-kinds", "Deployment"]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"] == []


def test_a_typo_of_our_kind_stays_an_error(repo: Path, capsys: Any) -> None:
    write(repo, "svc.yaml", "apiVersion: v1\nkind: Servic\nmetadata: {name: a}\n")
    assert main(["--validate", str(repo)]) == 1
    assert "unknown kind 'Servic'" in capsys.readouterr().out


def test_calico_kinds_this_node_does_not_act_on_are_accepted(repo: Path, capsys: Any) -> None:
    write(
        repo, "bgp.yaml", "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {name: p}\n"
    )
    assert main(["--validate", str(repo), "--format", "json"]) == 0
    (d,) = json.loads(capsys.readouterr().out)["diagnostics"]
    assert d["severity"] == "note"
    assert (
        d["message"] == "BGPPeer is a Calico kind this node does not act on: accepted, not enforced"
    )


def test_reconcile_yaml_skips_kinds_and_ignores_paths(repo: Path, capsys: Any) -> None:
    write(repo, "tier.yaml", TIER)
    write(repo, "deploy.yaml", DEPLOYMENT)
    write(repo, "charts/web/templates/svc.yaml", "kind: {{ .Values.kind }}\n")
    write(repo, "apps/web.values.yaml", VALUES)
    write(
        repo,
        ".reconcile.yaml",
        "skipKinds: [Deployment]\nignorePaths: ['charts/', '*.values.yaml']\n",
    )
    assert main(["--validate", str(repo), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["files"], data["resources"], data["diagnostics"]) == (2, 1, [])


def test_ignore_paths_flag_adds_to_the_file(repo: Path, capsys: Any) -> None:
    write(repo, "tier.yaml", TIER)
    write(repo, "broken/x.yaml", "a: [\n")
    assert main(["--validate", str(repo)]) == 1
    capsys.readouterr()
    assert main(["--validate", str(repo), "--ignore-paths", "broken/*"]) == 0


def test_reconcile_yaml_errors(repo: Path, capsys: Any) -> None:
    write(repo, ".reconcile.yaml", "skipKind: [Deployment]\n")
    assert main(["--validate", str(repo)]) == 1
    assert "unknown key 'skipKind' (known: skipKinds, ignorePaths)" in capsys.readouterr().err
    write(repo, ".reconcile.yaml", "ignorePaths: charts\n")
    assert main(["--validate", str(repo)]) == 1
    assert "ignorePaths must be a list of strings" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pattern", "path", "ignored"),
    [
        ("charts/", "charts/web/a.yaml", True),
        ("charts/**", "charts/web/a.yaml", True),
        ("charts/*", "charts/web/a.yaml", True),
        ("*.values.yaml", "apps/web.values.yaml", True),
        ("templates", "charts/web/templates/a.yaml", True),
        ("charts/", "apps/charts.yaml", False),
        ("apps/*.yaml", "other/apps/a.yaml", False),
    ],
)
def test_ignore_patterns(pattern: str, path: str, ignored: bool) -> None:
    assert RepoConfig(ignore_paths=(pattern,)).ignores(path) is ignored


def test_list_kinds(repo: Path, capsys: Any) -> None:
    f = write(
        repo,
        "lists.yaml",
        """\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: projectcalico.org/v3
          kind: Tier
          metadata: {name: one}
          spec: {order: 1}
        - apiVersion: apps/v1
          kind: Deployment
          metadata: {name: web}
        ---
        apiVersion: projectcalico.org/v3
        kind: TierList
        items:
        - metadata: {name: two}
          spec: {order: 2}
        - metadata: {name: three}
          spec:
            order: third
        """,
    )
    assert main(["--validate", str(repo)]) == 1
    out = capsys.readouterr()
    assert out.out == f"{f}:19: Tier/three: spec.order: 'third' is not of type 'number'\n"
    assert "3 resource(s): invalid: 1 error(s) (1 document(s) not validated" in out.err


def test_junit_has_a_case_per_file(repo: Path, capsys: Any) -> None:
    for i in range(3):
        write(repo, f"t{i}.yaml", TIER.replace("security", f"t{i}"))
    bad = write(repo, "z.yaml", BAD_TIER)
    assert main(["--validate", str(repo), "--format", "junit"]) == 1
    suite = ET.fromstring(capsys.readouterr().out).find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert (suite.get("tests"), suite.get("failures"), len(cases)) == ("4", "1", 4)
    failed = [c.get("name") for c in cases if c.find("failure") is not None]
    assert failed == [str(bad)]


def test_github_annotations(repo: Path, capsys: Any) -> None:
    bad = write(repo, "tier.yaml", BAD_TIER)
    write(repo, "deploy.yaml", DEPLOYMENT)
    assert main(["--validate", str(repo), "--format", "github"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert (
        f"::error file={bad},line=6,title=Tier/security::"
        "spec.order: 'first' is not of type 'number'" in lines
    )
    assert any(line.startswith("::notice file=") and "Deployment" in line for line in lines)


def _extras(model: Any, where: str = "") -> list[str]:
    """Fields a pydantic model did not recognise, anywhere below it."""
    from pydantic import BaseModel

    found = []
    if isinstance(model, BaseModel):
        found += [f"{where}.{k}" for k in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += _extras(getattr(model, name), f"{where}.{name}")
    elif isinstance(model, list):
        for i, item in enumerate(model):
            found += _extras(item, f"{where}[{i}]")
    return found


def test_sarif_matches_the_sarif_2_1_0_object_model(repo: Path, capsys: Any) -> None:
    from sarif_pydantic import Sarif

    bad = write(repo, "tier.yaml", BAD_TIER)
    write(repo, "deploy.yaml", DEPLOYMENT)
    assert main(["--validate", str(repo), "--format", "sarif"]) == 1
    data = json.loads(capsys.readouterr().out)
    log = Sarif.model_validate(data)
    assert _extras(log) == []
    (run,) = log.runs
    levels = sorted((r.level.value if r.level else None) for r in run.results or [])
    assert levels == ["error", "note"]
    error = next(r for r in data["runs"][0]["results"] if r["level"] == "error")
    location = error["locations"][0]["physicalLocation"]
    assert location["region"]["startLine"] == 6
    assert location["artifactLocation"]["uri"].endswith(bad.name)
    rules = data["runs"][0]["tool"]["driver"]["rules"]
    assert rules[error["ruleIndex"]]["id"] == error["ruleId"] == "invalid-config"


def test_a_source_with_no_configuration_file_is_not_valid(tmp_path: Path, capsys: Any) -> None:
    """A mistyped or empty directory, or one of files the walk skips, must
    not pass CI: nothing was validated. --allow-empty says it is meant."""
    (tmp_path / "manifest.json").write_text("{}")  # given as a PATH it is read; walked, skipped
    code = main(["--validate", str(tmp_path), "--no-cache"])
    assert code == 1
    assert capsys.readouterr().out == (
        f"{tmp_path}: holds no configuration file (*.yaml, *.yml): nothing was "
        "validated; pass --allow-empty if that is meant\n"
    )
    assert main(["--validate", str(tmp_path), "--no-cache", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    said = sorted((d["severity"], d["file"]) for d in report["diagnostics"])
    # the skipped file is named by a note (tests/unit/test_unread_json.py)
    assert (report["valid"], report["files"], said) == (
        False, 0, [("error", str(tmp_path)), ("note", f"{tmp_path}/manifest.json")]
    )
    assert main(["--validate", str(tmp_path), "--no-cache", "--allow-empty"]) == 0


def test_a_path_given_twice_is_read_once(repo: Path, capsys: Any) -> None:
    tier = write(repo, "tier.yaml", TIER)
    assert main(["--validate", str(tier), f"{repo}/./tier.yaml", "--no-cache"]) == 0
    assert capsys.readouterr().err == "1 file(s), 1 resource(s): valid\n"


TWO_TYPOS = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: two-typos}
spec:
  selectr: all()
  ingres:
  - action: Allow
"""
SYNTAX_ERROR = "apiVersion: v1\nkind: Service\nmetadata:\n  name: [a\n"
YAML_PROBLEM = "YAML syntax: did not find expected ',' or ']'"


def report(repo: Path, capsys: Any, fmt: str) -> str:
    assert main(["--validate", str(repo), "--format", fmt]) == 1
    return str(capsys.readouterr().out)


def test_each_unknown_field_is_its_own_entry_in_every_format(repo: Path, capsys: Any) -> None:
    f = repo / "p.yaml"
    f.write_text(TWO_TYPOS)
    assert report(repo, capsys, "github").splitlines() == [
        f"::error file={f},line=5,title=GlobalNetworkPolicy/two-typos::"
        "spec.selectr: unknown field 'selectr'; did you mean 'selector'?",
        f"::error file={f},line=6,title=GlobalNetworkPolicy/two-typos::"
        "spec.ingres: unknown field 'ingres'; did you mean 'ingress'?",
    ]
    diags = json.loads(report(repo, capsys, "json"))["diagnostics"]
    assert [(d["line"], d["path"]) for d in diags] == [(5, "spec.selectr"), (6, "spec.ingres")]
    sarif = json.loads(report(repo, capsys, "sarif"))["runs"][0]["results"]
    assert [
        (r["locations"][0]["physicalLocation"]["region"]["startLine"],
         r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"])
        for r in sarif
    ] == [(5, "GlobalNetworkPolicy/two-typos/spec.selectr"),
          (6, "GlobalNetworkPolicy/two-typos/spec.ingres")]  # fmt: skip
    case = ET.fromstring(report(repo, capsys, "junit")).find("testsuite/testcase/failure")
    assert case is not None
    assert case.get("message", "").startswith("2 error(s): unknown field 'selectr'")
    assert (case.text or "").count("unknown field") == 2


def test_a_yaml_syntax_error_in_github_annotations(repo: Path, capsys: Any) -> None:
    f = repo / "a.yaml"
    f.write_text(SYNTAX_ERROR)
    assert report(repo, capsys, "github") == (
        f"::error file={f},line=5,title=reconcile::{YAML_PROBLEM}\n"
    )


def test_standard_input_is_annotated_on_no_file(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub would look for a file named <stdin> in the checkout."""
    given = tmp_path / "stdin"
    given.write_text(SYNTAX_ERROR)
    with open(given, "rb") as fh:
        monkeypatch.setattr(sys, "stdin", fh)
        assert main(["--validate", "-", "--no-cache", "--format", "github"]) == 1
    # no file to annotate: the line in the stream stays in the message
    assert capsys.readouterr().out == f"::error title=reconcile::<stdin>:5: {YAML_PROBLEM}\n"


def test_sarif_uris_are_percent_encoded(repo: Path, capsys: Any) -> None:
    """A `#` would start a fragment and a `%` an escape: both are the name's."""
    for name in ("my file#1.yaml", "bad%25.yaml"):
        (repo / name).write_text(SYNTAX_ERROR)
    data = json.loads(report(repo, capsys, "sarif"))
    uris = sorted(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                  for r in data["runs"][0]["results"])  # fmt: skip
    assert [u.rsplit("/", 1)[1] for u in uris] == ["bad%2525.yaml", "my%20file%231.yaml"]


def test_a_yaml_syntax_error_in_sarif_has_no_placeholder_location(
    repo: Path, capsys: Any
) -> None:
    from sarif_pydantic import Sarif

    f = repo / "a.yaml"
    f.write_text(SYNTAX_ERROR)
    data = json.loads(report(repo, capsys, "sarif"))
    Sarif.model_validate(data)
    (result,) = data["runs"][0]["results"]
    assert result["message"]["text"] == YAML_PROBLEM
    (location,) = result["locations"]
    assert "logicalLocations" not in location
    assert location["physicalLocation"]["region"]["startLine"] == 5
    assert location["physicalLocation"]["artifactLocation"]["uri"].endswith("a.yaml")
