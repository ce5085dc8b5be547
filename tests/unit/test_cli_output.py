"""The CLI's output as people and scripts read it: node names, plan
summaries and --detail, colour, logs, the empty-source guard."""

from __future__ import annotations

import argparse
import io
import logging
import re
from pathlib import Path

import pytest

from reconciler.cli import log_output, logs, render
from reconciler.cli.nodename import resolve_node
from reconciler.plan.diff import Action, Change
from reconciler.plan.plan import Plan
from reconciler.plan.state import Obj, ObjKind, ObservedState


def test_node_name_sources_in_calicos_order(tmp_path: Path) -> None:
    import socket

    nodename = tmp_path / "nodename"
    nodename.write_text("from-file\n")
    env = {"NODENAME": "from-env"}
    assert resolve_node("cli", env, str(nodename)) == ("cli", "--node")
    assert resolve_node(None, env, str(nodename)) == ("from-env", "$NODENAME")
    assert resolve_node(None, {}, str(nodename)) == ("from-file", str(nodename))
    missing = str(tmp_path / "none")
    assert resolve_node(None, {}, missing) == (socket.gethostname(), "the hostname")


def nat_change(svc: int, ordinal: int, action: Action = Action.CREATE) -> Change:
    attrs = {"ip": f"10.65.{svc}.{ordinal}", "port": 8080}
    return Change(
        action, f"map/rcl_nat_be/{svc:08x}/{ordinal}", ObjKind.ENTRY,
        None if action is Action.CREATE else attrs, attrs if action is Action.CREATE else None,
        {"service": f"ns/svc{svc}:http/tcp", "frontend": f"10.96.0.{svc}:80/tcp"},
    )  # fmt: skip


def plan_of(*changes: Change, not_enforced: tuple[str, ...] = ()) -> Plan:
    return Plan("n1", {"description": "cfg"}, "/sys/fs/bpf/x", "", changes,
                not_enforced=not_enforced)  # fmt: skip


def test_a_large_plan_is_summarised_by_map_and_service() -> None:
    tc = Change(Action.CREATE, "tc/eth0/ingress", ObjKind.TC, None, {"prog": "p"}, {})
    entries = [nat_change(s, o) for s in range(12) for o in range(10)]
    gone = [nat_change(99, o, Action.DELETE) for o in range(3)]
    plan = plan_of(tc, *entries, *gone)
    text = render.render_plan(plan)
    assert "  + 120 entries in rcl_nat_be (12 services)" in text
    assert "  - 3 entries in rcl_nat_be (1 service)" in text
    assert "  + tc/eth0/ingress" in text
    assert "map/rcl_nat_be/" not in text
    assert "(map entries summarised: --detail lists every one)" in text
    assert "Plan: 121 to add, 0 to change, 3 to destroy." in text
    detail = render.render_plan(plan, detail=True)
    assert detail.count("map/rcl_nat_be/") == 123
    assert "summarised" not in detail
    # a small change is listed entry by entry
    small = render.render_plan(plan_of(*entries[:5]))
    assert small.count("+ map/rcl_nat_be/") == 5


