"""bpffs missing (as after a reboot on a machine that does not mount it):
ensure_bpffs mounts it, and says so clearly when it cannot. Each case runs in
a private mount namespace, so the host's /sys/fs/bpf is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)


def in_private_mount_ns(script: str, unmount: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `script` (Python) in a new mount namespace whose /sys/fs/bpf is
    detached first, as on a node where nothing has mounted it yet."""
    detach = "umount -l /sys/fs/bpf 2>/dev/null; " * 4 if unmount else ""
    shell = f'{detach}exec "$0" -c "$1"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, sys.executable,
         textwrap.dedent(script)],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def test_mounts_bpffs_when_missing_and_creates_the_root() -> None:
    root = f"/sys/fs/bpf/rcl-mount-{uuid.uuid4().hex[:8]}"
    done = in_private_mount_ns(
        f"""
        from reconciler.kernel import bpf
        def bpf_mounts():
            return [l.split() for l in open("/proc/self/mounts") if l.split()[1] == "/sys/fs/bpf"]
        assert not bpf_mounts(), bpf_mounts()
        bpf.ensure_bpffs({root!r})
        (m,) = bpf_mounts()
        assert m[2] == "bpf", m
        import os
        assert os.path.isdir({root!r})
        bpf.ensure_bpffs({root!r})  # mounted now: nothing more
        assert len(bpf_mounts()) == 1
        print("mounted")
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "mounted"
    # the host's bpffs never saw the directory made in the private mount
    assert not os.path.exists(root)


def test_a_mount_that_fails_raises_a_clear_error() -> None:
    missing = f"/tmp/rcl-no-such-dir-{uuid.uuid4().hex[:8]}"
    done = in_private_mount_ns(
        f"""
        from reconciler.kernel import bpf
        try:
            bpf.ensure_bpffs({missing!r} + "/root", mountpoint={missing!r})
        except bpf.BpffsError as exc:
            print(exc.errno, exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"2 [Errno 2] bpffs is not mounted at {missing} and mounting it failed"
    )


def test_a_root_on_a_bpffs_mounted_elsewhere_is_taken_and_one_off_bpffs_is_not(tmp_path) -> None:
    """The filesystem a root would live on comes from the mount table, whose
    paths the kernel escapes (a space is \\040)."""
    spaced = tmp_path / "bpf mount"
    spaced.mkdir()
    done = in_private_mount_ns(
        f"""
        import os, subprocess
        from reconciler.kernel import bpf
        subprocess.run(["mount", "-t", "bpf", "bpf", {str(spaced)!r}], check=True)
        bpf.ensure_bpffs({str(spaced / "root")!r})
        assert os.path.isdir({str(spaced / "root")!r})
        try:
            bpf.ensure_bpffs({str(tmp_path / "plain" / "root")!r})
        except bpf.UnsafeRoot as exc:
            print(exc)
        """,
        unmount=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"bpffs root {tmp_path / 'plain' / 'root'} would be on " in done.stdout
    assert "where nothing can be pinned" in done.stdout
    assert not (tmp_path / "plain").exists()
    assert not (spaced / "root").exists()  # made on the private mount only
