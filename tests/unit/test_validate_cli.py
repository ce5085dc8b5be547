"""`reconcile --validate`: the CI contract. No root, no kernel, no bcc."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from reconciler.cli.main import main

GOOD = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: allow-dns
spec:
  selector: all()
  types: [Egress]
  egress:
  - action: Allow
    protocol: UDP
    destination:
      ports: [53]
"""

BAD = """\
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: broken
spec:
  selector: app == 'web' &&
  egres:
  - action: Allow
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: ports
  namespace: shop
spec:
  ingress:
  - action: Alow
    protocol: ICMP
    destination:
      ports: [80]
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cfg").mkdir()
    return tmp_path / "cfg"


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_tree_exits_zero(repo, capsys):
    write(repo, "gnp.yaml", GOOD)
    assert main(["--validate", str(repo)]) == 0
    assert "1 resource(s): valid" in capsys.readouterr().err


def test_all_errors_at_once_with_locations(repo, capsys):
    bad = write(repo, "bad.yaml", BAD)
    assert main(["--validate", str(repo)]) == 1
    out = capsys.readouterr().out.splitlines()
    # schema: unknown field with a hint, enum typo with a hint
    assert (
        f"{bad}:7: GlobalNetworkPolicy/broken: spec.egres: unknown field 'egres'; "
        "did you mean 'egress'?" in out
    )
    assert any(
        line.startswith(f"{bad}:17: NetworkPolicy/shop/ports: spec.ingress[0].action:")
        and "did you mean 'Allow'?" in line
        for line in out
    ), out
    # semantic: selector syntax with a column; ports need TCP/UDP/SCTP
    assert any(
        line.startswith(f"{bad}:6: GlobalNetworkPolicy/broken: spec.selector:") and "column" in line
        for line in out
    ), out
    assert any(
        line.startswith(f"{bad}:20: NetworkPolicy/shop/ports: spec.ingress[0].destination.ports")
        for line in out
    ), out


def test_duplicate_resources_across_files(repo, capsys):
    write(repo, "a.yaml", GOOD)
    b = write(repo, "b/again.yaml", GOOD)
    assert main(["--validate", str(repo)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{b}:1: GlobalNetworkPolicy/allow-dns: metadata.name: duplicate resource: "
        f"also defined at {repo / 'a.yaml'}:1" in out
    )


def test_json_and_junit_formats(repo, capsys):
    write(repo, "bad.yaml", BAD)
    assert main(["--validate", str(repo), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["format_version"] == 1 and data["valid"] is False
    assert {"file", "line", "resource", "path", "message", "severity"} <= set(
        data["diagnostics"][0]
    )
    assert main(["--validate", str(repo), "--format", "junit"]) == 1
    suites = ET.fromstring(capsys.readouterr().out)
    suite = suites.find("testsuite")
    assert suites.tag == "testsuites" and suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("1", "1")
    (case,) = suite.findall("testcase")
    failure = case.find("failure")
    assert failure is not None and failure.get("message", "").startswith("4 error(s): ")


def test_cache_gives_the_same_answer(repo, capsys):
    write(repo, "bad.yaml", BAD)
    main(["--validate", str(repo)])
    first = capsys.readouterr().out
    main(["--validate", str(repo)])
    assert capsys.readouterr().out == first


def test_validate_needs_no_kernel_modules(repo):
    write(repo, "gnp.yaml", GOOD)
    code = (
        "import sys; from reconciler.cli.main import main; rc = main(['--validate', sys.argv[1]]);"
        "bad = [m for m in ('bcc', 'pyroute2', 'reconciler.kernel.bpf') if m in sys.modules];"
        "print(bad); sys.exit(rc or bool(bad))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(repo)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[]"


def test_missing_path_is_an_error(tmp_path, capsys):
    assert main(["--validate", str(tmp_path / "nope")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def _validate_stdin(tmp_path: Path, *paths: str, **stdin: object) -> subprocess.CompletedProcess:
    """`reconcile --validate - PATHS` in a process of its own; `stdin` is
    subprocess.run's input= or stdin=."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "reconciler.cli.main", "--validate", "-", *paths],
        capture_output=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")}, **stdin,
    )  # fmt: skip


def test_a_path_of_dash_validates_standard_input(repo, tmp_path):
    """`kustomize build | reconcile --validate -`: stdin is one file,
    reported as <stdin>, beside any other paths."""
    done = _validate_stdin(tmp_path, input=GOOD.encode())
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode() == "1 file(s), 1 resource(s): valid\n"
    write(repo, "gnp.yaml", GOOD.replace("allow-dns", "other"))
    stdin = tmp_path / "bad.yaml"
    stdin.write_text(BAD)
    with open(stdin, "rb") as fh:
        done = _validate_stdin(tmp_path, str(repo), stdin=fh)
    out = done.stdout.decode()
    assert done.returncode == 1
    assert "<stdin>:6: GlobalNetworkPolicy/broken: spec.selector:" in out
    assert str(repo / "gnp.yaml") not in out  # the other path is valid
    assert "2 file(s)" in done.stderr.decode()


def test_standard_input_closed_or_too_long_is_a_clear_error(tmp_path):
    closed = subprocess.run(
        [sys.executable, "-c", "import os, sys; os.close(0); sys.stdin = None; "
         "from reconciler.cli.main import main; sys.exit(main(['--validate', '-']))"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
        env={"PATH": "/usr/bin:/bin", "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    assert closed.returncode == 1
    assert closed.stderr == "error: <stdin>: standard input is closed\n"
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"# " + b"x" * (3 << 20) + b"\n")
    with open(huge, "rb") as fh:
        done = _validate_stdin(tmp_path, stdin=fh)
    assert done.returncode == 1
    assert "<stdin>:1: file is more than the limit of 2 MiB" in done.stdout.decode()


def test_enum_hint_ignores_case(repo, capsys):
    write(
        repo,
        "felix.yaml",
        """\
        apiVersion: projectcalico.org/v3
        kind: FelixConfiguration
        metadata:
          name: default
        spec:
          bpfConnectTimeLoadBalancing: tcp
    """,
    )
    assert main(["--validate", str(repo)]) == 1
    assert "'tcp' is not one of 'TCP', 'Enabled', 'Disabled'; did you mean 'TCP'?" in (
        capsys.readouterr().out
    )


def test_a_namespaced_kind_without_a_namespace_is_named_without_one(repo, capsys):
    write(
        repo,
        "np.yaml",
        """\
        apiVersion: projectcalico.org/v3
        kind: NetworkPolicy
        metadata:
          name: web
        spec:
          selector: all()
    """,
    )
    assert main(["--validate", str(repo)]) == 1
    out = capsys.readouterr().out
    assert (
        f"{repo / 'np.yaml'}:3: NetworkPolicy/web: metadata.namespace: required: a namespaced "
        'kind names its namespace ("default" is not assumed)\n'
    ) in out
