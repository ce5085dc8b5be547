"""Diagnostics: what validation reports, accumulated rather than raised."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.config.safe_tree import NOT_READ

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


NO_RESOURCE = "-"  # a problem before any resource (YAML syntax, a file, the source)
WHOLE = frozenset({"(document)", "(file)", "(source)"})  # no one field


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
        an escape sequence in a name from the config) are shown escaped. A
        problem of no one resource or field leaves those out of the text
        (JSON keeps the placeholders)."""
        prefix = "" if self.severity is Severity.ERROR else f"{self.severity.value}: "
        # a problem of the whole source has no line: its "file" names the source
        where = self.file if self.path == "(source)" else f"{self.file}:{self.line}"
        return printable(f"{where}: {self.located(prefix + self.message)}")

    @property
    def has_resource(self) -> bool:
        return self.resource != NO_RESOURCE

    @property
    def has_field(self) -> bool:
        return self.path not in WHOLE

    def located(self, text: str, resource: bool = True) -> str:
        """`text` after the resource (unless not `resource`) and the field it
        is about, leaving out the placeholders of a problem of no one
        resource or field: "Kind/name: spec.x: text", or "text" alone."""
        where = [self.resource] if resource and self.has_resource else []
        where += [self.path] if self.has_field else []
        return "".join(f"{part}: " for part in where) + text

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "resource": self.resource,
            "path": self.path,
            "message": self.message,
            "severity": self.severity.value,
        }


def empty_source(description: str, opt_in: str) -> Diagnostic:
    """A source with no configuration file at all (a mistyped or empty
    directory, a tree of files the walk skips): nothing was validated, so it
    is not valid; `opt_in` says how to mean it ("pass --allow-empty")."""
    return Diagnostic(description, 1, NO_RESOURCE, "(source)",
                      "holds no configuration file (*.yaml, *.yml): nothing was validated; "
                      f"{opt_in} if that is meant")  # fmt: skip


def not_read(path: str) -> Diagnostic:
    """A note at a file a directory or commit holds but reconcile does not
    read (reconciler.config.source.Source.unread): what it defines is not
    applied, so a plan would remove it from the node."""
    return Diagnostic(path, 1, NO_RESOURCE, "(file)", NOT_READ, Severity.NOTE)
