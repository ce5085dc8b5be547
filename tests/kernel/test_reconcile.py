"""The reconcile pipeline end to end: real interfaces, real programs, real traffic."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from reconciler.datapath.loader import cpus
from reconciler.engine.lock import apply_lock
from sandbox.netns import Pod
from tests.kernel.conftest import FELIX, PODS, bpftool_dump

FRONT, BACK = PODS
LATE = Pod("late0", "10.65.0.40")


def tc_filters(node, iface: str, direction: str) -> str:
    out = subprocess.run(
        ["tc", "-n", node.sandbox.node, "filter", "show", "dev", iface, direction],
        capture_output=True,
        text=True,
    )
    return out.stdout


def ifslots(node) -> dict[int, tuple[int, int]]:
    """rcl_ifstate as bpftool sees it (independent of our code): ifindex ->
    (slot, flags), unused slots left out."""
    pin = Path(node.sandbox.bpffs_root) / "maps" / "rcl_ifstate"
    if not pin.exists():
        return {}
    out = {}
    for key, value in bpftool_dump(pin):
        flags, index = int.from_bytes(value[:4], "little"), int.from_bytes(value[4:8], "little")
        if flags or index:
            out[index] = (int.from_bytes(key, "little"), flags)
    return out


def ifstate(node) -> dict[int, int]:
    """rcl_ifstate as bpftool sees it: ifindex -> flags."""
    return {index: flags for index, (_slot, flags) in ifslots(node).items()}


def filter_classid(node, iface: str, direction: str) -> int | None:
    """The classid of our filter as tc(8) prints it ("flowid :5"), or None."""
    words = tc_filters(node, iface, direction).split()
    if "flowid" not in words:
        return None
    return int(words[words.index("flowid") + 1].split(":")[-1], 16)


def ifindex(node, iface: str) -> int:
    raw = subprocess.run(
        ["ip", "-n", node.sandbox.node, "-j", "link", "show", "dev", iface],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(json.loads(raw)[0]["ifindex"])


def has_endpoint(node, iface: str) -> bool:
    """Does the kernel's rcl_pol_ep hold `iface`'s policy (its WorkloadEndpoint
    applied)? Read with bpftool; a pod interface held closed has none."""
    pin = Path(node.sandbox.bpffs_root) / "maps" / "rcl_pol_ep"
    if not pin.exists():
        return False
    index = ifindex(node, iface)
    return any(int.from_bytes(value[:4], "little") == index for _, value in bpftool_dump(pin))


def ping(node, src, dst_ip: str) -> bool:
    r = node.sandbox.exec(node.sandbox.pod_ns(src), "ping", "-c", "1", "-W", "2", dst_ip)
    return r.returncode == 0


def test_attach_counts_traffic_and_is_idempotent(node):
    node.felix()
    node.wep(FRONT)
    rc, out, _ = node.run("--plan")
    assert rc == 2
    assert "+ tc/cali-front0/ingress" in out and "+ tc/eth0/egress" in out
    # no WorkloadEndpoint names cali-back0: held closed, our programs and no policy
    assert "+ tc/cali-back0/ingress" in out and "rcl_pol_ep/cali-back0" not in out
    rc, out, err = node.run("--apply", "-v")
    assert rc == 0, out + err
    if cpus() > 1:  # the tc set, the one long build: compiled in two parts at once
        assert "built the tc set in 2 parts side by side" in err, err
    node.apply_converged()
    for iface in ("cali-front0", "cali-back0", "eth0"):
        for direction in ("ingress", "egress"):
            assert "rcl:tc@" in tc_filters(node, iface, direction)
    # a workload (1) under policy (16)
    front, back = ifindex(node, "cali-front0"), ifindex(node, "cali-back0")
    assert ifstate(node) == {front: 17, back: 17, ifindex(node, "eth0"): 2}
    # each interface's filters carry its slot as classid: the program's index
    slots = ifslots(node)
    assert sorted(slot for slot, _ in slots.values()) == [1, 2, 3]
    for iface in ("cali-front0", "cali-back0", "eth0"):
        for direction in ("ingress", "egress"):
            assert filter_classid(node, iface, direction) == slots[ifindex(node, iface)][0]

    assert ping(node, FRONT, node.sandbox.ext_ip)
    assert not ping(node, FRONT, BACK.ip)  # back0, held closed, receives nothing
    rc, out, _ = node.run("--status", "--json")
    status = json.loads(out)
    front = status["counters"]["cali-front0"]
    assert front["rx_packets"] >= 2 and front["tx_packets"] >= 1  # echo requests and a reply
    assert status["counters"]["cali-back0"]["dropped"] >= 1
    assert status["last_apply"]["source"]["identity"].startswith("dir:")


def test_unchanged_sources_compile_nothing(node, monkeypatch):
    node.felix()
    node.apply_converged()
    progs = Path(node.sandbox.bpffs_root) / "progs"
    inodes = sorted(p.stat().st_ino for p in progs.iterdir())
    assert len(inodes) == 2  # the tc set and the connect-time set
    import bcc

    def refuse(*a, **k):
        raise AssertionError("compiled although nothing changed")

    monkeypatch.setattr(bcc, "BPF", refuse)
    node.wep(FRONT)  # a change that needs new attachments, not new programs
    rc, out, err = node.run("--apply")
    assert rc == 0, out + err
    assert sorted(p.stat().st_ino for p in progs.iterdir()) == inodes


def test_pattern_change_and_wep_removal_prune(node):
    node.felix()
    node.wep(FRONT)
    node.apply_converged()
    eth0 = ifindex(node, "eth0")
    node.felix(pattern="^ens")  # eth0 stops matching the data pattern
    rc, out, _ = node.run("--plan")
    assert rc == 2
    assert "- tc/eth0/ingress" in out and "- map/rcl_ifstate/eth0" in out
    node.apply_converged()
    assert tc_filters(node, "eth0", "ingress") == ""
    assert eth0 not in ifstate(node)
    # clsact went too, since nobody else had filters there
    qdiscs = subprocess.run(
        ["tc", "-n", node.sandbox.node, "qdisc", "show", "dev", "eth0"],
        capture_output=True,
        text=True,
    ).stdout
    assert "clsact" not in qdiscs

    # its WorkloadEndpoint goes, the pod stays: its policy and sources go, and
    # the interface is held closed by the filters it keeps
    node.remove("wep-front0.yaml")
    rc, out, _ = node.run("--plan")
    assert "- map/rcl_pol_ep/cali-front0" in out and "- map/rcl_wep_src/cali-front0" in out
    assert "tc/cali-front0" not in out and "rcl_ifstate" not in out, out
    node.apply_converged()
    assert "rcl:tc@" in tc_filters(node, "cali-front0", "egress")
    front, back = ifindex(node, "cali-front0"), ifindex(node, "cali-back0")
    assert ifstate(node) == {front: 17, back: 17}


def test_deleted_interface_leaves_no_map_entries(node):
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    back_idx = ifindex(node, "cali-back0")
    assert ping(node, BACK, FRONT.ip)  # creates counters for cali-back0
    node.sandbox.remove_pod(BACK)  # the kernel deletes the veth; our entries stay behind
    rc, out, _ = node.run("--plan")
    assert rc == 2
    assert f"- map/rcl_ifstate/#{back_idx}" in out
    assert "WorkloadEndpoint/shop/back0: interface cali-back0 does not exist" in out
    node.apply_converged()
    assert back_idx not in ifstate(node)


@pytest.mark.parametrize("layout", ["per-cpu hash", "flags hash"])
def test_interface_state_in_another_layout_is_replaced(node, layout):
    """A node whose interface state is in a layout the programs do not use:
    a per-CPU hash by ifindex, or flags in a plain hash and counters in a map
    of their own. The plan replaces the map and writes every interface's
    slot afresh; the interfaces stay managed and work."""
    from reconciler.datapath.maps import iface_types as il
    from reconciler.kernel import bpf as bpfsys

    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    maps = Path(node.sandbox.bpffs_root) / "maps"
    want = ifstate(node)
    cpus = bpfsys.possible_cpus()
    if layout == "per-cpu hash":
        old = bpfsys.map_create(il.PERCPU_HASH, "rcl_ifstate", 4, il.IFSTATE.size, 1000)
        for index, flags in want.items():
            value = il.IFSTATE.pack(flags, 0, 1, 100, 0, 0, 0, 0)
            bpfsys.map_update(old, il.U32.pack(index), [value] * cpus)
        extra = []
    else:
        old = bpfsys.map_create(1, "rcl_ifstate", 4, 8, 1000)  # BPF_MAP_TYPE_HASH
        counters = bpfsys.map_create(il.PERCPU_HASH, "rcl_counters", 4, 48, 1000)
        for index, flags in want.items():
            bpfsys.map_update(old, il.U32.pack(index), il.U32.pack(flags) + bytes(4))
            bpfsys.map_update(counters, il.U32.pack(index), [bytes(48)] * cpus)
        extra = [counters]
    try:
        (maps / "rcl_ifstate").unlink()
        bpfsys.obj_pin(old, str(maps / "rcl_ifstate"))
        for fd in extra:
            bpfsys.obj_pin(fd, str(maps / "rcl_counters"))
    finally:
        for fd in (old, *extra):
            bpfsys.close(fd)
    rc, out, _ = node.run("--plan")
    assert rc == 2
    shape = "kernel map type 5, 56-byte values" if extra == [] else "kernel map type 1, 8-byte"
    assert "-/+ map/rcl_ifstate" in out and shape in out
    assert ("- map/rcl_counters" in out) == bool(extra)
    # entries are planned afresh in slots, not carried by ifindex
    assert "+ map/rcl_ifstate/cali-front0" in out and "+ map/rcl_ifstate/cali-back0" in out
    node.apply_converged()
    assert ifstate(node) == want
    assert not (maps / "rcl_counters").exists()
    assert ping(node, FRONT, BACK.ip)
    rc, out, _ = node.run("--status", "--json")
    assert json.loads(out)["counters"]["cali-front0"]["rx_packets"] >= 1


def test_a_slot_is_handed_on_only_after_its_interface_left(node):
    """An interface that leaves (excluded here) frees its slot; one that
    arrives in the same apply takes a slot nobody held, so the slot being
    cleared is never the new one's. The next arrival may take the freed slot."""
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    front_slot, _ = ifslots(node)[ifindex(node, "cali-front0")]
    node.write("felix.yaml", FELIX.format(enabled="true", pattern="^eth")
               + "  interfaceExclude: cali-front0\n")  # fmt: skip
    node.sandbox.add_pod(LATE)  # no WorkloadEndpoint names it: held closed, in a slot
    rc, out, _ = node.run("--plan")
    assert "- map/rcl_ifstate/cali-front0" in out and "+ map/rcl_ifstate/cali-late0" in out
    node.apply_converged()
    slots = ifslots(node)
    late_slot, _ = slots[ifindex(node, "cali-late0")]
    assert ifindex(node, "cali-front0") not in slots
    others = (slots[ifindex(node, "eth0")][0], slots[ifindex(node, "cali-back0")][0])
    assert late_slot not in (front_slot, *others)
    assert filter_classid(node, "cali-late0", "ingress") == late_slot
    node.felix()
    node.apply_converged()
    assert ifslots(node)[ifindex(node, "cali-front0")][0] == front_slot  # free again
    assert ping(node, FRONT, BACK.ip) and ping(node, BACK, FRONT.ip)


