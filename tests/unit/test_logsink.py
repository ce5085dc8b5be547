"""A run that keeps warnings only never imports logging for the records it
drops, and its first warning is still logged with the CLI's format."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_dropped_records_load_nothing_and_the_first_warning_sets_logging_up() -> None:
    done = run(
        """
        import argparse, sys
        from reconciler import logsink
        from reconciler.cli import logs
        args = argparse.Namespace(log_level=None, verbose=0)
        assert logs.setup(args) is None  # deferred: stderr is a pipe here
        log = logsink.get("reconciler.engine")
        log.info("observing the kernel", extra={"progress": True})
        log.debug("detail")
        print("loaded after info:", "logging" in sys.modules)
        log.warning("conntrack handover: %d left", 3)
        print("loaded after warning:", "logging" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["loaded after info: False", "loaded after warning: True"]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING conntrack handover: 3 left\n",
        done.stderr,
    )


def test_a_verbose_run_sets_logging_up_at_once_and_keeps_info() -> None:
    done = run(
        """
        import argparse, sys
        from reconciler import logsink
        from reconciler.cli import logs
        assert logs.setup(argparse.Namespace(log_level=None, verbose=1)) is not None
        logsink.get("reconciler.engine").info("planned %d change(s)", 2)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.endswith(" INFO planned 2 change(s)\n")


def test_without_a_cli_every_record_goes_to_logging(caplog) -> None:
    from reconciler import logsink

    logsink.forward_all()
    with caplog.at_level("DEBUG", logger="reconciler.engine"):
        logsink.get("reconciler.engine").debug("compiled %d object(s)", 5)
    assert [r.getMessage() for r in caplog.records] == ["compiled 5 object(s)"]
    assert caplog.records[0].funcName == "test_without_a_cli_every_record_goes_to_logging"
