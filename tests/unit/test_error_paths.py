"""Errors a user can hit from the command line, each through `reconcile`
itself: the whole `error: ...` line, exit code 1, and nothing created under
the bpffs root given (none of these paths may reach the kernel's objects)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.config import cache_dir
from reconciler.observe import snapshot as snapshots
from reconciler.plan.plan import Plan
from reconciler.plan.state import Link, ObservedState

FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {bpfEnabled: true}
"""
WEB = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  node: n1
  interfaceName: cali-web
  ipNetworks: [10.0.0.1/32, 10.1.0.1/32]
"""
POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: p, namespace: shop}}
spec:
  selector: all()
  {direction}:
  - action: Allow
    {rule}
"""


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A node n1 with one workload (two addresses) and bpfEnabled."""
    root = tmp_path / "cfg"
    root.mkdir()
    (root / "felix.yaml").write_text(FELIX)
    (root / "web.yaml").write_text(WEB)
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def node_args(tmp_path: Path, state: bool = True) -> list[str]:
    """A node whose bpffs root and state directory are the test's own."""
    bpffs = ["--node", "n1", "--bpffs-root", str(tmp_path / "bpffs")]
    return bpffs + (["--state-dir", str(tmp_path / "state")] if state else [])


def untouched(tmp_path: Path) -> bool:
    return not (tmp_path / "bpffs").exists()


# -- --explain ---------------------------------------------------------------


@pytest.mark.parametrize(
    "src,dst,message",
    [
        ("1.2.3.4", "web", "--to 'web': expected DST:PORT/PROTO, e.g. web-0:8080/tcp"),
        ("1.2.3.4", "web:80", "--to 'web:80': expected DST:PORT/PROTO, e.g. web-0:8080/tcp"),
        ("1.2.3.4", "web:80/sctpx", "--to 'web:80/sctpx': unknown protocol 'sctpx'"),
        ("1.2.3.4", "web:80/300", "--to 'web:80/300': unknown protocol '300'"),
        (
            "1.2.3.4",
            "web:http/tcp",
            "--to 'web:http/tcp': port 'http' is not a number from 0 to 65535",
        ),
        (
            "1.2.3.4",
            "web:70000/udp",
            "--to 'web:70000/udp': port '70000' is not a number from 0 to 65535",
        ),
        ("1.2.3.4", "web:256/icmp", "--to 'web:256/icmp': ICMP type '256' is not a number "
                                    "from 0 to 255"),  # fmt: skip
        (
            "1.2.3.4",
            "5.6.7.8:80/tcp",
            "neither 1.2.3.4 nor 5.6.7.8 is a WorkloadEndpoint or HostEndpoint on node n1: "
            "neither address is in any HostEndpoint's expectedIPs, and without --kernel explain "
            "knows this node's addresses from those alone; if one of them is an address of this "
            "node, run --explain --kernel on the node (it reads the node's addresses and judges "
            "the flow by the host endpoint of the interface that holds it)",
        ),
        ("nobody", "web:80/tcp", "'nobody': no WorkloadEndpoint or pod of that name and not "
                                 "an IPv4 address"),  # fmt: skip
    ],
)
def test_explain_refuses_a_flow_it_cannot_name(capsys, tmp_path, cfg, src, dst, message):
    code, err = run(
        capsys, "--explain", "--from", src, "--to", dst, "--config", str(cfg), "--no-cache",
        *node_args(tmp_path, state=False),
    )  # fmt: skip
    assert (code, err) == (1, f"error: {message}\n")
    assert untouched(tmp_path)


def test_explain_kernel_without_a_loaded_program_set(capsys, tmp_path, cfg):
    bpffs = tmp_path / "bpffs"
    code, err = run(
        capsys, "--explain", "--from", "1.2.3.4", "--to", "web:80/tcp", "--kernel",
        "--config", str(cfg), "--no-cache", *node_args(tmp_path, state=False),
    )  # fmt: skip
    assert (code, err) == (1, f"error: no loaded program set under {bpffs}: apply first\n")
    assert untouched(tmp_path)


