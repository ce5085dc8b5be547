"""scripts/link-headers.sh on fake /lib/modules and /usr/src trees: a working
headers link is never replaced; a missing or dangling one is made, preferring
the running kernel's own headers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "link-headers.sh"
KVER = "6.18.44-test"


def headers(root: Path, name: str) -> Path:
    tree = root / name
    (tree / "include" / "generated").mkdir(parents=True)
    (tree / "include" / "generated" / "autoconf.h").write_text("")
    return tree


def run(tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KVER": KVER, "MODULES_DIR": str(tmp / "modules"),
           "SRC_DIR": str(tmp / "src")}  # fmt: skip
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    headers(tmp_path / "src", "linux-headers-6.1.0-57-amd64")
    (tmp_path / "src" / "linux-headers-6.1.0-57-common").mkdir()
    return tmp_path


def build(tmp: Path) -> Path:
    return tmp / "modules" / KVER / "build"


def test_a_working_link_is_kept(tmp: Path) -> None:
    own = headers(tmp, "own-headers")
    build(tmp).parent.mkdir(parents=True)
    build(tmp).symlink_to(own)
    done = run(tmp)
    assert done.returncode == 0, done.stderr
    assert os.readlink(build(tmp)) == str(own)
    assert not (build(tmp).parent / "source").exists()


def test_a_real_header_directory_is_kept(tmp: Path) -> None:
    build(tmp).parent.mkdir(parents=True)
    headers(build(tmp).parent, "build")
    done = run(tmp)
    assert done.returncode == 0, done.stderr
    assert not build(tmp).is_symlink()


def test_the_running_kernels_own_headers_are_preferred(tmp: Path) -> None:
    own = headers(tmp / "src", f"linux-headers-{KVER}")
    done = run(tmp)
    assert done.returncode == 0, done.stderr
    assert os.readlink(build(tmp)) == str(own)
    assert "another kernel" not in done.stderr


def test_missing_or_dangling_link_gets_another_kernels_headers_with_a_warning(tmp: Path) -> None:
    build(tmp).parent.mkdir(parents=True)
    build(tmp).symlink_to(tmp / "gone")
    done = run(tmp)
    assert done.returncode == 0, done.stderr
    assert os.readlink(build(tmp)) == str(tmp / "src" / "linux-headers-6.1.0-57-amd64")
    assert os.readlink(build(tmp).parent / "source") == str(
        tmp / "src" / "linux-headers-6.1.0-57-common"
    )
    assert f"warning: no headers for kernel {KVER}" in done.stderr


def test_no_headers_at_all_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    done = run(tmp_path)
    assert done.returncode == 1
    assert f"no kernel headers under {tmp_path / 'src'} for {KVER}" in done.stderr


def test_a_directory_without_headers_is_left_alone(tmp: Path) -> None:
    build(tmp).mkdir(parents=True)
    done = run(tmp)
    assert done.returncode == 1
    assert "exists but holds no kernel headers; left alone" in done.stderr
    assert build(tmp).is_dir() and not build(tmp).is_symlink()
