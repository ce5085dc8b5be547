"""An unprivileged plan is refused before it reads or creates anything."""

import os
import shutil
import tempfile

from reconciler.kernel import privileges


def test_missing_capabilities_are_named():
    assert privileges.missing(0) == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    full = (1 << privileges.CAP_NET_ADMIN) | (1 << privileges.CAP_SYS_ADMIN)
    assert privileges.missing(full) == []


def run_as_nobody(argv: list[str]) -> tuple[int, str]:
    """main(argv) in a child that dropped root: its exit code, and its
    stderr then stdout."""
    from reconciler.cli import commands as modes  # noqa: F401 - imported before dropping root
    from reconciler.cli import main as cli

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            os.environ["XDG_CACHE_HOME"] = "/nonexistent-cache"
            import io
            import sys

            sys.stderr = io.StringIO()
            sys.stdout = io.StringIO()
            code = cli.main(argv)
            os.write(write, (sys.stderr.getvalue() + sys.stdout.getvalue()).encode())
        except BaseException as exc:  # noqa: BLE001 - shown by the parent's assert
            os.write(write, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status), out


def test_unprivileged_plan_is_refused_and_creates_no_bpffs_root():
    root = f"/sys/fs/bpf/rcl-unpriv-{os.getpid()}"
    code, err = run_as_nobody(["--plan", "--config", "/", "--bpffs-root", root, "--no-cache"])
    assert code == 1, err
    assert err.startswith("error: uid 65534 lacks CAP_NET_ADMIN, CAP_SYS_ADMIN; --plan reads"), err
    assert "needs root" in err
    assert not os.path.exists(root)


def test_explain_without_kernel_needs_no_root():
    """It reads the configuration alone; with --kernel it reads pinned programs."""
    from tests.unit.test_error_paths import FELIX, WEB

    config = tempfile.mkdtemp(prefix="rcl-explain-")
    try:
        os.chmod(config, 0o755)
        path = os.path.join(config, "all.yaml")
        with open(path, "w") as fh:
            fh.write("---\n".join([FELIX, WEB]))
        os.chmod(path, 0o644)
        argv = ["--explain", "--from", "192.0.2.9", "--to", "web:80/tcp", "--config", config,
                "--node", "n1", "--no-cache"]  # fmt: skip
        code, out = run_as_nobody(argv)
        assert code == 0, out
        assert "shop/web ingress: " in out and "Verdict: " in out
        code, err = run_as_nobody([*argv, "--kernel"])
        assert code == 1, err
        assert "--explain --kernel reads the kernel's BPF and network state" in err
    finally:
        shutil.rmtree(config)


def test_a_cgroup_that_is_not_a_cgroup2_directory_is_refused(tmp_path):
    """The connect-time programs attach there: anything else would be
    planned, then refused by the kernel at apply."""
    import pytest

    from reconciler.engine.spec import CgroupError, cgroup2_mount, make_target

    with pytest.raises(CgroupError, match=r"not a cgroup v2 directory \(it is on "):
        make_target("n1", "/sys/fs/bpf/x", str(tmp_path / "s"), None, None, str(tmp_path))
    with pytest.raises(CgroupError, match="no such directory"):
        make_target("n1", "/sys/fs/bpf/x", str(tmp_path / "s"), None, None, str(tmp_path / "no"))
    mount = cgroup2_mount()
    if mount is not None:  # the machine's hierarchy itself is one
        target = make_target("n1", "/sys/fs/bpf/x", str(tmp_path / "s"), None, None, mount)
        assert target.cgroup == mount
