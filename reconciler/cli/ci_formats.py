"""`--validate` reports for CI systems: JUnit XML, SARIF 2.1.0, GitHub annotations.

Each takes every file that was validated (a file without findings is a
passing test case in JUnit) and the diagnostics. Notes (documents left
unvalidated) are SARIF notes and GitHub notices; JUnit leaves them out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from reconciler.config.diagnostics import Diagnostic, Severity
from reconciler.config.source import STDIN_SHOWN

# No file to annotate: a problem of the source itself, or standard input.
NO_FILES = frozenset({"-", STDIN_SHOWN})

TOOL = "reconcile"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

# One SARIF rule per kind of finding; the message carries the detail.
_RULES = {
    Severity.ERROR: ("invalid-config", "The configuration is invalid: Calico would refuse it."),
    Severity.WARNING: ("questionable-config", "Valid, but probably not what was meant."),
    Severity.NOTE: ("not-validated", "A document or field reconcile does not validate or act on."),
}


def _by_file(diagnostics: Sequence[Diagnostic]) -> dict[str, list[Diagnostic]]:
    out: dict[str, list[Diagnostic]] = {}
    for d in diagnostics:
        out.setdefault(d.file, []).append(d)
    return out


def render_junit(files: Sequence[str], diagnostics: Sequence[Diagnostic]) -> str:
    """One test case per validated file; a file with errors fails, with
    every error in its failure's text and its warnings as system-out."""
    by_file = _by_file(diagnostics)
    names = sorted(set(files) | set(by_file))
    failing = [f for f in names if any(d.severity is Severity.ERROR for d in by_file.get(f, ()))]
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="{TOOL}" tests="{len(names)}" failures="{len(failing)}" errors="0">',
        f'  <testsuite name="{TOOL} --validate" tests="{len(names)}" '
        f'failures="{len(failing)}" errors="0" skipped="0">',
    ]
    for name in names:
        diags = by_file.get(name, [])
        errs = [d for d in diags if d.severity is Severity.ERROR]
        warns = [d for d in diags if d.severity is Severity.WARNING]
        out.append(f'    <testcase classname="validate" name={quoteattr(name)}>')
        if errs:
            body = escape("\n".join(d.render() for d in errs))
            message = f"{len(errs)} error(s): {errs[0].message}"
            out.append(f"      <failure message={quoteattr(message)}>{body}</failure>")
        if warns:
            out.append(
                f"      <system-out>{escape(chr(10).join(d.render() for d in warns))}</system-out>"
            )
        out.append("    </testcase>")
    out += ["  </testsuite>", "</testsuites>"]
    return "\n".join(out) + "\n"


def _uri(path: str, base: str) -> str:
    """A file as SARIF wants it, a URI reference: relative to the working
    directory when inside it, else a file URI; percent-encoded either way
    (a `#` or `%` in a name is the name's, not a fragment or an escape)."""
    rel = os.path.relpath(path, base) if os.path.isabs(path) else path
    if rel.startswith(".."):
        return Path(os.path.abspath(path)).as_uri()
    return quote(rel.replace(os.sep, "/"))


def sarif_log(diagnostics: Sequence[Diagnostic], base: str | None = None) -> dict[str, Any]:
    base = base or os.getcwd()
    ids = {severity: i for i, severity in enumerate(_RULES)}
    results = []
    for d in diagnostics:
        rule_id, _ = _RULES[d.severity]
        location: dict[str, Any] = {}
        if d.file not in NO_FILES:
            location["physicalLocation"] = {
                "artifactLocation": {"uri": _uri(d.file, base)},
                "region": {"startLine": max(1, d.line)},
            }
        if d.has_resource or d.has_field:
            # the placeholders of a problem of no one resource or field are no place
            name = d.path if d.has_field else d.resource
            full = "/".join(p for p, real in ((d.resource, d.has_resource), (d.path, d.has_field))
                            if real)  # fmt: skip
            location["logicalLocations"] = [{"name": name, "fullyQualifiedName": full}]
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": ids[d.severity],
            "level": d.severity.value,
            "message": {"text": d.located(d.message)},
        }
        if location:
            result["locations"] = [location]
        results.append(result)
    rules = [
        {
            "id": rule_id,
            "shortDescription": {"text": text},
            "defaultConfiguration": {"level": severity.value},
        }
        for severity, (rule_id, text) in _RULES.items()
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL,
                        "informationUri": "https://docs.tigera.io/calico",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands: one annotation per finding."""
    command = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTE: "notice"}
    lines = []
    for d in diagnostics:
        # a problem of no one resource (YAML syntax, an unreadable file) is
        # titled by the tool; one of no file is annotated on none
        props = [] if d.file in NO_FILES else [f"file={_escape_property(d.file)}", f"line={d.line}"]
        props.append(f"title={_escape_property(d.resource if d.has_resource else TOOL)}")
        text = d.located(d.message, resource=False)
        if d.file == STDIN_SHOWN and d.line > 0:  # no file to point into: the line in the stream
            text = f"{STDIN_SHOWN}:{d.line}: {text}"
        text = _escape_data(text)
        lines.append(f"::{command[d.severity]} {','.join(props)}::{text}")
    return "".join(line + "\n" for line in lines)
