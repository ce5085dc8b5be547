"""A corpus of hostile inputs, generated here (seeded, deterministic): bombs,
nesting, sizes, encodings, file kinds, names, and every field of a set of
valid documents given wrong types and out-of-range values.

For each input `reconcile --validate` (in process, as the CLI runs it) must
answer exit 1 naming `file:line` (or the path, for what is not a file to
read), or exit 0 where Calico and Kubernetes accept; never a traceback.
What could crash or hang the interpreter runs in a subprocess with a
timeout; the largest inputs are held to 2 s and 200 MB.
"""

from __future__ import annotations

import copy
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.config import limits

ROOT = str(Path(__file__).resolve().parents[2])
SEED = 20261203

BASES = {
    "Service": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "externalIPs": ["192.0.2.10"],
            "selector": {"app": "web"},
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 300}},
            "ports": [
                {
                    "name": "http",
                    "port": 80,
                    "targetPort": 8080,
                    "protocol": "TCP",
                    "nodePort": 30080,
                },
            ],
        },
    },
    "EndpointSlice": {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-1",
            "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["10.65.0.20"], "conditions": {"ready": True}, "nodeName": "node-1"}
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    },
    "FelixConfiguration": {
        "apiVersion": "projectcalico.org/v3",
        "kind": "FelixConfiguration",
        "metadata": {"name": "default"},
        "spec": {
            "bpfEnabled": True,
            "bpfDataIfacePattern": "^eth",
            "bpfMapSizeConntrack": 512000,
            "bpfConntrackTimeouts": {"tcpEstablished": "1h", "udpTimeout": "60s"},
            "failsafeInboundHostPorts": [{"protocol": "TCP", "port": 22}],
            "kubeNodePortRanges": ["30000:32767"],
        },
    },
    "GlobalNetworkPolicy": {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "allow-dns"},
        "spec": {
            "selector": "app == 'web'",
            "order": 100,
            "types": ["Ingress"],
            "ingress": [
                {
                    "action": "Allow",
                    "protocol": "UDP",
                    "source": {"nets": ["10.0.0.0/8"]},
                    "destination": {"ports": [53, "1000:2000"]},
                }
            ],
        },
    },
    "IPPool": {
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": "pool"},
        "spec": {"cidr": "10.65.0.0/16", "blockSize": 26, "natOutgoing": True},
    },
    "HostEndpoint": {
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": "n1-eth0", "labels": {"role": "node"}},
        "spec": {"node": "node-1", "interfaceName": "eth0", "expectedIPs": ["192.0.2.1"]},
    },
}

WRONG_VALUES = [
    [],
    {},
    "text",
    80.0,
    1.5,
    True,
    None,
    -1,
    65536,
    2**32,
    2**63 - 1,
    "0.0.0.0",
    "127.0.0.1",
    "x" * 300,
]


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    else:
        yield path


def _set(doc, path, value):
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _field_cases(rng):
    """Every leaf of every base document, given a few wrong values each."""
    cases = []
    for kind, base in BASES.items():
        for path in _leaves(base):
            if path in (("kind",), ("apiVersion",)):
                continue
            for choice in rng.sample(range(len(WRONG_VALUES)), 5):
                value = WRONG_VALUES[choice]
                doc = copy.deepcopy(base)
                _set(doc, path, value)
                name = f"field-{kind}-{'.'.join(map(str, path))}-{choice}"
                cases.append((name, json.dumps(doc, indent=1).encode()))
    return cases


def _nested(depth, opener, closer):
    return ("kind: Tier\nspec: " + opener * depth + closer * depth + "\n").encode()


def _bomb(width, depth):
    rows = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    rows += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, depth)]
    return ("kind: Tier\n" + "\n".join(rows) + "\n").encode()


def _policy(selector):
    return (
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: p}\n"
        f'spec:\n  selector: "{selector}"\n'
    ).encode()


def _felix_pattern(pattern):
    return (
        "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata: {name: default}\n"
        f"spec:\n  bpfDataIfacePattern: '{pattern}'\n"
    ).encode()