def test_a_smaller_state_map_moves_an_interface_out_of_a_slot_it_no_longer_has(node):
    """bpfMapSizeIfState shrinks below a slot in use: the map is replaced (the
    slots it still has carried), the interface in the lost slot gets a free
    one and its filters follow, and traffic keeps working."""

    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    slots = {index: slot for index, (slot, _) in ifslots(node).items()}
    assert sorted(slots.values()) == [1, 2, 3]
    last = max(slots, key=slots.__getitem__)  # the interface in slot 3
    first = next(i for i, s in slots.items() if s == 2)
    leaving = FRONT if ifindex(node, "cali-front0") == first else BACK
    staying = BACK if leaving is FRONT else FRONT
    assert ifindex(node, f"cali-{staying.name}") == last
    node.write(  # it leaves: excluded (a pod interface no endpoint names stays, held closed)
        "felix.yaml",
        FELIX.format(enabled="true", pattern="^eth")
        + f"  bpfMapSizeIfState: 2\n  interfaceExclude: cali-{leaving.name}\n",
    )
    rc, out, _ = node.run("--plan")
    assert rc == 2
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "-/+ map/rcl_ifstate max_entries: 1001 -> 3" in lines
    # the map is full: the staying interface takes the slot of the one leaving
    assert f"~ map/rcl_ifstate/cali-{staying.name} slot: 3 -> 2" in lines
    node.apply_converged()
    assert ifslots(node)[last][0] == 2
    assert filter_classid(node, f"cali-{staying.name}", "ingress") == 2
    assert filter_classid(node, f"cali-{staying.name}", "egress") == 2
    rc, out, _ = node.run("--status", "--json")
    before = json.loads(out)["counters"][f"cali-{staying.name}"]["rx_packets"]
    node.sandbox.exec(node.sandbox.pod_ns(staying), "ping", "-c", "1", "-W", "1", "192.168.50.1")
    rc, out, _ = node.run("--status", "--json")
    assert json.loads(out)["counters"][f"cali-{staying.name}"]["rx_packets"] > before


