"""An unprivileged plan is refused before it reads or creates anything."""

import os

from reconciler.kernel import privileges


def test_missing_capabilities_are_named():
    assert privileges.missing(0) == ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
    full = (1 << privileges.CAP_NET_ADMIN) | (1 << privileges.CAP_SYS_ADMIN)
    assert privileges.missing(full) == []


def test_unprivileged_plan_is_refused_and_creates_no_bpffs_root(tmp_path):
    from reconciler.cli import commands as modes  # noqa: F401 - imported before dropping root
    from reconciler.cli import main as cli

    root = f"/sys/fs/bpf/rcl-unpriv-{os.getpid()}"
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
            code = cli.main(["--plan", "--config", "/", "--bpffs-root", root, "--no-cache"])
            os.write(write, sys.stderr.getvalue().encode())
        except BaseException as exc:  # noqa: BLE001 - shown by the parent's assert
            os.write(write, repr(exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        err = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 1, err
    assert "lacks CAP_NET_ADMIN, CAP_SYS_ADMIN" in err and "need root" in err
    assert not os.path.exists(root)
