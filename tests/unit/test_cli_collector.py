"""One-shot runs leave the cyclic collector off when the process exits right after."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.main import main

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80, protocol: TCP}]}
"""


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


@pytest.mark.usefixtures("collector_on")
@pytest.mark.parametrize(("exiting", "after"), [(False, True), (True, False)])
def test_collector_after_a_run(tmp_path: Path, exiting: bool, after: bool) -> None:
    (tmp_path / "svc.yaml").write_text(SERVICE)
    assert main(["--validate", str(tmp_path), "--no-cache"], exiting=exiting) == 0
    assert gc.isenabled() is after
