"""The one error handler: expected failures, missing privileges, Ctrl-C and bugs
map to distinct exit codes and readable messages."""

import pytest

from reconciler.cli import commands as modes
from reconciler.cli import main as cli


@pytest.mark.parametrize(
    "exc,code,message",
    [
        (
            PermissionError(1, "Operation not permitted"), 1,
            "error: Operation not permitted; --plan reads the kernel's BPF and network state "
            "and needs root (CAP_BPF",
        ),
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


def test_bpffs_that_cannot_be_mounted_is_a_clear_error(monkeypatch, capsys):
    from reconciler.engine.spec import BpffsError

    def fail(_args):
        raise BpffsError(1, "bpffs is not mounted at /sys/fs/bpf and mounting it failed")

    monkeypatch.setattr(modes, "plan_mode", fail)
    assert cli.main(["--plan", "--config", "."]) == 1
    assert capsys.readouterr().err == (
        "error: bpffs is not mounted at /sys/fs/bpf and mounting it failed: Operation not "
        "permitted; run as root, or mount it first (mount -t bpf bpf /sys/fs/bpf); nothing "
        "was changed\n"
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--plan", "--apply"], "argument --apply: not allowed with argument --plan"),
        (
            [],
            "one of the arguments --validate --plan --apply --status --watch --explain "
            "--install-hooks --snapshot is required",
        ),
        (["--plan", "--bogus"], "unknown option --bogus\n"),
        (["--plna"], "unknown option --plna (did you mean --plan?)"),
        (["--stauts", "--json"], "unknown option --stauts (did you mean --status?)"),
        (["--plan", "--interval", "x"], "argument --interval: not a number of seconds: 'x'"),
        (["--watch", "--interval", "0"], "argument --interval: must be more than 0, not 0"),
        (["--watch", "--interval", "-5"], "argument --interval: must be more than 0, not -5"),
        (["--plan", "--conf", "x"], "unknown option --conf (did you mean --config?)"),  # no abbrev.
        (["--validate", "--out", "p.json"], "--validate does not take --out"),
        (["--status", "--config", "x"], "--status does not take --config"),
        (["--plan", "--format=json"], "--plan does not take --format"),
        (["--apply", "--interval", "5"], "--apply does not take --interval"),
        (["--explain", "--from", "a", "--to", "b:1/tcp", "--json"],
         "--explain does not take --json"),
        (["--install-hooks", "x.git", "--json"], "--install-hooks does not take --json"),
        (["--plan", "somedir"], "PATH arguments are only taken by --validate"),
        (["--validate", "--jobs", "-3"], "argument --jobs: must be 0 or more, not -3"),
        (["--validate", "--json", "--format", "junit"],
         "--json and --format are two output formats: give one"),
        (["--validate", "--repo", ".", "--config", "x"],
         "--config and --repo are two sources: give one"),
        (["--validate", "--repo", ".", "somedir"],
         "PATH arguments are a working tree and --repo a commit: give one"),
        (["--plan", "--ref", "main"], "--ref needs --repo (it reads commits, not a working tree)"),
        (["--validate", "--verify-signatures", "."], "--verify-signatures needs --repo"),
        (["--watch", "--keyring", "k"], "--keyring needs --repo"),
        (["--apply", "--plan-file", "p.json", "--config", "x"],
         "--plan-file applies the source its plan was made from: --config would be ignored"),
        (["--watch", "--repo", "r", "somedir"], "PATH arguments are only taken by --validate"),
        (["--explain"], "--explain needs --from SRC and --to DST:PORT/PROTO"),
        (["--explain", "--from", "web-0"], "--explain needs --from SRC and --to DST:PORT/PROTO"),
        (["--explain", "--to", "web-0:80/tcp"], "--explain needs --from SRC and --to"),
    ],
)
def test_usage_errors_exit_1_never_2(capsys, argv, message):
    """2 means "changes present": a typo must never read as pending changes."""
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 1
    err_text = capsys.readouterr().err
    assert err_text.startswith("reconcile: error: ")
    # one pointer to help: the mode's when the message names it, else the whole
    assert err_text.count("(see reconcile ") == 1, err_text
    assert err_text.endswith(("\n(see reconcile --help)\n", " --help)\n"))
    assert message in err_text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--plan", "--plan-file", "x.json", "--config", "c"], "--plan does not take --plan-file"),
        (["--validate", "--plan-file", "x", "c"], "--validate does not take --plan-file"),
    ],
)
def test_an_option_the_mode_does_not_take_is_said_before_any_conflict(capsys, argv, message):
    with pytest.raises(SystemExit):
        cli.main(argv)
    err_text = capsys.readouterr().err
    assert err_text.startswith(f"reconcile: error: {message} (see reconcile "), err_text