def test_an_interface_written_into_more_slots_is_cleaned_from_them(node):
    """Someone copied an interface's entry into slot 0 and into a free slot:
    both copies are drift, cleared by the apply, and the interface's own
    slot (the one its filters name) stays as it was and keeps counting."""
    from reconciler.datapath.maps import iface_types as il
    from reconciler.kernel import bpf as bpfsys

    node.felix()
    node.wep(FRONT)
    node.wep(BACK)  # the ping's peer: a pod no endpoint names passes nothing
    node.apply_converged()
    front = ifindex(node, "cali-front0")
    slot, _ = ifslots(node)[front]
    fd = bpfsys.obj_get(str(Path(node.sandbox.bpffs_root) / "maps" / "rcl_ifstate"))
    try:
        own = bpfsys.map_lookup(fd, il.U32.pack(slot))
        assert isinstance(own, list)
        for copy in (0, 9):
            bpfsys.map_update(fd, il.U32.pack(copy), own)
        rc, out, _ = node.run("--plan")
        lines = [" ".join(line.split()) for line in out.splitlines()]
        assert rc == 2
        assert f"- map/rcl_ifstate/cali-front0@0 slot=0 ifindex={front} flags=17" in lines
        assert f"- map/rcl_ifstate/cali-front0@9 slot=9 ifindex={front} flags=17" in lines
        assert "Plan: 0 to add, 0 to change, 2 to destroy." in out  # its own entry stays
        node.apply_converged()
        assert ifslots(node)[front][0] == slot
        for copy in (0, 9):
            assert bpfsys.map_lookup(fd, il.U32.pack(copy)) == [bytes(il.IFSTATE.size)] * len(own)
    finally:
        bpfsys.close(fd)
    assert filter_classid(node, "cali-front0", "ingress") == slot
    assert ping(node, FRONT, BACK.ip)


