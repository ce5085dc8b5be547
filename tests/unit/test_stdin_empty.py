"""`producer | reconcile --validate -` whose producer failed: standard input
with no YAML document is refused as an empty directory is, unless
--allow-empty."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main as cli

TIER = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: a}\nspec: {order: 1}\n"
REFUSED = (
    "<stdin>: standard input was empty (no YAML document): nothing was validated; "
    "pass --allow-empty if that is meant\n"
)


def _validate(monkeypatch, capsys, tmp_path, data, *extra):
    given = tmp_path / "stdin"
    given.write_bytes(data)
    with open(given, "rb") as fh:
        monkeypatch.setattr(sys, "stdin", fh)
        code = cli.main(["--validate", "-", "--no-cache", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "data", [b"", b"\n", b"  \n \r\n", b"# generated\n\n# nothing\n", b"---\n# c\n...\n"]
)
def test_empty_standard_input_is_refused(monkeypatch, capsys, tmp_path, data):
    code, out, err = _validate(monkeypatch, capsys, tmp_path, data)
    assert code == 1
    assert out == REFUSED
    assert err == "1 file(s), 0 resource(s): invalid: 1 error(s)\n"


def test_allow_empty_lets_it_pass(monkeypatch, capsys, tmp_path):
    code, out, err = _validate(monkeypatch, capsys, tmp_path, b"", "--allow-empty")
    assert (code, out, err) == (0, "", "1 file(s), 0 resource(s): valid\n")


def test_json_carries_the_refusal(monkeypatch, capsys, tmp_path):
    code, out, _ = _validate(monkeypatch, capsys, tmp_path, b"", "--format", "json")
    doc = json.loads(out)
    assert code == 1 and doc["valid"] is False
    assert doc["diagnostics"] == [{
        "file": "<stdin>", "line": 1, "resource": "-", "path": "(source)", "severity": "error",
        "message": "standard input was empty (no YAML document): nothing was validated; "
                   "pass --allow-empty if that is meant",
    }]  # fmt: skip


def test_a_document_is_not_empty(monkeypatch, capsys, tmp_path):
    code, out, err = _validate(monkeypatch, capsys, tmp_path, b"# head\n" + TIER.encode())
    assert (code, out, err) == (0, "", "1 file(s), 1 resource(s): valid\n")


def test_empty_standard_input_beside_a_valid_directory_is_refused(monkeypatch, capsys, tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "a.yaml").write_text(TIER)
    code, out, err = _validate(monkeypatch, capsys, tmp_path, b"", str(cfg))
    assert code == 1
    assert out == REFUSED
    assert err == "2 file(s), 1 resource(s): invalid: 1 error(s)\n"


def test_dev_null_in_a_process_of_its_own(tmp_path):
    """The pipeline's own shape: `reconcile --validate - </dev/null`."""
    with open("/dev/null", "rb") as null:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler.cli.main", "--validate", "-"],
            stdin=null, capture_output=True, text=True, timeout=60,
            cwd=Path(__file__).resolve().parents[2],
            env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == REFUSED
    assert done.stderr == "1 file(s), 0 resource(s): invalid: 1 error(s)\n"
