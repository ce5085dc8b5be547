"""The README's broken change is examples/bad/: its --validate output in
the README is what the command prints, line for line."""

from __future__ import annotations

from pathlib import Path

from reconciler.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "$ reconcile --validate examples/bad/\n"


def test_the_readme_shows_what_validating_examples_bad_prints(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(ROOT)
    readme = (ROOT / "README.md").read_text()
    start = readme.index(COMMAND) + len(COMMAND)
    shown = readme[start : readme.index("```", start)]
    assert main(["--validate", "examples/bad/"]) == 1
    printed = capsys.readouterr()
    assert printed.out + printed.err == shown

