"""--validate loads no plan or datapath module; the modes that do still
report a bad plan file as an error, not an internal one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80, protocol: TCP}]}
"""


def test_validate_loads_no_plan_module(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(SERVICE)
    code = (
        "import sys; from reconciler.cli.main import main; "
        f"rc = main(['--validate', {str(tmp_path)!r}, '--no-cache']); "
        "print(rc, sorted(m for m in sys.modules "
        "if m.startswith(('reconciler.plan', 'reconciler.datapath', 'reconciler.cli.render'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "0 []"


def test_a_bad_plan_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 99}')
    args = ["--apply", "--plan-file", str(bad), "--bpffs-root", str(tmp_path / "bpf"),
            "--state-dir", str(tmp_path / "state")]  # fmt: skip
    assert main(args) == 1
    assert capsys.readouterr().err == f"error: {bad}: plan format_version 99 is not 1\n"
