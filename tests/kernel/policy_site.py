"""A sandbox node for policy tests with real traffic: its pods, each with
its WorkloadEndpoint under the namespace's open profile, and the test's
own config files (test_policy_bypass.Site drives it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox.netns import Pod, Sandbox
from tests.kernel.conftest import KNS_SHOP, WEP
from tests.kernel.test_policy_bypass import Site

# Felix with the eBPF dataplane on the sandbox's data interface.
FELIX = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  bpfEnabled: true
  bpfDataIfacePattern: "^eth"
"""


@contextmanager
def sandbox_site(tmp: Path, pods: tuple[Pod, ...], files: dict[str, str]) -> Iterator[Site]:
    """The node up with `pods`, its config written (nothing applied yet);
    torn down on the way out, also on failure."""
    sandbox = Sandbox()
    try:
        sandbox.up(pods)
        site = Site(sandbox, tmp / "config", tmp / "state")
        site.config.mkdir()
        for pod in pods:
            (site.config / f"wep-{pod.name}.yaml").write_text(WEP.format(name=pod.name, ip=pod.ip))
        (site.config / "profile.yaml").write_text(KNS_SHOP)
        for name, text in files.items():
            (site.config / name).write_text(text)
        yield site
    finally:
        sandbox.down()
