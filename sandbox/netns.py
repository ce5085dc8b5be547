"""A sandbox node in network namespaces, for `make demo`, tests and benchmarks.

Layout (every name carries a unique prefix, so parallel runs never collide):

    <p>-ext  (an "outside" host)  veth ext0 192.168.50.2 <-> eth0 192.168.50.1  <p>-node
    <p>-<pod> (one per pod)       veth eth0 <pod ip>     <-> cali-<pod>          <p>-node

Pods route everything via 169.254.1.1, answered by proxy ARP on the node side,
as Calico does. Nothing here touches the root namespace: links are created
inside the namespaces, and deleting the namespaces removes them all.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from reconciler.kernel.cgroup import cgroup2_mount


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _sysctl(netns: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "sh", "-c", f"echo {value} > {path}"],
        check=True,
        capture_output=True,
    )


@dataclass(frozen=True, slots=True)
class Pod:
    name: str  # short, e.g. "front0": host side is cali-<name>
    ip: str

    @property
    def host_iface(self) -> str:
        return f"cali-{self.name}"


@dataclass
class Sandbox:
    prefix: str = field(default_factory=lambda: f"rcl{uuid.uuid4().hex[:6]}")
    node_ip: str = "192.168.50.1"
    ext_ip: str = "192.168.50.2"
    pods: list[Pod] = field(default_factory=list)
    bpffs_root: str = ""
    cgroup: str = ""  # a private cgroup v2 for connect-time load balancing

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"

    @property
    def ext(self) -> str:
        return f"{self.prefix}-ext"

    def pod_ns(self, pod: Pod | str) -> str:
        return f"{self.prefix}-{pod.name if isinstance(pod, Pod) else pod}"

    @classmethod
    def by_prefix(cls, prefix: str) -> Sandbox:
        """The sandbox `up` makes under this prefix, with the pin root and
        cgroup it picks when given none: what `down` must find to remove a
        sandbox whose process is gone (killed, or kept on purpose)."""
        return cls(prefix=prefix)._with_default_paths()

    def _with_default_paths(self) -> Sandbox:
        if not self.bpffs_root:
            self.bpffs_root = f"/sys/fs/bpf/{self.prefix}"
        mount = cgroup2_mount()
        if mount and not self.cgroup:
            self.cgroup = f"{mount}/{self.prefix}"
        return self

    def up(self, pods: Sequence[Pod] = (), data_iface: str = "eth0") -> Sandbox:
        self._with_default_paths()
        if self.cgroup:
            os.makedirs(self.cgroup, exist_ok=True)
        for ns in (self.node, self.ext):
            _ip("netns", "add", ns)
        _sysctl(self.node, "net.ipv4.ip_forward", "1")
        _ip("link", "add", data_iface, "type", "veth", "peer", "name", "ext0", netns=self.node)
        _ip("link", "set", "ext0", "netns", self.ext, netns=self.node)
        _ip("addr", "add", f"{self.node_ip}/24", "dev", data_iface, netns=self.node)
        _ip("addr", "add", f"{self.ext_ip}/24", "dev", "ext0", netns=self.ext)
        for ns, dev in ((self.node, data_iface), (self.ext, "ext0")):
            _ip("link", "set", dev, "up", netns=ns)
            _ip("link", "set", "lo", "up", netns=ns)
        # The node's default route points outside, so proxy ARP answers for pods.
        _ip("route", "add", "default", "via", self.ext_ip, netns=self.node)
        _ip("route", "add", "10.0.0.0/8", "via", self.node_ip, netns=self.ext)
        for pod in pods:
            self.add_pod(pod)
        return self

    def target_args(self, state_dir: str, node: str = "node-1") -> list[str]:
        """The reconcile options that point it at this sandbox node."""
        return [
            "--node", node, "--netns", self.node, "--cgroup", self.cgroup,
            "--bpffs-root", self.bpffs_root, "--state-dir", state_dir,
        ]  # fmt: skip

    def add_pod(self, pod: Pod) -> None:
        ns = self.pod_ns(pod)
        _ip("netns", "add", ns)
        # The node already has an eth0: create the pod end under a temporary name.
        tmp = f"p-{pod.name}"[:15]
        _ip("link", "add", pod.host_iface, "type", "veth", "peer", "name", tmp, netns=self.node)
        _ip("link", "set", tmp, "netns", ns, netns=self.node)
        _ip("link", "set", tmp, "name", "eth0", netns=ns)
        _ip("link", "set", "lo", "up", netns=ns)
        _ip("addr", "add", f"{pod.ip}/32", "dev", "eth0", netns=ns)
        _ip("link", "set", "eth0", "up", netns=ns)
        _ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link", netns=ns)
        _ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0", netns=ns)
        _ip("link", "set", pod.host_iface, "up", netns=self.node)
        _sysctl(self.node, f"net.ipv4.conf.{pod.host_iface}.proxy_arp", "1")
        _sysctl(self.node, f"net.ipv4.neigh.{pod.host_iface}.proxy_delay", "0")
        _ip(
            "route",
            "add",
            f"{ipaddress.ip_address(pod.ip)}/32",
            "dev",
            pod.host_iface,
            netns=self.node,
        )
        self.pods.append(pod)

    def remove_pod(self, pod: Pod) -> None:
        _ip("netns", "del", self.pod_ns(pod))  # deleting the peer deletes the host side too
        self.pods.remove(pod)
        # Namespace teardown is asynchronous: wait until the host side is gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(
                ["ip", "-n", self.node, "link", "show", "dev", pod.host_iface], capture_output=True
            )
            if probe.returncode != 0:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{pod.host_iface} still exists 10s after its pod was deleted")

    def exec(
        self, netns: str, *cmd: str, timeout: float = 10, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in a namespace, keeping mounts (bpffs, cgroups) visible."""
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{netns}", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def down(self) -> None:
        """Remove everything; safe to call twice and after a partial `up`."""
        self._remove_locks()  # named by the node's namespace: before it goes
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for line in listed.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.prefix + "-"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if self.bpffs_root and os.path.isdir(self.bpffs_root):
            shutil.rmtree(self.bpffs_root, ignore_errors=True)
        if self.cgroup and os.path.isdir(self.cgroup):
            _empty_cgroup(self.cgroup)
        self.pods.clear()

    def _remove_locks(self) -> None:
        """The node's apply and watch lock files (under /run): nothing of the
        sandbox holds them any more, and a run of the tests makes hundreds."""
        from reconciler.engine.lock import lock_path

        if not self.bpffs_root or not os.path.exists(f"/run/netns/{self.node}"):
            return
        for kind in ("apply", "watch"):
            with contextlib.suppress(OSError):
                lock_path(self.bpffs_root, self.node, kind=kind).unlink(missing_ok=True)

    def spawn_in_cgroup(self, netns: str, *cmd: str) -> subprocess.Popen[str]:
        """Start a command in a namespace and inside our cgroup (connect-time LB applies)."""
        script = f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"'
        return subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{netns}", "sh", "-c", script, "sh", *cmd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def exec_in_cgroup(
        self, netns: str, *cmd: str, timeout: float = 10
    ) -> subprocess.CompletedProcess[str]:
        proc = self.spawn_in_cgroup(netns, *cmd)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _empty_cgroup(path: str) -> None:
    """Move leftover processes to the parent, then remove the cgroup."""
    parent = os.path.dirname(path)
    try:
        with open(f"{path}/cgroup.procs", encoding="utf-8") as fh:
            pids = fh.read().split()
        for pid in pids:
            with open(f"{parent}/cgroup.procs", "w", encoding="utf-8") as out:
                out.write(pid)
        os.rmdir(path)
    except OSError:
        pass