def test_a_filter_with_another_slot_is_drift_and_repaired(node):
    """Someone re-attached our program with the wrong classid: the program
    would read another interface's slot (and, finding another ifindex there,
    leave the traffic alone). The plan shows it; the apply puts it right."""
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)  # the ping's peer: a pod no endpoint names passes nothing
    node.apply_converged()
    from reconciler.datapath.programs import FILTER_PREFIX, TC_PRIO
    from reconciler.datapath.programs import TC_PARENTS as PARENTS
    from reconciler.kernel import bpf as bpfsys
    from reconciler.kernel.pyroute import route

    slot, _ = ifslots(node)[ifindex(node, "cali-front0")]
    [prog_dir] = (Path(node.sandbox.bpffs_root) / "progs").glob("tc-*")
    prog_ref = "tc@" + prog_dir.name.removeprefix("tc-")
    fd = bpfsys.obj_get(str(prog_dir / "rcl_tc_ingress"))
    try:
        with route(node.sandbox.node) as ipr:
            idx = ipr.link_lookup(ifname="cali-front0")[0]
            ipr.tc("replace-filter", "bpf", idx, ":1", fd=fd, name=FILTER_PREFIX + prog_ref,
                   parent=PARENTS["ingress"], classid=slot + 7, direct_action=True,
                   prio=TC_PRIO)  # fmt: skip
    finally:
        bpfsys.close(fd)
    assert filter_classid(node, "cali-front0", "ingress") == slot + 7
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "~ tc/cali-front0/ingress" in out
    node.apply_converged()
    assert filter_classid(node, "cali-front0", "ingress") == slot
    assert ping(node, FRONT, BACK.ip)