def _structural_cases():
    cases = []
    for depth in (10, 63, 64, 65, 100, 1000):
        cases.append((f"nest-flow-seq-{depth}", _nested(depth, "[", "]")))
        cases.append((f"nest-flow-map-{depth}", _nested(depth, "{a: ", "}")))
        block = "kind: Tier\n" + "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "\n"
        cases.append((f"nest-block-{depth}", block.encode()))
    for width, depth in ((2, 5), (10, 4), (10, 9), (100, 3), (3, 20), (50, 5)):
        cases.append((f"bomb-{width}x{depth}", _bomb(width, depth)))
    for n in (1, 100, 300, 500, 1000, 1001, 2000):
        cases.append((f"selector-parens-{n}", _policy("(" * n + "a == 'b'" + ")" * n)))
        cases.append((f"selector-not-{n}", _policy("!(" * n + "a == 'b'" + ")" * n)))
    for n in (10, 100, 500, 5000):
        cases.append((f"regex-groups-{n}", _felix_pattern("(" * n + "a" + ")" * n)))
        cases.append((f"regex-star-{n}", _felix_pattern("(a*)*" * n)))
    for digits in (19, 20, 40, 41, 5000):
        cases.append((f"int-{digits}-digits", f"kind: Tier\nx: {'9' * digits}\n".encode()))
        cases.append((f"hex-{digits}-digits", f"kind: Tier\nx: 0x{'f' * digits}\n".encode()))
    for text in ("1e400", "-1e400", ".nan", ".inf", "0o777777777777777777777777777"):
        cases.append((f"number-{text}", f"kind: Tier\nx: {text}\n".encode()))
    for n in (limits.MAX_LIST_ITEMS - 1, limits.MAX_LIST_ITEMS + 1):
        items = ", ".join(["1"] * n)
        cases.append((f"list-{n}", f"kind: Tier\nx: [{items}]\n".encode()))
    for size in (limits.MAX_SCALAR_BYTES, limits.MAX_SCALAR_BYTES + 1):
        cases.append((f"scalar-{size}", f"kind: Tier\nx: {'a' * size}\n".encode()))
        cases.append((f"key-{size}", f"kind: Tier\n{'k' * size}: 1\n".encode()))
    docs = "".join(
        f"---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: t{i}}}\n"
        f"spec: {{order: {i}}}\n"
        for i in range(5000)
    )
    cases.append(("docs-5000", docs.encode()))
    cases.append(("file-at-limit", b"#" * limits.MAX_FILE_BYTES))
    cases.append(("file-over-limit", b"#" * (limits.MAX_FILE_BYTES + 1)))
    cases.append(("addresses-quadratic", ("kind: GlobalNetworkSet\nmetadata: {name: n}\n"
                  "spec:\n  nets:\n" + "".join(f"  - '{':' * 4000}/'\n" for _ in range(30))
                  ).encode()))  # fmt: skip
    return cases


def _encoding_cases():
    body = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nspec: {order: 1}\n"
    return [
        ("enc-utf8-bom", b"\xef\xbb\xbf" + body.encode()),
        ("enc-utf16", body.encode("utf-16")),
        ("enc-utf32", body.encode("utf-32")),
        ("enc-latin1", body.replace("t}", "t\xe9}").encode("latin-1")),
        ("enc-invalid-utf8", b"kind: \xff\xfe\n"),
        ("enc-nul", body.encode() + b"\x00"),
        ("enc-control", b"kind: Tier\x07\n"),
        ("enc-crlf", body.replace("\n", "\r\n").encode()),
        ("enc-lone-surrogate", b'kind: Tier\nx: "\\ud800"\n'),
        ("enc-escapes", b'kind: Tier\nmetadata: {name: "\\x00\\e\\N"}\n'),
        ("enc-empty", b""),
        ("enc-only-separators", b"---\n---\n...\n"),
        ("enc-tab-indent", b"kind: Tier\nspec:\n\torder: 1\n"),
        ("enc-unclosed-quote", b'kind: "Tier\n'),
        ("enc-custom-tag", b"kind: !python/object:os.system Tier\n"),
        ("enc-merge-key", b"a: &a {kind: Tier}\n<<: *a\n"),
        ("enc-dup-key", b"kind: Tier\nkind: Tier\n"),
        ("enc-binary", bytes(range(256)) * 4),
        ("enc-random", random.Random(SEED).randbytes(4096)),
    ]


def _valid_cases():
    """Inputs Calico and Kubernetes accept: exit 0."""
    cases = [(f"valid-{kind}", json.dumps(doc).encode()) for kind, doc in BASES.items()]
    deep = "(" * 500 + "a == 'b'" + ")" * 500
    cases.append(("valid-selector-500", _policy(deep)))
    edge = copy.deepcopy(BASES["Service"])
    edge["spec"]["ports"][0].update(port=65535, nodePort=32767)
    cases.append(("valid-port-edges", json.dumps(edge).encode()))
    return cases


def _all_cases():
    rng = random.Random(SEED)
    return _field_cases(rng) + _structural_cases() + _encoding_cases() + _valid_cases()


CASES = _all_cases()
VALID = {name for name, _ in _valid_cases()}


def test_corpus_is_big_enough():
    assert len(CASES) >= 300
    assert len({name for name, _ in CASES}) == len(CASES)


_LOCATED = re.compile(r"^(?P<file>.+?):(?P<line>\d+): ")


