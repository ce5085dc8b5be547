"""Packaging: everything is declared in pyproject.toml except one build step.

The JSON schemas and the BPF sources live at the repository's top level
(`schemas/`, `bpf/`), where editors, CI and the kernel tests use them; a
built package carries copies under `reconciler/_assets/`, where
reconciler.assets looks first."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ASSETS = ("schemas", "bpf")


class BuildPyWithAssets(build_py):  # type: ignore[misc]
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads the repository's own copies
            return
        here = Path(__file__).resolve().parent
        for name in ASSETS:
            target = Path(self.build_lib, "reconciler", "_assets", name)
            self.copy_tree(str(here / name), str(target))


setup(cmdclass={"build_py": BuildPyWithAssets})