def test_explain_names_a_rule_it_cannot_enforce(capsys, tmp_path, cfg):
    rule = "http: {methods: [GET]}"
    (cfg / "p.yaml").write_text(POLICY.format(direction="ingress", rule=rule))
    code, err = run(
        capsys, "--explain", "--from", "1.2.3.4", "--to", "web:80/tcp", "--config", str(cfg),
        "--no-cache", *node_args(tmp_path, state=False),
    )  # fmt: skip
    # refused by validation, where the field is: no node could enforce it
    message = "NetworkPolicy/shop/p: spec.ingress[0].http: 'http' match cannot be enforced"
    assert (code, err) == (1, f"{cfg / 'p.yaml'}:8: {message} by this dataplane\n")


# -- rules a plan cannot enforce (against a snapshot: no kernel at all) ------


def write_snapshot(path: Path, node: str = "n1") -> Path:
    snap = snapshots.Snapshot(
        node, "/sys/fs/bpf/rcl-none", "t", ObservedState({}, (), {}),
        (Link("cali-web", 5, ()),), {"cgroup_id": None, "cgroup_path": "", "hz": 250},
    )  # fmt: skip
    path.write_text(json.dumps(snapshots.dump(snap)))
    return path


PARTLY = "matches some of shop/web's addresses and not others; this dataplane cannot enforce that"


