"""--validate in a machine format reports an unreadable tree in that format
too (a CI reporter reads stdout), one diagnostic per refused path."""

from __future__ import annotations

import json
import os

import pytest

from reconciler.cli import main as cli


@pytest.fixture
def looped(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    os.symlink(cfg / "b.yaml", cfg / "a.yaml")
    os.symlink(cfg / "a.yaml", cfg / "b.yaml")
    return cfg


def test_json_names_each_refused_file(looped, capsys):
    assert cli.main(["--validate", "--no-cache", "--format", "json", str(looped)]) == 1
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert (doc["kind"], doc["valid"], doc["files"]) == ("reconcile.validation", False, 0)
    assert [(d["file"], d["message"], d["severity"]) for d in doc["diagnostics"]] == [
        (str(looped / "a.yaml"), "is a symlink loop", "error"),
        (str(looped / "b.yaml"), "is a symlink loop", "error"),
    ]


@pytest.mark.parametrize("fmt", ["github", "sarif", "junit"])
def test_the_ci_formats_carry_it(looped, capsys, fmt):
    assert cli.main(["--validate", "--no-cache", "--format", fmt, str(looped)]) == 1
    out = capsys.readouterr().out
    assert str(looped / "a.yaml") in out and "is a symlink loop" in out


def test_text_stays_the_one_error_line_per_path(looped, capsys):
    assert cli.main(["--validate", "--no-cache", str(looped)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "".join(
        f"error: {looped / name}: is a symlink loop\n" for name in ("a.yaml", "b.yaml")
    )
