"""A watcher following a remote whose Git server hangs, then refuses: a new
pod's veth gets its filters on its link event while a pass waits for the
hung fetch (the fetch runs off the pass), and a fetch that fails is a failed
pass, held at the commits last fetched, which readiness and the metrics
report."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import git

from reconciler.config.source import mirror_path
from sandbox.netns import Pod
from tests.kernel.conftest import FELIX, KNS_SHOP, PODS, WEP
from tests.kernel.gitops_support import watch
from tests.kernel.test_gitops_push import attached, free_port
from tests.unit.test_repo_config_git import commit

FRONT = PODS[0]
LATE = Pod("late2", "10.65.0.32")


class HungServer:
    """A Git server that accepts connections and never answers, until
    `refuse()` closes them (and every later one) at once."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.refusing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.refusing:
                conn.close()
            else:
                self.held.append(conn)

    def refuse(self) -> None:
        self.refusing = True
        for conn in self.held:
            conn.close()

    def close(self) -> None:
        self.refuse()
        self.sock.close()


def _readiness(port: int) -> tuple[int, dict]:
    import json

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readiness", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def test_a_hung_git_server_never_delays_a_new_pods_filters_and_a_failed_fetch_fails_the_pass(
    node, tmp_path
):
    work = git.Repo.init(tmp_path / "work", initial_branch="main")
    head = commit(work, {
        "felix.yaml": FELIX.format(enabled="true", pattern="^eth"), "profile.yaml": KNS_SHOP,
        "wep-front0.yaml": WEP.format(name=FRONT.name, ip=FRONT.ip),
        "wep-late2.yaml": WEP.format(name=LATE.name, ip=LATE.ip),
    })  # fmt: skip
    server = HungServer()
    url = f"git://127.0.0.1:{server.port}/config.git"
    cache = tmp_path / "cache"
    # the mirror an earlier fetch made, before the server hung
    mirror = mirror_path(url, cache / "calico-reconciler")
    mirror.parent.mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--mirror", str(work.git_dir), str(mirror)], check=True)
    subprocess.run(["git", "-C", str(mirror), "remote", "set-url", "origin", url], check=True)
    wake, metrics = free_port(), free_port()
    args = [a for a in node.args("--interval", "300") if a not in ("--config", str(node.config))]
    args += ["--repo", url, "--ref", "main", "--poll-interval", "0", "--wake-addr",
             f"127.0.0.1:{wake}", "--metrics-addr", f"127.0.0.1:{metrics}"]  # fmt: skip
    try:
        with watch(args, {"XDG_CACHE_HOME": str(cache)}) as w:
            # the start pass waits a moment for the hung fetch, then applies what was fetched
            first = w.wait_record(lambda r: r["trigger"] == "start", timeout=120)
            assert first["result"] == "applied" and first["source"] == f"git:{head}", first
            assert "fetch still running" in w.log
            w.wait_quiet()
            mark = w.mark()
            # a push wakes a pass, which waits for the fetch still in flight; a
            # pod comes meanwhile: its link event attaches it at once
            request = urllib.request.Request(f"http://127.0.0.1:{wake}/wake", b"", method="POST")
            urllib.request.urlopen(request, timeout=5).close()
            time.sleep(0.3)
            began = time.monotonic()
            node.sandbox.add_pod(LATE)
            while not attached(node, LATE.host_iface) and time.monotonic() - began < 20:
                time.sleep(0.02)
            took = time.monotonic() - began
            assert attached(node, LATE.host_iface)
            assert took < 2.0, f"filters after {took:.2f}s"  # the pass waits 3 s; git 60 s
            woken = w.wait_after(mark, lambda r: r["trigger"].startswith("push"), timeout=20)
            assert woken["result"] == "applied" and woken["attached"], woken
            # the server now refuses: the fetch fails, and the pass says so,
            # held at the commit last fetched (drift against it still repaired)
            mark = w.mark()
            server.refuse()
            failed = w.wait_after(mark, lambda r: r["result"] == "failed", timeout=80)
            assert failed["held"] == f"git:{head}", failed
            assert failed["error"].startswith(f"cannot fetch {url}: "), failed
            status, body = _readiness(metrics)
            assert status == 503 and body["reason"].startswith("cannot fetch"), body
            scraped = _metrics(metrics)
            assert "calico_reconciler_fetch_failures_total 1.0" in scraped, scraped
            assert 'calico_reconciler_reconciles_total{result="failed"} 1.0' in scraped
            assert attached(node, FRONT.host_iface) and attached(node, LATE.host_iface)
    finally:
        server.close()
    rc, out, _ = node.run("--plan", "--repo", str(mirror), "--ref", "main")
    assert rc == 0 and "No changes." in out, out