@pytest.mark.parametrize(
    "direction,rule,message",
    [
        ("ingress", "destination: {nets: [10.0.0.0/24]}", f"destination {PARTLY}"),
        ("ingress", "destination: {notNets: [10.1.0.0/16]}", f"destination {PARTLY}"),
        ("egress", "source: {nets: [10.1.0.1/32]}", f"source {PARTLY}"),
    ],
)
def test_a_rule_the_dataplane_cannot_enforce_fails_the_plan(
    capsys, tmp_path, cfg, direction, rule, message
):
    (cfg / "p.yaml").write_text(POLICY.format(direction=direction, rule=rule))
    snap = write_snapshot(tmp_path / "node.json")
    code, err = run(
        capsys, "--plan", "--observed", str(snap), "--config", str(cfg), "--no-cache",
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    ref = f"policy/shop/p {direction} rule 1"
    assert (code, err) == (1, f"error: {ref}: {message}; nothing was changed\n")


@pytest.mark.parametrize("mode", ["--validate", "--plan"])
def test_not_icmp_no_node_can_enforce_is_refused_by_validation_too(capsys, tmp_path, cfg, mode):
    """Every node's plan refuses notICMP in a TCP rule, so --validate (the
    pre-receive hook) refuses it too, with its file and line."""
    (cfg / "p.yaml").write_text(
        POLICY.format(direction="ingress", rule="protocol: TCP\n    notICMP: {type: 8}")
    )
    argv = [mode, str(cfg)] if mode == "--validate" else [
        mode, "--observed", str(write_snapshot(tmp_path / "node.json")), "--config", str(cfg),
        "--state-dir", str(tmp_path / "state")]  # fmt: skip
    code = main([*argv, "--no-cache"])
    out, err = capsys.readouterr()
    assert code == 1
    assert (
        f"{cfg}/p.yaml:9: NetworkPolicy/shop/p: spec.ingress[0].notICMP: Calico accepts "
        "notICMP with protocol TCP, but an ICMP type is only defined for ICMP packets: no "
        "node of this dataplane can enforce the rule; set protocol: ICMP\n" in out + err
    )
    assert "1 error(s)" in out + err
    assert not (tmp_path / "state").exists()


# -- snapshot files ------------------------------------------------------------


@pytest.mark.parametrize(
    "edit,why",
    [
        (lambda s: s.pop("objects"), "no field 'objects'"),
        (lambda s: s["links"][0].pop("ifindex"), "no field 'ifindex'"),
        (lambda s: s.update(tables=[]), "TypeError: tables is a list, not an object"),
        (lambda s: s.update(host=[]), "TypeError: host is a list, not an object"),
        (lambda s: s.update(objects=[1]), "TypeError: 'int' object is not subscriptable"),
        (
            lambda s: s["tables"].update(
                rcl_nat_be={"key_size": 0, "value_size": 4, "keys": "", "values": "AAAAAA=="}
            ),
            "ValueError: table rcl_nat_be: its buffers do not hold whole 0/4-byte entries",
        ),
        (
            lambda s: s["tables"].update(
                rcl_nat_be={"key_size": 8, "value_size": 4, "keys": "AAAA", "values": "AAAAAA=="}
            ),
            "ValueError: table rcl_nat_be: its buffers do not hold whole 8/4-byte entries",
        ),
        (
            lambda s: s["tables"].update(
                rcl_nat_be={"key_size": 8, "value_size": 4, "keys": "!!", "values": ""}
            ),
            "Error: Only base64 data is allowed",
        ),
        (
            lambda s: s["tables"].update(  # one entry, whole, of another layout's sizes
                rcl_nat_be={"key_size": 3, "value_size": 4, "keys": "AAAA", "values": "AAAAAA=="}
            ),
            "ValueError: table rcl_nat_be: 3/4-byte entries, not this version's 8/8 "
            "(a snapshot of another version?)",
        ),
        (lambda s: s.update(notes=[]), "TypeError: notes is a list, not an object"),
        (
            lambda s: s["notes"].update(services={"x": {}}),
            "ValueError: invalid literal for int() with base 10: 'x'",
        ),
        (
            lambda s: s["notes"].update(services={"1": "shop/web"}),
            "TypeError: a note is a str, not an object",
        ),
    ],
)
def test_a_malformed_snapshot_is_named(capsys, tmp_path, cfg, edit, why):
    path = write_snapshot(tmp_path / "node.json")
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    code, err = run(capsys, "--plan", "--observed", str(path), "--config", str(cfg), "--no-cache")
    assert (code, err) == (1, f"error: {path}: malformed snapshot: {why}\n")


def test_a_snapshot_names_its_document_kind_and_a_huge_file_is_not_read(
    capsys, tmp_path, cfg, monkeypatch
):
    from reconciler.observe import snapshot as snapshot_file

    path = write_snapshot(tmp_path / "node.json")
    data = json.loads(path.read_text())
    assert (data["kind"], data["format_version"]) == ("reconcile.snapshot", 1) and data["version"]
    monkeypatch.setattr(snapshot_file, "MAX_SNAPSHOT_BYTES", 1024 * 1024)
    path.write_text(" " * (1024 * 1024 + 1))
    code, err = run(capsys, "--plan", "--observed", str(path), "--config", str(cfg), "--no-cache")
    assert (code, err) == (
        1, f"error: {path}: more than 1 MiB: not a snapshot reconcile --snapshot wrote\n"
    )  # fmt: skip


# -- saved plans (--apply --plan-file) -------------------------------------------


@pytest.mark.parametrize(
    "content,why",
    [
        ('{"format_version": 1}', "not a plan file: it has no 'node' field"),
        ("[]", "not a plan file: a JSON list, not an object"),
        ('{"format_version": 1, "source": "x"}', "not a plan file: its source is not an object"),
        (
            '{"format_version": 1, "node": "n1", "source": {}, "bpffs_root": "/x", '
            '"observed_fingerprint": "", "changes": [{"action": "explode"}]}',
            "not a plan file: 'explode' is not a valid Action",
        ),
    ],
)
def test_a_file_that_is_not_a_plan_is_refused(capsys, tmp_path, cfg, content, why):
    path = tmp_path / "p.json"
    path.write_text(content)
    code, err = run(capsys, "--apply", "--plan-file", str(path), *node_args(tmp_path))
    assert (code, err) == (1, f"error: {path}: {why}\n")
    assert untouched(tmp_path)


def saved_plan(tmp_path: Path, node: str, spec: dict[str, object]) -> Path:
    path = tmp_path / "p.json"
    plan = Plan(node, {"identity": "x", "spec": spec}, str(tmp_path / "bpffs"), "", ())
    plan.dump(str(path))
    return path


def test_a_plan_for_another_node_is_refused(capsys, tmp_path, cfg):
    spec = {"kind": "dir", "paths": [str(cfg)], "policy": {}}
    path = saved_plan(tmp_path, "n2", spec)
    code, err = run(capsys, "--apply", "--plan-file", str(path), *node_args(tmp_path))
    bpffs = tmp_path / "bpffs"
    assert (code, err) == (1, f"error: plan is for node n2 at {bpffs}, not n1 at {bpffs}\n")
    assert untouched(tmp_path)


# -- repositories ---------------------------------------------------------------


def git_repo(root: Path) -> tuple[Path, str]:
    """A repository with one commit of a valid config (and what `root`
    already holds); (path, commit)."""
    root.mkdir(exist_ok=True)
    (root / "felix.yaml").write_text(FELIX)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "c"]):
        subprocess.run(["git", "-C", str(root), *cmd], check=True, env=env)
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    return root, head


