"""Diagnostics: what validation reports, accumulated rather than raised."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"  # not a problem: a document left unvalidated, a field not enforced


def printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def format_path(path: Sequence[PathPart]) -> str:
    """Render ('spec', 'ingress', 0, 'action') as 'spec.ingress[0].action'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(document)"


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found inside one resource, before its line is known."""

    path: Path
    message: str
    severity: Severity = Severity.ERROR


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A located problem: `file:line: Kind/name: field.path: message`."""

    file: str
    line: int
    resource: str
    path: str
    message: str
    severity: Severity = Severity.ERROR

    def render(self) -> str:
        """One line of text: characters that are not printable (a newline,
        an escape sequence in a name from the config) are shown escaped."""
        prefix = "" if self.severity is Severity.ERROR else f"{self.severity.value}: "
        return printable(
            f"{self.file}:{self.line}: {self.resource}: {self.path}: {prefix}{self.message}"
        )

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "resource": self.resource,
            "path": self.path,
            "message": self.message,
            "severity": self.severity.value,
        }