def test_colour_only_when_asked_for_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_of(nat_change(1, 0), nat_change(2, 0, Action.DELETE))
    coloured = render.render_plan(plan, color=True)
    assert "\x1b[32m    + map/rcl_nat_be/00000001/0" in coloured
    assert "\x1b[31m    - map/rcl_nat_be/00000002/0" in coloured
    assert "\x1b[" not in render.render_plan(plan)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    args = argparse.Namespace(no_color=False)
    assert logs.use_color(args, Tty())
    assert not logs.use_color(args, io.StringIO())
    assert not logs.use_color(argparse.Namespace(no_color=True), Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not logs.use_color(args, Tty())


def test_not_enforced_listed_then_counted() -> None:
    few = tuple(f"GlobalNetworkPolicy/p{i}: not enforced: policy is not enforced" for i in range(3))
    text = render.render_plan(plan_of(not_enforced=few))
    assert "Not enforced on this node (3): validated, but this node does not act on" in text
    assert "  GlobalNetworkPolicy/p2: not enforced: policy is not enforced" in text
    many = few * 10
    text = render.render_plan(plan_of(not_enforced=many))
    assert (
        "  30 x policy is not enforced: GlobalNetworkPolicy/p0, GlobalNetworkPolicy/p1, "
        "GlobalNetworkPolicy/p2, GlobalNetworkPolicy/p0, +26 more" in text
    )
    assert "(--detail or --json lists every one)" in text
    # FelixConfiguration settings are always listed one by one
    felix = tuple(f"FelixConfiguration/default: spec.s{i}: not enforced: not a setting" for i in
                  range(12))  # fmt: skip
    text = render.render_plan(plan_of(not_enforced=many + felix))
    assert all(f"  FelixConfiguration/default: spec.s{i}: not enforced" in text for i in range(12))
    assert "  30 x policy is not enforced" in text
    assert render.render_plan(plan_of(not_enforced=many), detail=True).count("/p1:") == 10


def test_logs_are_timestamped_and_leveled(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    args = argparse.Namespace(log_level=None, verbose=1)
    log = logs.setup(args)
    log.info("compiled %d objects", 3)
    log.debug("not shown at -v")
    line = stream.getvalue()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO compiled 3 objects\n", line)
    assert logs.level_of(argparse.Namespace(log_level=None, verbose=0)) == logging.WARNING
    assert logs.level_of(argparse.Namespace(log_level=None, verbose=2)) == logging.DEBUG
    assert logs.level_of(argparse.Namespace(log_level="error", verbose=2)) == logging.ERROR


def test_a_source_without_resources_is_refused_unless_allowed(tmp_path: Path) -> None:
    from reconciler.config.source import SourceCache
    from reconciler.config.spec import open_source
    from reconciler.engine.caches import Caches
    from reconciler.engine.reconcile import EmptySource, compiled_state
    from reconciler.engine.spec import make_target

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "README.md").write_text("not config")
    target = make_target("n1", "/sys/fs/bpf/none", str(tmp_path / "state"), None,
                         tmp_path / "cache", None)  # fmt: skip
    target = type(target)(target.node, target.bpffs_root, target.state_dir, None,
                          target.cache_dir, None)  # fmt: skip
    source = open_source({"kind": "dir", "paths": [str(cfg)]}, False, sources=SourceCache())
    caches = Caches()
    with pytest.raises(EmptySource, match=r"holds no resources \(0 file\(s\)\).*--allow-empty"):
        compiled_state(source, target, [], allow_empty=False, caches=caches)
    state, _ = compiled_state(source, target, [], allow_empty=True, caches=caches)
    assert not state.objects  # bpfEnabled defaults to false: nothing of ours
    # never stored: a later run without --allow-empty cannot reuse it
    assert not list((tmp_path / "cache").rglob("*.state*"))
    with pytest.raises(EmptySource):
        compiled_state(source, target, [], allow_empty=False, caches=caches)


def test_destroys_everything() -> None:
    from reconciler.engine.reconcile import destroys_everything

    obj = Obj("tc/eth0/ingress", ObjKind.TC, {"prog": "p"})
    observed = ObservedState({obj.address: obj}, (), {})
    delete = Change(Action.DELETE, obj.address, ObjKind.TC, {"prog": "p"}, None, {})
    update = Change(Action.UPDATE, obj.address, ObjKind.TC, {"prog": "p"}, {"prog": "q"}, {})
    assert destroys_everything(observed, (delete,))
    assert not destroys_everything(observed, (update,))
    assert not destroys_everything(ObservedState({}, (), {}), ())
    # a map's entries go with the map
    table = Obj("map/rcl_ifstate", ObjKind.MAP, {"max_entries": 3})
    entry = Obj("map/rcl_ifstate/eth0", ObjKind.ENTRY, {"slot": 1})
    both = ObservedState({table.address: table, entry.address: entry}, (), {})
    drop = Change(Action.DELETE, table.address, ObjKind.MAP, {"max_entries": 3}, None, {})
    assert destroys_everything(both, (drop,))
    drop_entry = Change(Action.DELETE, entry.address, ObjKind.ENTRY, {"slot": 1}, None, {})
    assert not destroys_everything(both, (drop_entry,))
    # everything owned goes, but the plan puts a state in its place: a
    # replacement (a half-built node a killed apply left), not a wipe
    create = Change(Action.CREATE, "tc/eth0/egress", ObjKind.TC, None, {"prog": "q"}, {})
    assert not destroys_everything(observed, (delete, create))


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_only_and_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_output.Progress, "TICK", 60.0)  # no redraw during this test

    engine = logging.getLogger("reconciler.engine")
    quiet = argparse.Namespace(log_level=None, verbose=0)
    tty = Tty()
    logs.setup(quiet, tty)
    engine.info("planned %d change(s)", 7, extra={"progress": True})
    engine.info("not a stage message")  # INFO without the mark: not shown at the default level
    assert re.fullmatch(r"\r\x1b\[K\[ +\d+\.\ds\] planned 7 change\(s\)", tty.getvalue())
    logs.finish()
    assert tty.getvalue().endswith("\r\x1b[K")
    pipe = io.StringIO()  # not a terminal: nothing at the default level
    logs.setup(quiet, pipe)
    engine.info("planned %d change(s)", 7, extra={"progress": True})
    assert pipe.getvalue() == ""
    verbose = Tty()  # -v: the logs say it, with timestamps, and no progress line
    logs.setup(argparse.Namespace(log_level=None, verbose=1), verbose)
    engine.info("planned %d change(s)", 7, extra={"progress": True})
    assert verbose.getvalue().endswith(" INFO planned 7 change(s)\n")
    assert "\r" not in verbose.getvalue()