def test_a_repository_missing_a_tree_is_corrupt(capsys, tmp_path):
    repo, head = git_repo(tmp_path / "repo")
    tree = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD^{tree}"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    (repo / ".git" / "objects" / tree[:2] / tree[2:]).unlink()
    code, err = run(capsys, "--validate", "--repo", str(repo), "--ref", "main")
    assert (code, err) == (
        1, f"error: {repo}@{head}: the repository is corrupt: fatal: not a tree object\n"
    )  # fmt: skip


def test_a_truncated_object_is_named_with_its_file(capsys, tmp_path):
    """The object's header reads (ls-tree lists it with its size), its
    content ends early: git cat-file stops mid-object."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "notes.yaml").write_text("# " + "".join(f"{i:x}" for i in range(4000)) + "\n")
    repo, _ = git_repo(root)
    blob = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD:notes.yaml"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    loose = repo / ".git" / "objects" / blob[:2] / blob[2:]
    data = loose.read_bytes()
    os.chmod(loose, 0o600)
    loose.write_bytes(data[: len(data) // 2])
    code, err = run(capsys, "--validate", "--repo", str(repo), "--ref", "main", "--no-cache")
    unreadable = f"notes.yaml: cannot read the object {blob[:12]}: git cat-file ended early"
    assert (code, err) == (1, f"error: {repo}: {unreadable}\n")


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--verify-signatures"], "--verify-signatures needs --keyring DIR"),
        (
            ["--verify-signatures", "--keyring", "{tmp}/none"],
            "--keyring {tmp}/none: not a directory",
        ),
    ],
)
@pytest.mark.parametrize("mode", ["--validate", "--plan", "--watch"])
def test_signature_checking_needs_a_keyring_directory(capsys, tmp_path, mode, flags, message):
    repo, _ = git_repo(tmp_path / "repo")
    argv = [f.format(tmp=tmp_path) for f in flags]
    node = node_args(tmp_path) if mode != "--validate" else []
    code, err = run(capsys, mode, "--repo", str(repo), *argv, *node)
    assert (code, err) == (1, f"error: {message.format(tmp=tmp_path)}\n")
    assert untouched(tmp_path)


@pytest.mark.parametrize("flag", ["--wake-addr", "--metrics-addr"])
@pytest.mark.parametrize("addr", ["nowhere", "127.0.0.1:", "127.0.0.1:65536", "[::1]:http"])
def test_a_listen_address_that_is_not_host_port_is_refused_first(
    capsys, tmp_path, cfg, flag, addr
):
    code, err = run(capsys, "--watch", f"{flag}={addr}", "--config", str(cfg),
                    *node_args(tmp_path))  # fmt: skip
    assert (code, err) == (1, f"error: {flag} {addr!r}: expected HOST:PORT (a port from 0 to "
                              "65535)\n")  # fmt: skip
    assert untouched(tmp_path)


@pytest.mark.parametrize(
    "argv",
    [
        ["--validate", "--repo", "https://example.invalid/r.git"],
        ["--plan", "--repo", "https://example.invalid/r.git"],
    ],
)
def test_a_remote_repository_needs_a_safe_cache_directory(capsys, tmp_path, monkeypatch, argv):
    xdg = tmp_path / "xdg"
    (xdg / "calico-reconciler").mkdir(parents=True)
    os.chmod(xdg / "calico-reconciler", 0o777)  # another user could plant a mirror there
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    cache_dir._warned.clear()
    node = node_args(tmp_path) if argv[0] != "--validate" else []
    code, err = run(capsys, *argv, *node)
    assert code == 1
    assert err.splitlines()[-1] == (
        "error: https://example.invalid/r.git: no safe cache directory to keep a mirror in"
    )
    assert untouched(tmp_path)


def test_a_saved_plan_of_a_remote_repository_needs_a_safe_cache_directory(
    capsys, tmp_path, monkeypatch
):
    xdg = tmp_path / "xdg"
    (xdg / "calico-reconciler").mkdir(parents=True)
    os.chmod(xdg / "calico-reconciler", 0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    cache_dir._warned.clear()
    commit = "0" * 40
    spec = {"kind": "git", "repo": "https://example.invalid/r.git", "ref": commit}
    path = saved_plan(tmp_path, "n1", spec)
    code, err = run(capsys, "--apply", "--plan-file", str(path), *node_args(tmp_path))
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: https://example.invalid/r.git@{commit}: no safe cache directory to keep a "
        "mirror in"
    )
    assert untouched(tmp_path)


# -- config files -----------------------------------------------------------------


@pytest.mark.parametrize("content", ["- skipKinds\n", "just text\n", "42\n"])
def test_a_repo_config_that_is_not_a_mapping(capsys, tmp_path, cfg, content):
    (cfg / ".reconcile.yaml").write_text(content)
    code, err = run(capsys, "--validate", str(cfg), "--no-cache")
    assert (code, err) == (
        1, f"error: {cfg}/.reconcile.yaml: expected a mapping with skipKinds and ignorePaths\n"
    )  # fmt: skip


# -- the bpffs root ---------------------------------------------------------------


def test_a_bpffs_root_off_bpffs_is_refused_before_it_is_made(capsys, tmp_path):
    """Pins fail on any other filesystem: refused by name, not at the first
    pin of an apply after the programs were built."""
    root = tmp_path / "root"
    code, err = run(capsys, "--status", "--bpffs-root", str(root),
                    "--state-dir", str(tmp_path / "state"))  # fmt: skip
    # what util-linux says of the test's directory, not our own mount reader
    found = subprocess.run(["findmnt", "-no", "FSTYPE,TARGET", "-T", str(tmp_path)],
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    fstype, mounted_at = found.split()
    assert fstype != "bpf"
    assert (code, err) == (
        1,
        f"error: bpffs root {root} would be on {fstype} (mounted at {mounted_at}), where "
        "nothing can be pinned; use a directory under /sys/fs/bpf; nothing was changed\n",
    )
    assert not root.exists()


def test_a_watcher_refuses_a_bpffs_root_off_bpffs_at_its_start(tmp_path, cfg):
    """Not a pass that fails and retries for ever: the watcher never starts.
    (A subprocess with a timeout: a watcher that did start would not return.)"""
    import sys

    root = tmp_path / "root"
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from reconciler.cli.main import main; "
         "sys.exit(main(sys.argv[1:]))", "--watch", "--config", str(cfg), "--no-cache",
         "--bpffs-root", str(root), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"error: bpffs root {root} would be on "), done.stderr
    assert last.endswith("where nothing can be pinned; use a directory under /sys/fs/bpf; "
                         "nothing was changed")  # fmt: skip
    assert "watching" not in done.stderr  # refused before the watcher started
    assert not root.exists() and not (tmp_path / "state").exists()


def test_a_bpffs_root_under_a_directory_others_can_change(capsys, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # no sticky bit: anyone may rename our root away
    root = shared / "root"
    code, err = run(capsys, "--status", "--bpffs-root", str(root),
                    "--state-dir", str(tmp_path / "state"))  # fmt: skip
    assert (code, err) == (
        1, f"error: {shared}, above bpffs root {root}, can be changed by other users\n"
    )  # fmt: skip
    assert not root.exists()  # refused before anything was created there


def test_a_plan_against_a_snapshot_asks_nothing_of_this_machines_namespaces(
    capsys, tmp_path, cfg
):
    """--netns and --cgroup copied along from a node's options name that
    node's: a plan against its snapshot does not look for them here."""
    snap = write_snapshot(tmp_path / "node.json")
    elsewhere = ["--netns", "no-such-namespace", "--cgroup", str(tmp_path / "no-cgroup")]
    argv = ["--plan", "--observed", str(snap), "--config", str(cfg), "--no-cache", *elsewhere]
    code, err = run(capsys, *argv)
    assert code == 2, err