def test_interface_flags_written_on_one_cpu_are_drift_and_repaired(node):
    """Flags are the same on every CPU when we write them; an entry whose
    CPUs disagree was written by someone else: the plan shows it, the apply
    rewrites the flags on every CPU and keeps the counters."""
    from reconciler.datapath.maps import iface_types as il
    from reconciler.kernel import bpf as bpfsys

    node.felix()
    node.wep(FRONT)
    node.apply_converged()
    front = ifindex(node, "cali-front0")
    fd = bpfsys.obj_get(str(Path(node.sandbox.bpffs_root) / "maps" / "rcl_ifstate"))
    try:
        slot = il.U32.pack(ifslots(node)[front][0])
        per_cpu = bpfsys.map_lookup(fd, slot)
        assert isinstance(per_cpu, list) and len(per_cpu) >= 2
        counted = [il.IFSTATE.pack(17, front, 5, 500, 0, 0, 0, 0)] * len(per_cpu)
        counted[-1] = il.IFSTATE.pack(4, front, 5, 500, 0, 0, 0, 0)  # L3 on one CPU only
        bpfsys.map_update(fd, slot, counted)
        rc, out, _ = node.run("--plan")
        assert rc == 2 and "~ map/rcl_ifstate/cali-front0" in out and "differ: 4,17" in out
        node.apply_converged()
        per_cpu = bpfsys.map_lookup(fd, slot)
        assert isinstance(per_cpu, list)
        assert {il.IFSTATE_HEAD.unpack_from(c) for c in per_cpu} == {(17, front)}
        assert il.Counters.sum_per_cpu(per_cpu).rx_packets >= 5 * len(per_cpu)  # kept
    finally:
        bpfsys.close(fd)


def test_bpf_disabled_removes_everything(node):
    node.felix()
    node.wep(FRONT)
    node.apply_converged()
    node.felix(enabled=False)
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "bpfEnabled is false" in out
    node.apply_converged()
    root = Path(node.sandbox.bpffs_root)
    assert [p for p in root.rglob("*") if p.is_file()] == []
    for iface in ("eth0", "cali-front0"):
        assert tc_filters(node, iface, "ingress") == ""


def test_foreign_filters_are_left_alone(node):
    """Someone else's tc program on a managed interface survives attach and prune."""
    from bcc import BPF

    from reconciler.kernel.pyroute import route

    node.felix()
    other = BPF(
        text=b"#include <uapi/linux/pkt_cls.h>\n"
        b"int other_prog(struct __sk_buff *skb) { return TC_ACT_UNSPEC; }"
    )
    fn = other.load_func(b"other_prog", BPF.SCHED_CLS)
    with route(node.sandbox.node) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.tc("add", "clsact", idx)
        ipr.tc(
            "add-filter",
            "bpf",
            idx,
            ":1",
            fd=fn.fd,
            name="someone-else",
            parent="ffff:fff2",
            classid=1,
            direct_action=True,
            prio=5,
        )
    other.cleanup()
    rc, out, _ = node.run("--plan")
    assert "Note: not ours, left alone: tc/eth0/ingress prio 5 someone-else" in out
    node.apply_converged()
    both = tc_filters(node, "eth0", "ingress")
    assert "someone-else" in both and "rcl:tc@" in both
    node.felix(enabled=False)
    node.apply_converged()
    remaining = tc_filters(node, "eth0", "ingress")
    assert "someone-else" in remaining and "rcl:" not in remaining


