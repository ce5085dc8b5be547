"""Diff ordering, replace semantics, plan files and the human plan."""

import pytest

from reconciler.cli.render import render_plan
from reconciler.plan.diff import Action, diff
from reconciler.plan.plan import Plan, PlanFileError
from reconciler.plan.state import DesiredState, Obj, ObjKind, ObservedState


def o(address, kind, **attrs):
    return Obj(address, kind, attrs)


def desired(*objs):
    return DesiredState("n1", True, {x.address: x for x in objs})


def observed(*objs):
    return ObservedState({x.address: x for x in objs})


PROG = o("prog/tc@new", ObjKind.PROG, programs=["a"])
OLD_PROG = o("prog/tc@old", ObjKind.PROG, programs=["a"])


def test_make_before_break_order():
    changes = diff(
        desired(
            PROG,
            o("map/m", ObjKind.MAP, max_entries=1),
            o("map/m/k", ObjKind.ENTRY, v=1),
            o("tc/eth0/ingress", ObjKind.TC, prog="tc@new"),
        ),
        observed(
            OLD_PROG,
            o("map/m", ObjKind.MAP, max_entries=1),
            o("tc/eth1/ingress", ObjKind.TC, prog="tc@old"),
            o("map/m/gone", ObjKind.ENTRY, v=2),
        ),
    )
    assert [(c.action, c.address) for c in changes] == [
        (Action.CREATE, "prog/tc@new"),
        (Action.CREATE, "map/m/k"),
        (Action.CREATE, "tc/eth0/ingress"),
        (Action.DELETE, "tc/eth1/ingress"),
        (Action.DELETE, "map/m/gone"),
        (Action.DELETE, "prog/tc@old"),
    ]


def test_equal_states_have_no_changes_and_zero_is_not_missing():
    entry = o("map/g/0", ObjKind.ENTRY, log_level=0)
    assert diff(desired(entry), observed(entry)) == ()


def test_entries_of_vanished_interfaces_are_deleted():
    (gone,) = diff(desired(), observed(o("map/c/#7", ObjKind.ENTRY, ifindex=7)))
    assert (gone.action, gone.address) == (Action.DELETE, "map/c/#7")


def test_map_resize_is_replace_and_rebuilds_programs():
    tc = o("tc/eth0/ingress", ObjKind.TC, prog="tc@new")
    changes = diff(
        desired(PROG, o("map/m", ObjKind.MAP, max_entries=2), tc),
        observed(PROG, o("map/m", ObjKind.MAP, max_entries=1), tc),
    )
    assert [(c.action.symbol, c.address) for c in changes] == [
        ("-/+", "map/m"),
        ("-/+", "prog/tc@new"),
        ("~", "tc/eth0/ingress"),
    ]


def test_entries_of_a_deleted_map_are_pruned_with_it():
    changes = diff(
        desired(),
        observed(o("map/m", ObjKind.MAP, max_entries=1), o("map/m/0", ObjKind.ENTRY, v=0)),
    )
    assert [c.address for c in changes] == ["map/m"]


def _plan(changes):
    return Plan(
        "n1",
        {"identity": "dir:1", "description": "cfg"},
        "/sys/fs/bpf/x",
        "fp",
        changes,
        {"flags": []},
        ("a warning",),
    )


def test_plan_render_and_roundtrip(tmp_path):
    changes = diff(
        desired(PROG, o("map/g/0", ObjKind.ENTRY, log_level=1)),
        observed(o("map/g/0", ObjKind.ENTRY, log_level=0), OLD_PROG),
    )
    plan = _plan(changes)
    text = render_plan(plan)
    assert "  + prog/tc@new" in text
    assert "  ~ map/g/0" in text and "log_level: 0 -> 1" in text
    assert "  - prog/tc@old" in text
    assert text.rstrip().endswith("Plan: 1 to add, 1 to change, 1 to destroy.")
    assert "Warning: a warning" in text
    path = tmp_path / "p.json"
    plan.dump(str(path))
    assert Plan.read(str(path)) == plan


def test_empty_plan_says_no_changes():
    assert "No changes." in render_plan(_plan(()))


def test_bad_plan_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 99}')
    with pytest.raises(PlanFileError, match="format_version 99 is not 1"):
        Plan.read(str(bad))
    bad.write_text("{")
    with pytest.raises(PlanFileError):
        Plan.read(str(bad))
    with pytest.raises(PlanFileError, match="No such file"):
        Plan.read(str(tmp_path / "missing.json"))


def test_a_huge_file_is_not_read_as_a_plan(tmp_path, monkeypatch):
    from reconciler.plan import plan as plan_file

    monkeypatch.setattr(plan_file, "MAX_PLAN_BYTES", 1024 * 1024)
    huge = tmp_path / "huge.json"
    huge.write_text(" " * (1024 * 1024 + 1))
    with pytest.raises(PlanFileError) as err:
        Plan.read(str(huge))
    assert str(err.value) == f"{huge}: more than 1 MiB: not a plan --out wrote"