def test_a_plan_against_a_snapshot_lists_every_entry_with_detail(capsys, tmp_path, cfg):
    """--plan --observed renders as the live plan does: large map changes
    summarised, and every entry with --detail."""
    endpoints = "".join(f"- addresses: [10.1.{i // 250}.{i % 250 + 1}]\n" for i in range(60))
    (cfg / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\n"
        "spec: {clusterIP: 10.96.0.9, ports: [{name: p, port: 80, protocol: TCP}]}\n---\n"
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: s-1, namespace: shop, labels: {kubernetes.io/service-name: s}}\n"
        "addressType: IPv4\nports: [{name: p, port: 8080, protocol: TCP}]\n"
        f"endpoints:\n{endpoints}"
    )
    snap = write_snapshot(tmp_path / "node.json")
    argv = ["--plan", "--observed", str(snap), "--config", str(cfg), "--no-cache"]
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert "+ 60 entries in rcl_nat_be (1 service)" in out, out
    assert main([*argv, "--detail"]) == 2
    out = capsys.readouterr().out
    assert "summarised" not in out and out.count("+ map/rcl_nat_be/") == 60, out


def test_a_plan_against_a_snapshot_of_another_node_is_refused(capsys, tmp_path, cfg):
    """--node names the node planned for: one that is not the snapshot's is
    a mistake, never silently replaced by the snapshot's."""
    snap = write_snapshot(tmp_path / "node.json", node="n2")
    argv = ["--plan", "--observed", str(snap), "--config", str(cfg), "--no-cache"]
    code, err = run(capsys, *argv, "--node", "n1")
    assert (code, err) == (1, f"error: --node n1: the snapshot {snap} is of node n2 (a plan "
                              "against it is that node's)\n")  # fmt: skip
    code, err = run(capsys, *argv, "--node", "n2")
    assert code in (0, 2), err


def test_a_huge_integer_is_named_by_file_line_resource_and_field(capsys, cfg):
    rule = "protocol: TCP\n    destination: {ports: [99999999999999999999999]}"
    (cfg / "p.yaml").write_text(POLICY.format(direction="ingress", rule=rule))
    code = main(["--validate", "--config", str(cfg), "--no-cache"])
    message = "integer 99999999999999999999999 is out of range (more than 64 bits)"
    where = "NetworkPolicy/shop/p: spec.ingress[0].destination.ports[0]"
    assert code == 1
    assert f"{cfg / 'p.yaml'}:9: {where}: {message}\n" in capsys.readouterr().out


def test_an_infinite_order_is_named_by_file_line_resource_and_field(capsys, cfg):
    (cfg / "p.yaml").write_text(
        POLICY.format(direction="ingress", rule="protocol: TCP").replace(
            "  selector: all()", "  selector: all()\n  order: 1e400"
        )
    )
    code = main(["--validate", "--config", str(cfg), "--no-cache"])
    where = "NetworkPolicy/shop/p: spec.order"
    assert code == 1
    assert f"{cfg / 'p.yaml'}:6: {where}: order must be a finite number, not inf\n" in (
        capsys.readouterr().out
    )