def test_every_option_is_in_the_mode_table():
    from reconciler.cli import options

    dests = {a.dest for a in cli.parser()._actions} - {"help", "version", *options.MODES}
    assert dests <= set(options.OPTION_MODES)
    for dest, modes_taking in options.OPTION_MODES.items():
        assert modes_taking <= set(options.MODES), dest


def test_version(capsys):
    from reconciler.version import version

    with pytest.raises(SystemExit) as err:
        cli.main(["--version"])
    assert err.value.code == 0
    assert capsys.readouterr().out == f"reconcile {version()}\n"


@pytest.mark.parametrize("mode", ["validate", "plan", "apply", "status", "watch"])
def test_per_mode_help_lists_only_that_modes_options_with_examples(capsys, mode):
    from reconciler.cli import options

    assert cli.main([f"--{mode}", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: reconcile --{mode}")
    assert f"examples:\n  reconcile --{mode}" in out
    for action in cli.parser()._actions:
        takes = options.OPTION_MODES.get(action.dest)
        if takes is None or not action.option_strings:
            continue
        flag = action.option_strings[-1]
        assert (flag in out) == (mode in takes), flag


@pytest.mark.parametrize("where", ["missing-dir/p.json", "."])
def test_an_out_path_that_cannot_be_written_is_refused_before_planning(
    monkeypatch, capsys, tmp_path, where
):
    def never(_args):
        raise AssertionError("planned although the plan could not be saved")

    monkeypatch.setattr(modes, "plan_mode", never)
    out = str(tmp_path / where)
    assert cli.main(["--plan", "--config", ".", "--out", out]) == 1
    problem = f"no {tmp_path / 'missing-dir'}" if where != "." else "is a directory"
    assert capsys.readouterr().err == f"error: --out {out}: {problem}; nothing was planned\n"


def test_a_plan_is_saved_whole_or_not_at_all(tmp_path):
    import json

    from reconciler.plan.plan import Plan, PlanFileError

    plan = Plan("n1", {}, "/sys/fs/bpf/x", "", ())
    target = tmp_path / "p.json"
    plan.dump(str(target))
    assert json.loads(target.read_text())["node"] == "n1"
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]  # no temporary file left
    gone = tmp_path / "gone"
    with pytest.raises(PlanFileError, match=r"gone/p.json: the plan could not be saved: No such"):
        plan.dump(str(gone / "p.json"))
    assert not gone.exists()


def test_install_hooks_help_and_errors_spell_the_option_as_written(capsys):
    assert cli.main(["--install-hooks", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: reconcile --install-hooks BARE_REPO [")
    with pytest.raises(SystemExit):
        cli.main(["--install-hooks", "x.git", "--json"])
    err = capsys.readouterr().err
    assert "--install-hooks does not take --json (see reconcile --install-hooks --help)" in err


def test_ctrl_c_while_the_modules_load_is_an_interruption_not_a_traceback(tmp_path):
    """The console script guards the import of the command itself: Ctrl-C
    that early exits 130 with "interrupted", as it does once a mode runs."""
    import subprocess
    import sys
    from pathlib import Path

    # a stand-in for the command's modules, interrupted while they load
    fake = tmp_path / "reconciler" / "cli"
    fake.mkdir(parents=True)
    (tmp_path / "reconciler" / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "main.py").write_text("raise KeyboardInterrupt\n")
    from reconciler.cli import launch

    (fake / "launch.py").write_text(Path(launch.__file__).read_text())
    proc = subprocess.run(
        [sys.executable, "-c", "from reconciler.cli.launch import entry; entry()"],
        cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n")


@pytest.mark.parametrize(
    "out,problem",
    [("", "an empty file name"), ("/proc/version", "cannot be written (Invalid argument)")],
)
def test_an_empty_or_unwritable_out_is_refused_before_planning(monkeypatch, capsys, out, problem):
    """A name nothing can be saved at, also where permissions would allow
    it (/proc): refused before planning, never accepted silently."""
    import os

    if out.startswith("/proc") and os.geteuid() != 0:
        pytest.skip("not root: /proc's permissions refuse it before the open does")

    def never(_args):
        raise AssertionError("planned although the plan could not be saved")

    monkeypatch.setattr(modes, "plan_mode", never)
    assert cli.main(["--plan", "--config", ".", "--out", out]) == 1
    shown = out or "''"
    assert capsys.readouterr().err == f"error: --out {shown}: {problem}; nothing was planned\n"


def test_checking_out_leaves_no_file_behind(tmp_path):
    from reconciler.plan.plan import save_problem

    assert save_problem(str(tmp_path / "p.json")) is None
    assert not (tmp_path / "p.json").exists()
    (tmp_path / "kept.json").write_text("old")
    assert save_problem(str(tmp_path / "kept.json")) is None
    assert (tmp_path / "kept.json").read_text() == "old"
