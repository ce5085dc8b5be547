"""--explain's text: the deciding rule per endpoint, the verdict, and for an
ICMP error the note that conntrack, not the rules, passes errors about
allowed flows."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from tests.unit.test_error_paths import FELIX, WEB

POLICY = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: shop}
spec:
  selector: app == 'web'
  ingress:
  - action: Allow
    protocol: TCP
    destination: {ports: [80]}
"""


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "all.yaml").write_text("---\n".join([FELIX, WEB, POLICY]))
    return tmp_path / "cfg"


def explain(capsys: pytest.CaptureFixture[str], cfg: Path, dst: str) -> str:
    code = main(["--explain", "--from", "192.0.2.9", "--to", dst, "--config", str(cfg),
                 "--node", "n1", "--no-cache"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.mark.parametrize(
    "icmp_type,kind",
    [(3, "destination unreachable"), (11, "time exceeded"), (12, "parameter problem")],
)
def test_an_icmp_error_is_explained_with_the_related_note(capsys, cfg, icmp_type, kind):
    lines = explain(capsys, cfg, f"web:{icmp_type}/icmp").splitlines()
    assert lines[0] == "shop/web ingress: Deny by tier/default default action (tier default)"
    assert lines[1].startswith("  compiled program ") and lines[1].endswith(" agrees: yes")
    assert lines[2:] == [
        "Verdict: Deny",
        f"Note: ICMP type {icmp_type} ({kind}) is an error about another flow. One that quotes "
        "a flow policy allowed passes as related to it, whatever the rules say; the verdict "
        "above is for one that quotes no tracked flow.",
    ]


@pytest.mark.parametrize("dst", ["web:8/icmp", "web:0/icmp", "web:80/tcp", "web:3/udp"])
def test_other_flows_have_no_note(capsys, cfg, dst):
    out = explain(capsys, cfg, dst)
    assert "Note:" not in out
    assert out.endswith("Verdict: Allow\n" if dst == "web:80/tcp" else "Verdict: Deny\n")
