"""rtnl against the real kernel, checked link by link against pyroute2's view.

Everything lives in a private namespace (`rclrt-<uuid>`), deleted on failure too.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.datapath.programs import TC_PARENTS as PARENTS
from reconciler.datapath.programs import TC_PRIO
from reconciler.kernel import rtnetlink as rtnl
from reconciler.observe.kernel import TcFilter, observe, read_filters, read_links
from reconciler.plan.state import Link

REPO = Path(__file__).resolve().parents[2]
BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
BPF_PROG_LOAD, BPF_PROG_TYPE_SCHED_CLS = 5, 3
EXTRA_PAIRS = 40  # enough links that the link dump spans several datagrams

View = dict[str, list[tuple[Any, ...]]]  # links, addrs, qdiscs, filters as sorted tuples


def _sh(*cmd: str, stdin: str | None = None) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True, input=stdin)


def _load_noop_sched_cls() -> int:
    """`r0 = 0; exit`: the smallest program tc will accept as a direct-action filter."""
    nr = BPF_SYSCALL.get(platform.machine())
    if nr is None:
        pytest.skip(f"no bpf syscall number for {platform.machine()}")
    insns = ctypes.create_string_buffer(
        struct.pack("=BBhi", 0xB7, 0, 0, 0) + bytes([0x95]) + bytes(7)
    )
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "=IIQQ", attr, 0, BPF_PROG_TYPE_SCHED_CLS, 2,
        ctypes.addressof(insns), ctypes.addressof(license_),
    )  # fmt: skip
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_long(BPF_PROG_LOAD), attr, ctypes.c_long(128))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_LOAD: {os.strerror(err)}")
    return int(fd)


@pytest.fixture
def ns() -> Iterator[str]:
    """A namespace with veth pairs, IPv4 addresses, clsact and three kinds of filters."""
    name = f"rclrt-{uuid.uuid4().hex[:6]}"
    _sh("ip", "netns", "add", name)
    try:
        _sh("ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        _sh("ip", "-n", name, "addr", "add", "10.77.0.1/24", "dev", "v0")
        _sh("ip", "-n", name, "addr", "add", "10.77.1.9/32", "dev", "v0")
        # A point-to-point address: IFA_ADDRESS (the peer) differs from IFA_LOCAL.
        _sh("ip", "-n", name, "addr", "add", "10.78.0.1", "peer", "10.78.0.2", "dev", "v1")
        batch = "".join(f"link add x{i} type veth peer name y{i}\n" for i in range(EXTRA_PAIRS))
        _sh("ip", "-n", name, "-batch", "-", stdin=batch)
        for dev in ("v0", "v1"):
            _sh("tc", "-n", name, "qdisc", "add", "dev", dev, "clsact")
        tc = ["tc", "-n", name, "filter", "add", "dev"]
        u32 = "v0 ingress prio 100 u32 match u32 0 0 action mirred egress redirect dev v1"
        _sh(*tc, *u32.split())
        # Classic BPF ("ret 0"): kind bpf, but no TCA_BPF_NAME.
        _sh(*tc, "v1", "egress", "prio", "200", "bpf", "bytecode", "1,6 0 0 0,")
        _attach_named_bpf(name, "v0", "ingress", "rcl:probe@0123abcd", classid=7)
        _attach_named_bpf(name, "v0", "egress", "someone-else", classid=1)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert not os.path.exists(f"/run/netns/{name}")


def _attach_named_bpf(netns: str, dev: str, direction: str, name: str, classid: int) -> None:
    from pyroute2 import NetNS

    fd = _load_noop_sched_cls()
    ipr = NetNS(netns)
    try:
        (idx,) = ipr.link_lookup(ifname=dev)
        ipr.tc("add-filter", "bpf", idx, ":1", fd=fd, name=name, parent=PARENTS[direction],
               classid=classid, direct_action=True, prio=TC_PRIO)  # fmt: skip
    finally:
        ipr.close()
        os.close(fd)


def _pyroute2_view(netns: str) -> View:
    from pyroute2 import NetNS

    ipr = NetNS(netns)
    try:
        links = sorted((m["index"], m.get_attr("IFLA_IFNAME")) for m in ipr.get_links())
        addrs = sorted(
            (m["index"], m.get_attr("IFA_ADDRESS")) for m in ipr.get_addr(family=socket.AF_INET)
        )
        qdiscs = sorted((m["index"], m.get_attr("TCA_KIND")) for m in ipr.get_qdiscs())
        filters = []
        for index, _ in links:
            for parent in PARENTS.values():
                for m in ipr.get_filters(index=index, parent=parent):
                    opts = m.get_attr("TCA_OPTIONS")
                    if opts is None:
                        continue
                    kind = m.get_attr("TCA_KIND")
                    bpf_name = opts.get_attr("TCA_BPF_NAME") if kind == "bpf" else None
                    classid = (opts.get_attr("TCA_BPF_CLASSID") or 0) if kind == "bpf" else 0
                    filters.append((index, parent, kind, m["info"] >> 16, bpf_name, classid))
    finally:
        ipr.close()
    return {"links": links, "addrs": addrs, "qdiscs": qdiscs, "filters": sorted(filters)}


def _rtnl_view(netns: str) -> View:
    with rtnl.Rtnl(netns) as r:
        links = sorted((m.ifindex, m.ifname) for m in r.links())
        filters = [
            (f.ifindex, parent, f.kind, f.prio, f.name, f.classid)
            for index, _ in links
            for parent in PARENTS.values()
            for f in r.filters(index, parent)
        ]
        return {
            "links": links,
            "addrs": sorted((a.ifindex, a.address) for a in r.addresses()),
            "qdiscs": sorted((q.ifindex, q.kind) for q in r.qdiscs()),
            "filters": sorted(filters),
        }


def _thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_rtnl_matches_pyroute2(ns):
    home = _thread_netns()
    ours, theirs = _rtnl_view(ns), _pyroute2_view(ns)
    assert _thread_netns() == home  # opening the socket switched this thread back
    assert ours == theirs
    links: dict[int, str] = dict(ours["links"])
    assert len(links) == 2 + 2 * EXTRA_PAIRS + 1  # lo included
    v0 = next(i for i, n in links.items() if n == "v0")
    v1 = next(i for i, n in links.items() if n == "v1")
    assert (v0, "10.77.0.1") in ours["addrs"] and (v0, "10.77.1.9") in ours["addrs"]
    assert (v1, "10.78.0.2") in ours["addrs"]  # IFA_ADDRESS is the peer, as observe reports
    assert {(v0, "clsact"), (v1, "clsact")} <= set(ours["qdiscs"])
    ingress, egress = PARENTS["ingress"], PARENTS["egress"]
    # u32 reports two entries with options, its hash table and its key node; so does pyroute2.
    assert ours["filters"] == sorted(
        [
            (v0, ingress, "u32", 100, None, 0),
            (v0, ingress, "u32", 100, None, 0),
            (v0, ingress, "bpf", TC_PRIO, "rcl:probe@0123abcd", 7),
            (v0, egress, "bpf", TC_PRIO, "someone-else", 1),
            (v1, egress, "bpf", 200, None, 0),
        ]
    )


def test_link_dump_spans_several_datagrams(ns):
    with rtnl.Rtnl(ns) as r:
        sizes: list[int] = []
        recv = r._chunks

        def counted() -> Iterator[bytes]:
            for chunk in recv():
                sizes.append(len(chunk))
                yield chunk

        r._chunks = counted  # type: ignore[method-assign]
        assert len(r.links()) == 2 + 2 * EXTRA_PAIRS + 1
    assert len(sizes) >= 3, sizes  # so the multi-part path, not one datagram, was exercised


def test_read_links_and_filters(ns):
    with rtnl.Rtnl(ns) as r:
        links = read_links(r)
        by_name = {link.name: link for link in links}
        assert by_name["v0"].addresses == ("10.77.0.1", "10.77.1.9")
        assert by_name["v1"].addresses == ("10.78.0.2",)
        assert by_name["lo"].addresses == ()  # lo is down in a fresh namespace: no 127.0.0.1
        filters = read_filters(r, links)
        # A link that vanished after the link dump yields nothing rather than an error.
        assert read_filters(r, [Link("gone", 999999)]) == []
    assert sorted(filters, key=repr) == sorted(
        [
            TcFilter("v0", "ingress", None, 100),  # u32 hash table
            TcFilter("v0", "ingress", None, 100),  # u32 key node
            TcFilter("v0", "ingress", "rcl:probe@0123abcd", TC_PRIO, 7),
            TcFilter("v0", "egress", "someone-else", TC_PRIO, 1),
            TcFilter("v1", "egress", None, 200),
        ],
        key=repr,
    )


def test_observe_reads_tc_without_importing_pyroute2(ns, tmp_path):
    script = (
        "import json, sys\n"
        "from reconciler.observe.kernel import observe\n"
        f"observed, links = observe({str(tmp_path)!r}, {ns!r})\n"
        "print(json.dumps({'objects': sorted(observed.objects), 'foreign': observed.foreign,"
        " 'links': len(links), 'pyroute2': 'pyroute2' in sys.modules,"
        " 'asyncio': 'asyncio' in sys.modules}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    assert result["pyroute2"] is False and result["asyncio"] is False
    assert result["objects"] == ["tc/v0/ingress"]
    assert result["foreign"] == [
        "tc/v0/egress prio 31232 someone-else",
        "tc/v0/ingress prio 100 (unnamed)",
        "tc/v0/ingress prio 100 (unnamed)",
        "tc/v1/egress prio 200 (unnamed)",
    ]
    assert result["links"] == 2 + 2 * EXTRA_PAIRS + 1
    # In-process too: the same answer as the subprocess.
    observed, _ = observe(str(tmp_path), ns)
    assert sorted(observed.objects) == ["tc/v0/ingress"]
    assert observed.objects["tc/v0/ingress"].attrs == {"prog": "probe@0123abcd", "slot": 7}


def test_missing_namespace_is_a_clear_error_and_is_not_created():
    name = f"rclrt-missing-{uuid.uuid4().hex[:6]}"
    home = _thread_netns()
    with pytest.raises(rtnl.NetnsError, match=f"network namespace '{name}' does not exist"):
        rtnl.Rtnl(name)
    assert not os.path.exists(f"/run/netns/{name}")  # pyroute2's NetNS would have made it
    assert _thread_netns() == home


def test_pyroute2_handles_never_create_a_missing_namespace():
    """What changes links and follows their events opens the namespace
    through pyroute2, whose NetNS creates a missing one by default."""
    from reconciler.kernel.pyroute import open_route, route

    name = f"rclrt-missing-{uuid.uuid4().hex[:6]}"
    try:
        with pytest.raises(rtnl.NetnsError, match=f"network namespace '{name}' does not exist"):
            open_route(name)
        with pytest.raises(rtnl.NetnsError), route(name):
            pass
        assert not os.path.exists(f"/run/netns/{name}")
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_a_path_that_is_not_a_namespace_is_refused(tmp_path):
    home = _thread_netns()
    bogus = tmp_path / "not-a-netns"
    bogus.write_text("")
    with pytest.raises(OSError, match="cannot enter network namespace") as info:
        rtnl.Rtnl(str(bogus))
    assert info.value.errno == errno.EINVAL
    assert _thread_netns() == home


def test_current_namespace_without_netns():
    with rtnl.Rtnl() as r:
        names = {link.ifname for link in r.links()}
    assert "lo" in names


def test_cli_names_a_missing_namespace_and_changes_nothing(tmp_path, capsys):
    from reconciler.cli import main as cli

    name = f"rclrt-missing-{uuid.uuid4().hex[:6]}"
    root = tmp_path / "bpffs-unused"
    config = REPO / "examples" / "cluster-config"
    argv = ["--plan", "--config", str(config), "--node", "node-1", "--netns", name]
    argv += ["--bpffs-root", f"/sys/fs/bpf/{name}", "--state-dir", str(root), "--no-cache"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: --netns: network namespace '{name}' does not exist" in err
    assert "Traceback" not in err
    assert not os.path.exists(f"/run/netns/{name}")
    assert not os.path.exists(f"/sys/fs/bpf/{name}")


def test_a_namespaces_cookie_is_what_its_own_sockets_see(ns):
    """netns_cookie(name) reads the cookie from inside the namespace, the
    value BPF's bpf_get_netns_cookie gives for sockets there; a missing
    namespace is an error, never created."""
    home = _thread_netns()
    here, there = rtnl.netns_cookie(), rtnl.netns_cookie(ns)
    assert here is not None and there is not None and here != there
    inside = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c",
         "from reconciler.kernel.rtnetlink import netns_cookie; print(netns_cookie())"],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert int(inside.stdout) == there
    name = f"rclrt-missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(rtnl.NetnsError, match=f"network namespace '{name}' does not exist"):
        rtnl.netns_cookie(name)
    assert not os.path.exists(f"/run/netns/{name}")
    assert _thread_netns() == home