def test_nat_writes_never_expose_a_missing_backend():
    fe = "map/rcl_nat_fe/10.96.0.1:80/tcp"
    be = "map/rcl_nat_be/00000007/{}"

    def state(count, kind):
        objs = [o(fe, ObjKind.ENTRY, svc_id=7, count=count)]
        objs += [o(be.format(i), ObjKind.ENTRY, ip=f"10.0.0.{i}", port=80) for i in range(count)]
        return kind(*objs)

    grow = [c.address for c in diff(state(3, desired), state(1, observed))]
    assert grow == [be.format(1), be.format(2), fe]  # backends first, then the count
    shrink = [c.address for c in diff(state(1, desired), state(3, observed))]
    assert shrink == [fe, be.format(1), be.format(2)]  # the count first, then deletions


def test_an_attribute_only_one_side_has_reads_none():
    changes = diff(
        desired(o("map/rcl_ct", ObjKind.MAP, max_entries=4)),
        observed(o("map/rcl_ct", ObjKind.MAP, max_entries=4, layout="kernel map type 9")),
    )
    text = render_plan(_plan(changes))
    assert "-/+ map/rcl_ct" in text and "layout: kernel map type 9 -> (none)" in text


def test_a_sized_map_names_its_setting_and_conntrack_its_buckets():
    """rcl_ct's max_entries counts buckets of CT_WAYS entries, not the
    entries bpfMapSizeConntrack asks for: the plan says both."""
    from reconciler.compile.programs import compile_programs, programs_for
    from reconciler.config.felix import DEFAULTS

    config = {**DEFAULTS, "bpfMapSizeConntrack": 131072, "bpfMapSizeNATFrontend": 70000}
    fragment = compile_programs(config, programs_for("/sys/fs/bpf/x", config, "d", 250))
    maps = {o.address: o for o in fragment.objects if o.kind is ObjKind.MAP}
    plan = Plan("n1", {"description": "src"}, "/sys/fs/bpf/x", "", diff(
        DesiredState("n1", True, {a: maps[a] for a in ("map/rcl_ct", "map/rcl_nat_fe")}),
        observed(),
    ))  # fmt: skip
    text = render_plan(plan)
    assert (
        "+ map/rcl_ct                               max_entries=18725  "
        "(bpfMapSizeConntrack: 131,072, 18,725 buckets of 7 entries)"
    ) in text
    assert "max_entries=70000  (bpfMapSizeNATFrontend: 70,000)" in text


def test_a_backend_that_leaves_is_named_not_only_the_slots_it_shifts():
    """Backends fill slots in order: removing the first moves the others
    down a slot. The plan names the backend that left (and the one that
    joined), under the service's first slot line, with or without the
    removed slot's note."""
    fe = "map/rcl_nat_fe/10.96.0.1:80/tcp"
    be = "map/rcl_nat_be/00000007/{}"
    info = {"frontend": "nat/10.96.0.1:80/tcp", "service": "shop/web:http/tcp"}

    def state(ips, kind):
        objs = [Obj(fe, ObjKind.ENTRY, {"svc_id": 7, "count": len(ips)}, info)]
        objs += [
            Obj(be.format(i), ObjKind.ENTRY, {"ip": ip, "port": 8080}, info)
            for i, ip in enumerate(ips)
        ]
        return kind(*objs)

    gone = render_plan(_plan(diff(state(["10.0.0.2", "10.0.0.3"], desired),
                                  state(["10.0.0.1", "10.0.0.2", "10.0.0.3"], observed))))
    lines = gone.splitlines()
    first = next(i for i, line in enumerate(lines) if be.format(0) in line)
    assert lines[first + 1] == "        backends of shop/web:http/tcp: - 10.0.0.1:8080"
    assert gone.count("backends of") == 1
    swapped = render_plan(_plan(diff(state(["10.0.0.1", "10.0.0.4"], desired),
                                     state(["10.0.0.1", "10.0.0.2"], observed))))
    assert "backends of shop/web:http/tcp: - 10.0.0.2:8080, + 10.0.0.4:8080" in swapped
    same = render_plan(_plan(diff(state(["10.0.0.1"], desired), state(["10.0.0.1"], observed))))
    assert "backends of" not in same


def test_a_saved_plan_is_compared_without_the_notes_of_its_changes():
    """A removal's note comes from the record of the last apply, which can
    move between --plan --out and --apply --plan-file: the changes must be
    the same, their info need not."""
    import dataclasses

    from reconciler.engine.reconcile import ReconcileError, check_same_changes

    want = desired(o("map/g/0", ObjKind.ENTRY, log_level=1))
    have = observed(o("map/g/0", ObjKind.ENTRY, log_level=0), o("map/g/1", ObjKind.ENTRY, x=1))
    changes = diff(want, have)
    noted = tuple(
        dataclasses.replace(c, info={"service": "shop/web:http/tcp"}) for c in changes
    )
    plan = dataclasses.replace(_plan(noted), build=dict(want.build))
    check_same_changes(plan, want, have)  # the same changes: accepted
    moved = observed(o("map/g/0", ObjKind.ENTRY, log_level=2), o("map/g/1", ObjKind.ENTRY, x=1))
    with pytest.raises(ReconcileError, match="plan file does not match the changes"):
        check_same_changes(plan, want, moved)
