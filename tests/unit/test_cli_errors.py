"""The one error handler: expected failures, missing privileges, Ctrl-C and bugs
map to distinct exit codes and readable messages."""

import pytest

from reconciler.cli import commands as modes
from reconciler.cli import main as cli


@pytest.mark.parametrize(
    "exc,code,message",
    [
        (PermissionError(1, "Operation not permitted"), 1, "need root (CAP_BPF"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (RuntimeError("boom"), 70, "internal error (a bug, please report it): boom"),
    ],
)
def test_failures_map_to_exit_codes(monkeypatch, capsys, exc, code, message):
    def fail(_args):
        raise exc

    monkeypatch.setattr(modes, "plan_mode", fail)
    assert cli.main(["--plan", "--config", "."]) == code
    assert message in capsys.readouterr().err


def test_modes_are_exclusive_and_one_is_required(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["--plan", "--apply"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        cli.main([])
    assert "one of the arguments" in capsys.readouterr().err
