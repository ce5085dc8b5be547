"""--keyring is what --verify-signatures checks against: alone it would be
ignored, so it is a usage error (exit 1, the message, no usage dump)."""

from __future__ import annotations

import pytest

from reconciler.cli import main as cli

ALONE = "reconcile: error: --keyring needs --verify-signatures (without it nothing is checked)\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["--plan", "--repo", "r", "--ref", "main", "--keyring", "k"],
        ["--watch", "--repo", "r", "--keyring", "k"],
        ["--validate", "--repo", "r", "--keyring=k"],
        ["--install-hooks", "server.git", "--keyring", "k"],
    ],
)
def test_a_keyring_without_verify_signatures_is_a_usage_error(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 1
    assert capsys.readouterr().err == ALONE + "(see reconcile --help)\n"


def test_a_keyring_without_a_repository_says_so_first(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--watch", "--keyring", "k"])
    assert "--keyring needs --repo" in capsys.readouterr().err
