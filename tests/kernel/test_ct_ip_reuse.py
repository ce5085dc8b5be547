"""A workload address handed to another pod does not hand it the old pod's
flows. front0 keeps a UDP flow to back0's address alive (allowed: the
namespace's profile admits all); back0 goes, and a new pod on a new
interface gets its address, with a policy that admits nothing. After the
apply, the old flow's datagrams no longer arrive: the apply removed the
conntrack entries naming the address (reconciler.apply.ct_departed), so
the new pod's policy judges them. The node's own datagrams still arrive
(the node's traffic to its workloads is never policed): the path works."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from reconciler.kernel.rtnetlink import entered
from sandbox.netns import Pod
from tests.kernel.conftest import PODS

FRONT, BACK = PODS
NEW = Pod("new0", BACK.ip)
PORT = 9999
SPORT = 45000

NEW_ADMITS_NOTHING = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: new0-in, namespace: shop}
spec:
  selector: app == "new0"
  types: [Ingress]
"""


def udp_socket(netns: str, port: int) -> socket.socket:
    with entered(netns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.5)
    return s


def received(s: socket.socket) -> list[tuple[bytes, str]]:
    got = []
    try:
        while True:
            data, (src, _port) = s.recvfrom(100)
            got.append((data, src))
    except TimeoutError:
        return got


@pytest.fixture
def sender(node) -> Iterator[socket.socket]:
    s = udp_socket(node.sandbox.pod_ns(FRONT), SPORT)
    try:
        yield s
    finally:
        s.close()


def test_a_new_pod_on_a_departed_pods_address_does_not_inherit_its_flows(node, sender):
    node.felix()
    node.wep(FRONT)
    node.wep(BACK)
    node.apply_converged()
    old = udp_socket(node.sandbox.pod_ns(BACK), PORT)
    try:
        sender.sendto(b"to back0", (BACK.ip, PORT))
        assert received(old) == [(b"to back0", FRONT.ip)]
    finally:
        old.close()  # (a socket keeps its namespace, and so the pod's interface)
    # the pod goes; a new pod on a new interface gets its address, and a
    # policy that admits nothing; the sender keeps the old flow warm
    node.sandbox.remove_pod(BACK)
    node.sandbox.add_pod(NEW)
    node.remove(f"wep-{BACK.name}.yaml")
    node.wep(NEW)
    node.write("policy-new0.yaml", NEW_ADMITS_NOTHING)
    new = udp_socket(node.sandbox.pod_ns(NEW), PORT)
    try:
        sender.sendto(b"warm", (BACK.ip, PORT))
        rc, out, err = node.run("--apply", "--json")
        assert rc == 0, out + err
        received(new)  # whatever arrived before the apply
        for _ in range(3):
            sender.sendto(b"old flow", (NEW.ip, PORT))
        assert received(new) == []
        results = [r["result"] for r in json.loads(out)["results"] if r["address"] == "conntrack"]
        assert len(results) == 1, results
        removed, _, what = results[0].removeprefix("removed ").partition(" ")
        assert int(removed) >= 2  # the flow's entry and its replies'
        assert what == f"entries of departed workload addresses ({BACK.ip})"
        for mode in ("--plan", "--apply"):  # applied twice: nothing left to do
            rc, out, err = node.run(mode)
            assert rc == 0 and "No changes." in out, out + err
        # the path works: the node's own datagrams are never policed
        host = udp_socket(node.sandbox.node, 0)
        try:
            host.sendto(b"from the node", (NEW.ip, PORT))
        finally:
            host.close()
        assert [data for data, _ in received(new)] == [b"from the node"]
    finally:
        new.close()
