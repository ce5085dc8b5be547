"""Resizing the conntrack table while new connections keep arriving through a
service loses none of them. The programs built for the new table also reach
the old one until every interface has switched (bpf/lib/conntrack.h
rcl_ct_prev): a flow whose first packet and reply meet programs of different
tables is found in either, whichever switched first, and its entries end up
in the new table (reconciler/datapath/ct_handover.py), never in place of
entries more recent than themselves."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from reconciler.datapath import ct_handover
from tests.kernel.test_services import CLIENT, VIP, svc  # noqa: F401 - the fixture

# New connections, one after another, until the stop file appears; prints
# how many got their line back and how many failed (reset, refused, timeout).
LOOP = """
import os, socket, sys, time
ok = failed = 0
stop = sys.argv[1]
while not os.path.exists(stop):
    try:
        s = socket.create_connection((sys.argv[2], 80), timeout=3)
        s.settimeout(3)
        line = s.makefile().readline()
        s.close()
        if line:
            ok += 1
        else:
            failed += 1
    except OSError:
        failed += 1
print(ok, failed, flush=True)
"""

# Down, then up: the new table is smaller, then larger (bench/resize_bench.py
# runs twenty). The loop keeps tens of thousands of entries (six per
# connection: NAT's pair and a pair per policy point; closed flows linger for
# the FIN and RST timeouts), so full buckets evict entries, with or without a
# resize, and the client reuses its ports within seconds: a connection on the
# tuple of an evicted entry's flow must get through too.
SIZES = (100000, 150000)


def start_loop(sb, stop: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{sb.pod_ns(CLIENT)}", sys.executable, "-c", LOOP,
         str(stop), VIP],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_conntrack_resizes_under_load_lose_no_connection(svc, tmp_path):  # noqa: F811
    svc.start()
    svc.service()
    # the sizes as written: the evictions below would make DoubleIfFull grow the table
    felix = (svc.node.config / "felix.yaml").read_text()
    felix += "  bpfMapSizeConntrackScaling: Disabled\n"
    svc.node.write("felix.yaml", felix.replace("16384", "150000"))
    svc.node.apply_converged()
    sb = svc.node.sandbox
    stop = tmp_path / "stop"
    client = start_loop(sb, stop)
    try:
        time.sleep(1)
        for size in SIZES:
            svc.node.write("felix.yaml", felix.replace("16384", str(size)))
            rc, out, err = svc.node.run("--apply")
            assert rc == 0 and "-/+ map/rcl_ct" in out, out + err
            # the apply ended the handover: the new programs reach no old table
            assert not any(ct_handover.pending(d) for d in Path(sb.bpffs_root).glob("progs/tc-*"))
        stop.touch()
        out, _ = client.communicate(timeout=30)
    finally:
        client.kill()
        client.wait()
    ok, failed = map(int, out.split())
    assert ok > 100, out  # the loop really ran through every resize
    assert failed == 0, f"{failed} of {ok + failed} connections failed"
    rc, out, _ = svc.node.run("--plan")
    assert rc == 0 and "No changes." in out, out
