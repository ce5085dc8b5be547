"""The version read from our distribution's METADATA without importlib.metadata."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from reconciler import version as v

ROOT = Path(__file__).resolve().parents[2]


def dist(tmp_path: Path, name: str, text: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    (d / "METADATA").write_text(text)
    return d


def test_reads_the_version_field(tmp_path: Path) -> None:
    head = "Metadata-Version: 2.1\nName: calico-gitops-reconciler\nVersion: 1.2.3\n"
    dist(tmp_path, "calico_gitops_reconciler-1.2.3.dist-info", head + "\nbody\n")
    assert v.from_metadata_dir(str(tmp_path)) == "1.2.3"


@pytest.mark.parametrize(
    ("names", "text"),
    [
        ((), ""),  # not installed here
        (("other_pkg-1.0.dist-info",), "Version: 1.0\n"),  # someone else's
        (("calico_gitops_reconciler-1.0.dist-info", "calico_gitops_reconciler-2.0.dist-info"),
         "Version: 1.0\n"),  # two installs: ambiguous, left to importlib.metadata
        (("calico_gitops_reconciler-1.0.dist-info",), "Name: x\n\nVersion: 1.0\n"),  # in the body
        (("calico_gitops_reconciler-1.0.dist-info",), "Name: x\nVersion:\n"),  # empty
    ],
)  # fmt: skip
def test_none_when_not_one_clear_version(tmp_path: Path, names: tuple[str, ...], text: str) -> None:
    for name in names:
        dist(tmp_path, name, text)
    assert v.from_metadata_dir(str(tmp_path)) is None


def test_none_for_a_missing_directory(tmp_path: Path) -> None:
    assert v.from_metadata_dir(str(tmp_path / "absent")) is None


def test_agrees_with_importlib_metadata() -> None:
    try:
        expected = metadata.version(v.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        expected = v.SOURCE_TREE
    assert v.version() == expected


def test_version_does_not_import_importlib_metadata() -> None:
    try:
        metadata.version(v.DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pytest.skip("not installed: the fallback imports importlib.metadata")
    code = "import sys; from reconciler.version import version; version(); " \
           "print('importlib.metadata' in sys.modules)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout  # fmt: skip
    assert out.strip() == "False"
