"""The package as an operator gets it: a wheel built from the repository,
installed into a fresh venv, validating from any directory as any user; and
the pre-commit hook as a config repository runs it.

These install from the package index (dependencies) and take tens of seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "cluster-config"
SYSTEM_PYTHON = "/usr/bin/python3"  # world-readable, unlike a pyenv under root's home
BAD = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata:
  name: default
spec:
  bpfConnectTimeLoadBalancing: tcp
"""


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload,no-any-return]


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    """A directory every user can read: pytest's tmp_path is root-only."""
    path = Path(tempfile.mkdtemp(prefix="rcl-pkg-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(shared_dir: Path) -> Path:
    """A wheel built from a clean copy (a build/ left in the tree could hide a
    missing file)."""
    src = shared_dir / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", "tests", "bench"
        ),
    )
    out = shared_dir / "dist"
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)])
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("*.whl")
    return path


def test_wheel_carries_schemas_and_bpf_sources(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for top in ("schemas", "bpf"):
        for f in (REPO / top).rglob("*"):
            if f.is_file():
                assert f"reconciler/_assets/{top}/{f.relative_to(REPO / top)}" in names
    assert "reconciler/cli/main.py" in names
    assert not any(n.startswith(("tests/", "sandbox/")) for n in names)


def _as_nobody() -> list[str]:
    """A prefix that runs a command as nobody. Through a shell: setpriv's own
    execve still resolves the path with root's capabilities (they are dropped
    by that very exec), so a root-only interpreter would seem to run."""
    if os.geteuid() != 0:
        return []  # already not root
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "/bin/sh", "-c", 'exec "$0" "$@"']  # fmt: skip


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="needs the system python3")
def test_installed_wheel_validates_anywhere_as_any_user(wheel: Path, shared_dir: Path) -> None:
    venv = shared_dir / "venv"
    assert run([SYSTEM_PYTHON, "-m", "venv", str(venv)]).returncode == 0
    installed = run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)])
    assert installed.returncode == 0, installed.stderr
    cfg = shared_dir / "cfg"
    shutil.copytree(EXAMPLES, cfg)
    bad = shared_dir / "bad"
    bad.mkdir()
    (bad / "felix.yaml").write_text(BAD)
    for p in (cfg, bad, *cfg.rglob("*"), *bad.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}
    reconcile = [*_as_nobody(), str(venv / "bin" / "reconcile")]

    good = run([*reconcile, "--validate", str(cfg)], cwd="/", env=env)
    assert good.returncode == 0, good.stderr
    assert "resource(s): valid" in good.stderr
    # the installed copy answers, not the repository's
    assert "Traceback" not in good.stderr

    broken = run([*reconcile, "--validate", str(bad)], cwd="/", env=env)
    assert broken.returncode == 1, broken.stderr
    assert "spec.bpfConnectTimeLoadBalancing: 'tcp' is not one of" in broken.stdout

    version = run([*reconcile, "--version"], cwd="/", env=env)
    assert version.returncode == 0
    assert version.stdout.startswith("reconcile ")


def test_pre_commit_hook_from_the_repository(tmp_path: Path) -> None:
    pre_commit = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    if not os.path.exists(pre_commit):
        pytest.fail("pre-commit is not installed: make setup installs the dev extras")
    if not (REPO / ".git").exists():
        pytest.skip("the hook is tried from a Git checkout")
    cfg = tmp_path / "config-repo"
    shutil.copytree(EXAMPLES, cfg)
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    for step in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "config"]):
        assert run([*git, *step], cwd=cfg).returncode == 0
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    hook = [pre_commit, "try-repo", str(REPO), "calico-validate", "--all-files"]

    ok = run(hook, cwd=cfg, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Passed" in ok.stdout

    (cfg / "felix" / "broken.yaml").write_text(BAD.replace("name: default", "name: broken"))
    assert run([*git, "add", "-A"], cwd=cfg).returncode == 0
    failed = run(hook, cwd=cfg, env=env)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Failed" in failed.stdout
    assert "'tcp' is not one of" in failed.stdout


def test_the_make_setup_venv_is_usable_by_other_users(shared_dir: Path) -> None:
    """`make setup` builds .venv on an interpreter every user can run."""
    python = REPO / ".venv" / "bin" / "python"
    if not python.exists():
        pytest.skip("no .venv: make setup makes it")
    if os.geteuid() != 0:
        pytest.skip("runs the check as another user: needs root")
    probe = run([*_as_nobody(), "test", "-r", str(REPO / "reconciler" / "__init__.py")])
    if probe.returncode != 0:
        pytest.skip(f"{REPO} itself is not readable by other users")
    interpreter = os.path.realpath(python)
    alone = run([*_as_nobody(), interpreter, "-c", "print('ok')"], cwd="/")
    assert alone.returncode == 0, f"{interpreter} cannot be run by other users: {alone.stderr}"
    cfg = shared_dir / "setup-cfg"
    shutil.copytree(EXAMPLES, cfg)
    for p in (cfg, *cfg.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    done = run([*_as_nobody(), str(REPO / ".venv" / "bin" / "reconcile"), "--validate", str(cfg)],
               cwd="/", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "resource(s): valid" in done.stderr