def _check_output(path, code, out, err, name):
    assert code in (0, 1), (name, code, err[-2000:])
    assert "Traceback" not in out + err and "internal error" not in err, name
    if name in VALID:
        assert code == 0, (name, out, err)
    if code == 1:
        lines = [line for line in out.splitlines() if line]
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert lines or errors, (name, out, err)
        for line in lines:
            match = _LOCATED.match(line)
            assert match and match["file"] == str(path) and int(match["line"]) >= 1, (name, line)
        for line in errors:
            assert str(path) in line, (name, line)


def test_every_generated_input_exits_cleanly(tmp_path, capsys):
    slow = []
    for index, (name, data) in enumerate(CASES):
        path = tmp_path / f"{index:04d}.yaml"
        path.write_bytes(data)
        start = time.perf_counter()
        code = cli.main(["--validate", str(path), "--no-cache"])
        elapsed = time.perf_counter() - start
        out, err = capsys.readouterr()
        _check_output(path, code, out, err, name)
        if elapsed > RUNAWAY_SECONDS:
            slow.append((name, round(elapsed, 2)))
        path.unlink()
    assert slow == []


def _run(args, cache_home, timeout=20, **kw):
    """The CLI in a process of its own, with a cache directory of the test's."""
    env = {**os.environ, "PYTHONPATH": ROOT, "XDG_CACHE_HOME": str(cache_home)}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        **kw,
    )


@pytest.mark.parametrize("depth", [30_000, 300_000])
def test_deep_nesting_never_crashes_the_interpreter(tmp_path, depth):
    for opener, closer in (("[", "]"), ("{a: ", "}")):
        path = tmp_path / "deep.yaml"
        path.write_bytes(_nested(depth, opener, closer)[: limits.MAX_FILE_BYTES])
        done = _run(["--validate", str(path), "--no-cache"], tmp_path / "cache")
        assert done.returncode == 1, done.stderr[-500:]
        assert f"{path}:2: Tier: nesting deeper than 64 levels" in done.stdout or (
            "more than the limit" in done.stdout
        )


def test_file_kinds_never_hang(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    os.mkfifo(cfg / "fifo.yaml")
    os.symlink("/dev/zero", cfg / "zero.yaml")
    os.symlink("/dev/urandom", cfg / "urandom.yml")
    os.symlink("/proc/self/environ", cfg / "env.yaml")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(cfg / "sock.yaml"))
    try:
        done = _run(["--validate", str(cfg), "--no-cache"], tmp_path / "cache", timeout=10)
    finally:
        sock.close()
    assert done.returncode == 1
    for name in ("fifo.yaml", "zero.yaml", "urandom.yml", "env.yaml", "sock.yaml"):
        assert f"error: {cfg}/{name}: is " in done.stderr or f"{cfg}/{name}: is " in done.stderr


BIG_INPUTS = [
    "docs-5000",
    "file-at-limit",
    "file-over-limit",
    f"list-{limits.MAX_LIST_ITEMS - 1}",
    "bomb-10x9",
    "addresses-quadratic",
]


# The 2 s target for any input up to 1 MB is measured by bench/hostile_bench.py
# on a quiet machine; a test on a shared one only catches runaway (super-linear)
# cost, which takes minutes, not seconds.
RUNAWAY_SECONDS = 10.0


def test_largest_inputs_stay_within_time_and_memory(tmp_path):
    """1 MB-class inputs: no runaway time and under 200 MB each (a
    subprocess, so its peak memory is its own)."""
    by_name = dict(CASES)
    megabyte = "kind: GlobalNetworkSet\nmetadata: {name: n}\nspec:\n  nets:\n" + "".join(
        f"  - 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}/32\n" for i in range(40_000)
    )
    inputs = [(name, by_name[name]) for name in BIG_INPUTS] + [("nets-1mb", megabyte.encode())]
    for name, data in inputs:
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(data)
        script = (
            "import sys, time\n"
            "from reconciler.cli.main import main\n"
            "t = time.perf_counter()\n"
            f"code = main(['--validate', {str(path)!r}, '--no-cache'])\n"
            "elapsed = time.perf_counter() - t\n"
            # this process's own peak (VmHWM): ru_maxrss survives exec, so a
            # child forked from a big test process would report the parent's
            "rss = next(int(line.split()[1]) for line in open('/proc/self/status')"
            " if line.startswith('VmHWM:'))\n"
            "print(f'RESULT {code} {elapsed} {rss}', file=sys.stderr)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
            cwd=ROOT, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        )  # fmt: skip
        result = [line for line in done.stderr.splitlines() if line.startswith("RESULT")]
        assert result, (name, done.stderr[-1000:])
        _, code, elapsed, rss_kb = result[0].split()
        assert code in ("0", "1"), name
        assert float(elapsed) < RUNAWAY_SECONDS, (name, elapsed)
        assert int(rss_kb) < 200 * 1024, (name, rss_kb)
