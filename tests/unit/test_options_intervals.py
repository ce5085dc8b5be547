"""Intervals that would spin or mean nothing are usage errors naming the
option and the value (exit 1, no usage dump)."""

from __future__ import annotations

import pytest

from reconciler.cli import main as cli


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--poll-interval", "-1"], "argument --poll-interval: must be 0 or more, not -1"),
        (["--poll-interval=-0.5"], "argument --poll-interval: must be 0 or more, not -0.5"),
        (["--poll-interval", "nan"], "argument --poll-interval: not a number of seconds: 'nan'"),
        (["--poll-interval", "soon"], "argument --poll-interval: not a number of seconds: 'soon'"),
    ],
)
def test_a_poll_interval_below_0_is_a_usage_error(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--watch", "--repo", "r", *argv])
    assert exited.value.code == 1
    assert capsys.readouterr().err == f"reconcile: error: {message}\n(see reconcile --help)\n"


def test_a_poll_interval_of_0_still_means_never():
    args = cli.parser().parse_args(["--watch", "--repo", "r", "--poll-interval", "0"])
    assert args.poll_interval == 0.0


@pytest.mark.parametrize(
    "text,message", [("0", "must be more than 0, not 0"), ("-5", "must be more than 0, not -5")]
)
def test_a_period_that_would_spin_is_refused(text, message):
    import argparse

    from reconciler.cli.gitops_options import positive_seconds

    with pytest.raises(argparse.ArgumentTypeError, match=f"^{message}$"):
        positive_seconds(text)
    assert positive_seconds("0.5") == 0.5
