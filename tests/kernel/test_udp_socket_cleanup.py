"""destroy_udp_sockets against the kernel: in a namespace of its own, the
UDP sockets connected to the departed backends go, in one `ss -K` for
many backends, and the others stay."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from reconciler.apply.conntrack_gc import SS_BATCH, destroy_udp_sockets

# Connects one UDP socket per port given, says "ready", then on a line of
# input says which sockets are still connected (getpeername succeeds).
CLIENT = textwrap.dedent("""\
    import socket, sys
    socks = {}
    for port in map(int, sys.argv[1:]):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        socks[port] = s
    print("ready", flush=True)
    sys.stdin.readline()
    alive = []
    for port, s in socks.items():
        try:
            s.getpeername()
            alive.append(port)
        except OSError:
            pass
    print(" ".join(map(str, alive)), flush=True)
""")


def test_sockets_to_departed_backends_go_in_batches_and_the_others_stay():
    ns = f"rclss{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        ports = list(range(20000, 20000 + SS_BATCH + 10))  # more than one batch
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", CLIENT, *map(str, ports)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "ready"
            departed = ports[: SS_BATCH + 5]
            gone = [("127.0.0.1", p) for p in departed]
            destroyed = destroy_udp_sockets([f"/run/netns/{ns}"], gone)
            assert destroyed == len(departed)
            proc.stdin.write("\n")
            proc.stdin.flush()
            alive = [int(p) for p in proc.stdout.readline().split()]
            assert alive == ports[SS_BATCH + 5 :]
        finally:
            proc.kill()
            proc.wait()
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