def test_saved_plan_applies_and_stale_plans_are_refused(node, tmp_path, monkeypatch):
    node.felix()
    plan_file = tmp_path / "p.json"
    # planned with a relative --config: the plan names the directory, not the path
    monkeypatch.chdir(node.config.parent)
    rc, out, _ = node.run("--plan", "--out", str(plan_file), "--config", node.config.name)
    assert rc == 2
    # the line that says how to apply it names the same node
    target = node.sandbox.target_args(str(node.state))
    hint = out.strip().splitlines()[-1]
    assert hint.startswith(f"Saved the plan to {plan_file}. Apply it with: reconcile --apply "
                           f"--plan-file {plan_file} "), hint  # fmt: skip
    assert all(word in hint.split() for word in target), hint
    monkeypatch.chdir(tmp_path)
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 0, out + err
    # The same plan again: the kernel has moved on since it was made.
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 1 and "plan is stale: the kernel state changed" in err
    # refused before anything changed: no reconcile happened, the node is in sync
    rc, out, err = node.run("--status")
    assert rc == 0 and "failed" not in out, out + err
    # A fresh plan, then the source changes: refused too, and nothing is applied.
    node.wep(FRONT)
    rc, _, _ = node.run("--plan", "--out", str(plan_file))
    node.remove("wep-front0.yaml")
    rc, out, err = node.run("--apply", "--plan-file", str(plan_file))
    assert rc == 1 and "plan is stale: the source changed" in err
    assert not has_endpoint(node, "cali-front0")  # its endpoint's policy never applied


def _snapshot(node):
    root = Path(node.sandbox.bpffs_root)
    pins = sorted(str(p) for p in root.rglob("*")) if root.exists() else []
    filters = {
        i: tc_filters(node, i, d)
        for i in ("eth0", "cali-front0", "cali-back0")
        for d in ("ingress", "egress")
    }
    return pins, filters, ifstate(node)


def test_invalid_config_changes_nothing(node):
    node.felix()
    node.wep(FRONT)
    node.apply_converged()
    before = _snapshot(node)
    node.wep(BACK)
    node.write(
        "bad.yaml",
        """\
        apiVersion: projectcalico.org/v3
        kind: GlobalNetworkPolicy
        metadata:
          name: broken
        spec:
          selector: app == 'x
    """,
    )
    rc, out, err = node.run("--apply")
    assert rc == 1
    assert "bad.yaml:6: GlobalNetworkPolicy/broken: spec.selector:" in err
    assert "nothing was changed" in err
    assert _snapshot(node) == before


def test_concurrent_apply_is_blocked_and_names_the_holder(node):
    node.felix()
    held, release = threading.Event(), threading.Event()

    def hold():
        with apply_lock(node.sandbox.bpffs_root, node.sandbox.node):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        rc, out, err = node.run("--apply")
        assert rc == 1
        assert f"another apply is running: pid {os.getpid()}" in err
    finally:
        release.set()
        t.join()
    node.apply_converged()


def test_an_unsafe_lock_directory_refuses_the_apply_and_changes_nothing(
    node, tmp_path, monkeypatch
):
    """A lock directory others can write could be swapped under the lock:
    the apply refuses it by name, before it touches the kernel."""
    from reconciler.engine import lock

    node.felix()
    node.wep(FRONT)
    unsafe = tmp_path / "locks"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    monkeypatch.setattr(lock, "LOCK_DIR", unsafe)
    before = _snapshot(node)
    rc, out, err = node.run("--apply")
    assert rc == 1, out + err
    assert (
        f"error: {unsafe} is not a directory owned by uid {os.geteuid()} and writable by it "
        "alone; refusing to use it; nothing was changed"
    ) in err
    assert _snapshot(node) == before
    assert not list(unsafe.iterdir())  # no lock file was made in it
    unsafe.chmod(0o700)
    node.apply_converged()


