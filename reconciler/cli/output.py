"""Output that --validate shares with the other modes: diagnostics as text
and any document as JSON. Apart from reconciler.cli.render, whose plan
rendering needs the plan and datapath modules that --validate never loads
(bench/validate_bench.py's warm re-validation)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.config.diagnostics import Diagnostic


def render_diagnostics(diagnostics: Iterable[Diagnostic]) -> str:
    return "".join(d.render() + "\n" for d in diagnostics)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
