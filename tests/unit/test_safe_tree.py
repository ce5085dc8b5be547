"""Reading the config tree as root: file kinds, symlinks, unreadable paths,
odd names, and the same symlink rule for Git trees."""

import os
import socket
import subprocess
from pathlib import Path

import pytest

from reconciler.cli import main as cli

TIER = (
    "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: {name}}}\n"
    "spec: {{order: 1}}\n"
)


def _tree(tmp_path):
    cfg = tmp_path / "cfg"
    (cfg / "sub").mkdir(parents=True)
    (cfg / "a.yaml").write_text(TIER.format(name="a"))
    (cfg / "sub" / "b.yaml").write_text(TIER.format(name="b"))
    (tmp_path / "outside.yaml").write_text("secret: root-only-content\n")
    return cfg


def _validate(capsys, *paths, extra=()):
    code = cli.main(["--validate", *map(str, paths), "--no-cache", *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def _expect_error(capsys, cfg, bad, message):
    code, text = _validate(capsys, cfg)
    assert code == 1
    assert f"{bad}: {message}" in text
    assert "root-only-content" not in text
    assert "Traceback" not in text


def test_fifo_is_an_error_not_a_hang(tmp_path, capsys):
    cfg = _tree(tmp_path)
    os.mkfifo(cfg / "f.yaml")
    _expect_error(capsys, cfg, cfg / "f.yaml", "is a FIFO, not a regular file")


def test_socket_is_an_error(tmp_path, capsys):
    cfg = _tree(tmp_path)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(cfg / "s.yaml"))
    try:
        _expect_error(capsys, cfg, cfg / "s.yaml", "is a socket, not a regular file")
    finally:
        s.close()


@pytest.mark.parametrize(
    "target,message",
    [
        ("/dev/zero", "is a symlink that leaves the config tree (refused)"),
        ("../outside.yaml", "is a symlink that leaves the config tree (refused)"),
        ("missing.yaml", "is a dangling symlink (No such file or directory)"),
        ("l.yaml", "is a symlink loop"),
    ],
)
def test_bad_symlinks_are_errors(tmp_path, capsys, target, message):
    cfg = _tree(tmp_path)
    os.symlink(target, cfg / "l.yaml")
    _expect_error(capsys, cfg, cfg / "l.yaml", message)


def test_file_symlink_inside_the_tree_is_followed(tmp_path, capsys):
    cfg = _tree(tmp_path)
    os.symlink("a.yaml", cfg / "z.yaml")
    code, text = _validate(capsys, cfg)
    # read through the link: its Tier repeats a.yaml's
    assert code == 1
    assert f"{cfg}/z.yaml:1: Tier/a: metadata.name: duplicate resource" in text
    assert "3 file(s), 3 resource(s)" in text


def test_symlinked_directory_is_read(tmp_path, capsys):
    cfg = _tree(tmp_path)
    hidden = cfg / ".store"
    hidden.mkdir()
    (hidden / "c.yaml").write_text(TIER.format(name="c"))
    os.symlink(".store", cfg / "linked")
    code, text = _validate(capsys, cfg)
    assert code == 0, text
    assert "3 file(s), 3 resource(s): valid" in text


def _as_nobody(fn):
    """Run fn() in a child that dropped root (root reads everything)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            os.write(write, repr(fn()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as fh:
        result = fh.read()
    os.waitpid(pid, 0)
    return result


def test_unreadable_paths_are_errors_never_skipped(tmp_path):
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="rcl-tree-"))  # pytest's own is private to root
    try:
        _unreadable(base)
    finally:
        shutil.rmtree(base)


def _unreadable(tmp_path):
    os.chmod(tmp_path, 0o755)
    cfg = _tree(tmp_path)
    os.chmod(cfg, 0o755)
    locked = cfg / "locked"
    locked.mkdir(mode=0o000)
    secret = cfg / "secret.yaml"
    secret.write_text(TIER.format(name="s"))
    os.chmod(secret, 0o000)
    os.chmod(cfg / "sub", 0o755)
    os.chmod(cfg / "a.yaml", 0o644)
    os.chmod(cfg / "sub" / "b.yaml", 0o644)
    from reconciler.config import safe_tree

    def walk():
        try:
            return list(safe_tree.walk(str(cfg)))
        except safe_tree.TreeError as exc:
            return exc.problems

    problems = _as_nobody(walk) if os.geteuid() == 0 else repr(walk())
    assert f"{locked}: cannot read the directory: Permission denied" in problems
    assert f"{secret}: cannot read the file: Permission denied" in problems


def test_odd_file_names_work_and_are_shown_escaped(tmp_path, capsys):
    cfg = _tree(tmp_path)
    name = os.fsencode(str(cfg)) + b"/bad\xff\nname.yaml"
    with open(name, "w") as fh:
        fh.write("kind: Tier\nmetadata: {name: odd}\nspec: {order: x}\n")
    code, text = _validate(capsys, cfg)
    assert code == 1
    assert f"{cfg}/bad\\xff\\x0aname.yaml:3: Tier/odd: spec.order:" in text
    # the same tree given by a non-UTF-8 path
    odd_root = os.fsencode(str(tmp_path)) + b"/r\xfe"
    os.rename(str(cfg), odd_root)
    code, text = _validate(capsys, os.fsdecode(odd_root))
    assert code == 1 and "r\\xfe/bad\\xff\\x0aname.yaml:3" in text


def _git(repo, *args):
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@t", "-c", "user.name=t", *args],
        check=True,
        capture_output=True,
    )


def test_git_symlinks_follow_the_same_rule(tmp_path, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.yaml").write_text(TIER.format(name="a"))
    os.symlink("/etc/passwd", repo / "out.yaml")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "x")
    code, text = _validate(capsys, extra=("--repo", str(repo)))
    assert code == 1
    assert "out.yaml: is a symlink that leaves the repository tree (refused)" in text
    assert "root:" not in text and "Traceback" not in text
    os.remove(repo / "out.yaml")
    os.symlink("a.yaml", repo / "in.yaml")
    (repo / os.fsdecode(b"b\xff.yaml")).write_text(TIER.format(name="b"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "y")
    code, text = _validate(capsys, extra=("--repo", str(repo)))
    assert "in.yaml:1: Tier/a: metadata.name: duplicate resource" in text
    assert "b\\xff.yaml" not in text or code == 1


def test_corrupt_repository_is_an_error_warm_cache_or_not(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.yaml").write_text(TIER.format(name="a"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "x")
    args = ["--validate", "--repo", str(repo)]
    assert cli.main(args) == 0  # warms the validation cache
    blob = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD:a.yaml"], capture_output=True, text=True
    ).stdout.strip()
    obj = repo / ".git" / "objects" / blob[:2] / blob[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"garbage")
    capsys.readouterr()
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {repo}@") and "Traceback" not in err