def test_interrupted_apply_is_repaired_by_the_next(node):
    from reconciler.config.source import from_paths
    from reconciler.engine.caches import Caches
    from reconciler.engine.reconcile import Target, execute, make_plan

    node.felix()
    node.wep(FRONT)
    target = Target(
        "node-1", node.sandbox.bpffs_root, node.state, node.sandbox.node, cgroup=node.sandbox.cgroup
    )
    plan, _, _ = make_plan(from_paths([str(node.config)]), target, caches=Caches())
    # "Kill" the apply after the programs were built and half the filters attached.
    cut = [i for i, c in enumerate(plan.changes) if c.address.startswith("tc/")][1]
    from dataclasses import replace

    execute(replace(plan, changes=plan.changes[:cut]), target)
    rc, out, _ = node.run("--plan")
    assert rc == 2 and "prog/" not in out  # the build survived; only the rest remains
    node.apply_converged()
    assert "rcl:tc@" in tc_filters(node, "eth0", "egress")


def test_desired_state_cache_skips_compile_until_an_input_changes(node, monkeypatch, tmp_path):
    from reconciler.cli.main import main
    from reconciler.compile import dataplane

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = [a for a in node.args() if a != "--no-cache"]
    node.felix()
    node.wep(FRONT)
    assert main(["--apply", *args]) == 0
    calls = []
    real = dataplane.compile_desired  # the engine imports it when it compiles
    monkeypatch.setattr(dataplane, "compile_desired", lambda *a: calls.append(1) or real(*a))
    node.capsys.readouterr()
    assert main(["--plan", *args]) == 0  # same inputs: no validation, no compile
    assert calls == [] and "No changes." in node.capsys.readouterr().out
    node.wep(BACK)  # a config change is a new key
    assert main(["--plan", *args]) == 2
    assert calls == [1] and "+ map/rcl_pol_ep/cali-back0" in node.capsys.readouterr().out
    node.sandbox.remove_pod(FRONT)  # so is a kernel fact compile reads (the links)
    assert main(["--plan", *args]) == 2
    assert calls == [1, 1]


def test_a_hand_deleted_map_pin_is_rebuilt_and_traffic_is_counted_again(node):
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)  # the ping's peer: a pod no endpoint names passes nothing
    node.apply_converged()
    (Path(node.sandbox.bpffs_root) / "maps" / "rcl_ifstate").unlink()  # someone "cleaned up"
    rc, out, _ = node.run("--plan")
    assert rc == 2
    assert "+ map/rcl_ifstate " in out
    # the attached programs still hold the unpinned map: they must be rebuilt and re-attached
    assert "-/+ prog/tc@" in out and "rebuilt for map/rcl_ifstate" in out
    assert "~ tc/cali-front0/ingress" in out
    node.apply_converged()
    assert ifindex(node, "cali-front0") in ifstate(node)
    assert ping(node, FRONT, BACK.ip)
    rc, out, _ = node.run("--status", "--json")
    assert json.loads(out)["counters"]["cali-front0"]["rx_packets"] >= 1


def test_apply_fails_loudly_when_the_kernel_does_not_converge(node, monkeypatch):
    from reconciler.apply.executor import Executor

    node.felix()
    monkeypatch.setattr(Executor, "_entry", lambda self, change: "updated")  # a driver that lies
    rc, out, err = node.run("--apply")
    assert rc == 1
    assert "error: not converged after apply; still different:" in err
    assert "+ map/rcl_ifstate/eth0" in err


def test_a_no_op_apply_keeps_the_record_of_the_last_real_one(node):
    node.felix()
    node.apply_converged()  # applies, then re-applies with no changes
    rc, out, _ = node.run("--status", "--json")
    record = json.loads(out)["last_apply"]
    assert record["changes_applied"] > 0
