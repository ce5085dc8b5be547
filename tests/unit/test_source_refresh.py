"""refresh(): re-reading only the paths --watch saw change must give exactly
the snapshot a full walk gives, whatever happened to the tree."""

from __future__ import annotations

import os
import random
import shutil

import pytest

from reconciler.config import source


def snapshot(src):
    return src.identity, [(f.path, f.digest) for f in src.files]


def test_without_a_previous_walk_there_is_nothing_to_refresh(tmp_path):
    sources = source.SourceCache()
    assert sources.refresh(str(tmp_path / "never-walked"), []) is None
    source.from_paths([str(tmp_path)], None)  # walked, but by another owner
    assert sources.refresh(str(tmp_path), []) is None


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("given", ["abs", "rel"])
def test_refresh_equals_a_full_walk_across_random_tree_edits(tmp_path, monkeypatch, seed, given):
    rng = random.Random(seed)
    root = tmp_path / "cfg"
    root.mkdir()
    monkeypatch.chdir(tmp_path)
    spec = str(root) if given == "abs" else "./cfg/"
    dirs = ["", "svc", "svc/deep", "zz", ".hidden"]
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(12):
        (root / rng.choice(dirs) / f"f{i}.yaml").write_text(f"n: {i}\n")
    sources = source.SourceCache()
    source.from_paths([spec], None, sources)
    for step in range(25):
        changed: list[str] = []
        op = rng.choice(["edit", "add", "remove", "add-dir", "remove-dir", "other-ext"])
        existing = [p for p in root.rglob("*") if p.is_file()]
        if op == "edit" and existing:
            p = rng.choice(existing)
            p.write_text(p.read_text() + f"x: {step}\n")
            changed.append(str(p))
        elif op == "add":
            p = root / rng.choice(dirs) / f"a{step}.yml"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(f"a: {step}\n")
            changed.append(str(p))
        elif op == "remove" and existing:
            p = rng.choice(existing)
            p.unlink()
            changed.append(str(p))
        elif op == "add-dir":  # a whole directory appears: only the directory is reported
            d = root / f"new{step}" / "sub"
            d.mkdir(parents=True)
            (d / "n.yaml").write_text("n: 1\n")
            (d.parent / "m.yaml").write_text("m: 1\n")
            changed.append(str(d.parent))
        elif op == "remove-dir":
            victims = [d for d in root.iterdir() if d.is_dir() and d.name.startswith("new")]
            if victims:
                d = rng.choice(victims)
                shutil.rmtree(d)
                changed.append(str(d))
        elif op == "other-ext":
            p = root / f"notes{step}.txt"
            p.write_text("not config")
            changed.append(str(p))
        got = sources.refresh(spec, [os.path.abspath(c) for c in changed], None)
        assert got is not None
        # a full walk by another owner: the next refresh builds on this one
        assert snapshot(got) == snapshot(source.from_paths([spec], None))


def test_a_path_outside_the_tree_is_ignored(tmp_path):
    root = tmp_path / "cfg"
    root.mkdir()
    (root / "a.yaml").write_text("a: 1\n")
    sources = source.SourceCache()
    first = source.from_paths([str(root)], None, sources)
    (tmp_path / "elsewhere.yaml").write_text("b: 1\n")
    got = sources.refresh(str(root), [str(tmp_path / "elsewhere.yaml")], None)
    assert got is not None and snapshot(got) == snapshot(first)
