"""A workload may send from at most as many IPv4 networks as the datapath
checks (8, adjacent ones merged). Its ipNetworks alone over that are refused
by --validate (and so the pre-receive hook) at the field; with the spoofing
allowances a node honours (workloadSourceSpoofing: Any) the plan refuses
it, at the field that adds the one too many."""

from __future__ import annotations

from reconciler.cli.main import main
from reconciler.compile import config_limits
from reconciler.config import endpoint_networks
from reconciler.config.felix import DEFAULTS
from reconciler.datapath.maps import iface_types
from tests.unit.test_validate_cli import repo, write  # noqa: F401 - the fixture
from tests.unit.test_workload_source import felix, res

APART = [f"10.66.{2 * i + 1}.0/32" for i in range(9)]
WEP = """\
apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata: {{name: frontend-0, namespace: shop}}
spec:
  node: node-1
  interfaceName: cali-front0
  ipNetworks: [{nets}]
"""
TOO_MANY = (
    "9 IPv4 networks to send from (ipNetworks, adjacent ones merged); the datapath checks at "
    "most 8 per workload: list at most 8 (one wider prefix covers several)"
)


def test_the_limit_is_the_datapaths() -> None:
    assert endpoint_networks.WEP_NETS == iface_types.WEP_NETS


def test_validate_refuses_nine_networks_at_the_field(repo, capsys) -> None:  # noqa: F811
    path = write(repo, "weps.yaml", WEP.format(nets=", ".join(APART)))
    assert main(["--validate", str(repo)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:7: WorkloadEndpoint/shop/frontend-0: spec.ipNetworks: {TOO_MANY}" in out, out


def test_validate_counts_adjacent_networks_once(repo, capsys) -> None:  # noqa: F811
    row = [f"10.65.1.{10 + i}/32" for i in range(11)]  # four networks once merged
    v6 = [f"fd00::{i}/128" for i in range(9)]  # never in rcl_wep_src
    write(repo, "weps.yaml", WEP.format(nets=", ".join(f"'{n}'" for n in row + v6)))
    assert main(["--validate", str(repo)]) == 0, capsys.readouterr().out


def wep(nets: list[str], spoofed: list[str], node: str = "n1"):
    spec = {"node": node, "interfaceName": "cali-a", "ipNetworks": nets,
            "allowSpoofedSourcePrefixes": spoofed}  # fmt: skip
    return res("WorkloadEndpoint", "a", spec, "shop")


def test_a_plan_counts_the_spoofing_allowances_its_node_honours() -> None:
    five, four = APART[:5], APART[5:]
    resources = [felix(workloadSourceSpoofing="Any"), wep(five, four)]
    config = {**DEFAULTS, "workloadSourceSpoofing": "Any"}
    assert config_limits.problems(resources, "n1", config) == [
        "f.yaml:1: WorkloadEndpoint/shop/a: spec.allowSpoofedSourcePrefixes: 9 IPv4 networks "
        "to send from (ipNetworks and allowSpoofedSourcePrefixes, adjacent ones merged); the "
        "datapath checks at most 8 per workload: list at most 8 (one wider prefix covers several)"
    ]
    assert config_limits.problems(resources, "n2", config) == []  # not this node's workload
    assert config_limits.problems(resources, "n1", DEFAULTS) == []  # the allowances are ignored