def test_every_json_document_kind_is_documented_with_its_version() -> None:
    from reconciler.cli import commands, watch_cmd
    from reconciler.plan import plan

    doc = (Path(__file__).resolve().parents[2] / "docs" / "json-output.md").read_text()
    kinds = {
        plan.DOCUMENT_KIND: plan.FORMAT_VERSION,
        commands.VALIDATION_KIND: commands.VALIDATION_FORMAT_VERSION,
        "reconcile.apply": commands.APPLY_FORMAT_VERSION,
        "reconcile.status": commands.STATUS_FORMAT_VERSION,
        watch_cmd.WATCH_KIND: watch_cmd.WATCH_FORMAT_VERSION,
    }
    for kind, version in kinds.items():
        assert f"| `{kind}` |" in doc and f"## `{kind}` ({version})" in doc, kind
    source = Path(commands.__file__).read_text()
    assert set(re.findall(r'"(reconcile\.[a-z]+)"', source)) <= set(kinds)


def test_progress_keeps_the_elapsed_time_moving_during_a_long_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setattr(log_output.Progress, "TICK", 0.01)
    tty = Tty()
    logs.setup(argparse.Namespace(log_level=None, verbose=0), tty)
    logging.getLogger("reconciler.engine").info("compiling", extra={"progress": True})
    time.sleep(0.2)
    assert tty.getvalue().count("] compiling") > 2  # redrawn while nothing is logged
    logs.finish()
    done = tty.getvalue()
    time.sleep(0.1)
    assert tty.getvalue() == done  # the ticker stopped with the run


def policy_change(pid: int, cell: int, ref: str, action: Action = Action.CREATE) -> Change:
    attrs = {"action": "allow", "rule": cell}
    return Change(
        action, f"map/rcl_pol_verdict/{pid:08x}/{cell}.0.0", ObjKind.ENTRY,
        None if action is Action.CREATE else attrs, attrs if action is Action.CREATE else None,
        {"policy": ref},
    )  # fmt: skip


def test_a_large_policy_change_is_summarised_by_policy() -> None:
    refs = [f"policy/shop/p{i} ingress rule {i % 3 + 1}" for i in range(5)]
    refs += ["tier/default default action", "end of profiles (drop)"]
    refs += ["profile/kns.shop egress rule 1"]
    made = [policy_change(1, cell, refs[cell % len(refs)]) for cell in range(80)]
    p0 = "policy/shop/p0 ingress rule 1"
    gone = [policy_change(2, cell, p0, Action.DELETE) for cell in range(60)]
    text = render.render_plan(plan_of(*made, *gone))
    named = "policy/shop/p0, policy/shop/p1, policy/shop/p2, +3 more"
    assert f"  + 80 entries in rcl_pol_verdict ({named})" in text
    assert "  - 60 entries in rcl_pol_verdict (policy/shop/p0)" in text


def test_policy_names_of_entry_origins() -> None:
    assert render.policy_name("policy/shop/web ingress rule 2") == "policy/shop/web"
    assert render.policy_name("policy/global-deny egress rule 10") == "policy/global-deny"
    assert render.policy_name("profile/kns.shop ingress rule 1") == "profile/kns.shop"
    assert render.policy_name("tier/default default action") is None
    assert render.policy_name("end of profiles (drop)") is None
    assert render.policy_name("ipset GlobalNetworkSet/blocked") is None


def test_backend_lines_name_their_ordinal() -> None:
    line = render.change_line(nat_change(7, 3))
    assert line.endswith("(10.96.0.7:80/tcp backend 3, ns/svc7:http/tcp)")


def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path: Path) -> None:
    """`reconcile ... | head -1`: the pipe closes under a long output; no
    traceback, no "internal error", exit 1."""
    import subprocess
    import sys

    for i in range(400):  # ~400 findings: far more than a pipe's buffer
        (tmp_path / f"p{i}.yaml").write_text(
            f"apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
            f"metadata: {{name: p{i}}}\nspec: {{selector: 'a ==', order: -{'x' * 200}}}\n"
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--validate", str(tmp_path), "--format", "json",
         "--no-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"{"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 1
    assert "Traceback" not in err and "internal error" not in err, err
