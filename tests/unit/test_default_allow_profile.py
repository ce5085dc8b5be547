"""Calico's built-in profile projectcalico-default-allow exists whether or
not the repository writes it (libcalico-go provides it): a host endpoint
calico-kube-controllers made, exported as it is, allows all traffic its
policies leave to the profiles. A Profile of that name written in the
repository is used instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main

HEP = """\
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {bpfEnabled: true, bpfEnforceRPF: Disabled}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: node-1-auto-hep
  labels: {projectcalico.org/created-by: calico-kube-controllers}
spec:
  node: node-1
  interfaceName: "*"
  expectedIPs: [192.168.50.1]
  profiles: [projectcalico-default-allow]
"""

WRITTEN = """\
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {name: projectcalico-default-allow}
spec:
  ingress: [{action: Deny}]
  egress: [{action: Allow}]
"""


def explain(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, flow: tuple[str, str]):
    (tmp_path / "a.yaml").write_text(text)
    capsys.readouterr()
    rc = main(["--explain", "--config", str(tmp_path), "--node", "node-1", "--no-cache",
               "--from", flow[0], "--to", flow[1]])  # fmt: skip
    return rc, capsys.readouterr().out


@pytest.mark.parametrize(
    "flow, line",
    [
        (("192.168.50.2", "192.168.50.1:9100/TCP"), "node-1-auto-hep ingress (to the host): Allow "
         "by profile/projectcalico-default-allow ingress rule 1 (tier profiles)"),
        (("192.168.50.1", "192.168.50.2:443/TCP"), "node-1-auto-hep egress (from the host): Allow "
         "by profile/projectcalico-default-allow egress rule 1 (tier profiles)"),
    ],
)  # fmt: skip
def test_the_built_in_profile_allows_both_ways_unwritten(tmp_path, capsys, flow, line):
    rc, out = explain(tmp_path, capsys, HEP, flow)
    assert rc == 0 and line in out and "Verdict: Allow" in out, out


def test_a_written_profile_of_that_name_is_used_instead(tmp_path, capsys):
    rc, out = explain(tmp_path, capsys, HEP + WRITTEN, ("192.168.50.2", "192.168.50.1:9100/TCP"))
    assert "Deny by profile/projectcalico-default-allow ingress rule 1" in out, out
    assert "Verdict: Deny" in out, out
