"""Every module imports on its own, first, in a fresh interpreter: no import
order hides a circle (the CLI imports modules in many orders)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import reconciler


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    names = [m.name for m in pkgutil.walk_packages(reconciler.__path__, "reconciler.")
             if m.name != "reconciler.__main__"]  # a script: importing it runs the command
    script = (
        "import importlib, subprocess, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True,"
        " text=True)\n"
        "    if r.returncode:\n"
        "        failed.append((name, r.stderr.strip().splitlines()[-1]))\n"
        "print(failed)\n"
        "sys.exit(bool(failed))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(names) > 50


def test_python_m_reconciler_is_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "reconciler", "--version"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("reconcile "), done.stderr
