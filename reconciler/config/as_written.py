"""Findings in the words of the file where YAML 1.1 (kubectl, calicoctl)
and the loader's YAML 1.2 read a plain scalar differently.

`written` maps a path in a document to the plain scalar's text there, as the
loader noted it: a float (told as written, `1e3`, not as `1000.0`) and a
word Go's yaml reads as a boolean (`yes`, `on`, `N`...), which the loader
keeps as a string. Such a word where the field takes a string is refused:
kubectl and calicoctl read a boolean there and refuse the document, so the
cluster would never hold what this node enforces. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.config.diagnostics import Finding, Path
from reconciler.config.yaml11 import GO_BOOLEAN_WORDS
from reconciler.config.yaml_words import flow


def _replaced(body: Any, path: Path, value: Any) -> Any:
    """A copy of `body` with `value` at `path` (copied along the path only)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(body, Mapping) and head in body:
        return {**body, head: _replaced(body[head], rest, value)}
    if isinstance(body, list) and isinstance(head, int) and 0 <= head < len(body):
        return [*body[:head], _replaced(body[head], rest, value), *body[head + 1 :]]
    return body


def boolean_words(
    body: Mapping[str, Any],
    written: Mapping[Path, str],
    told: set[Path],
    check: Callable[[Any], list[Finding]],
) -> list[Finding]:
    """A finding for each YAML 1.1 boolean word at a path not `told` of
    already whose field refuses the boolean YAML 1.1 reads (`check`: the
    document's schema findings)."""
    out = []
    for path, text in written.items():
        if text not in GO_BOOLEAN_WORDS or path in told:
            continue
        as_bool = text.lower() in ("y", "yes", "on")
        if any(f.path == path for f in check(_replaced(body, path, as_bool))):
            out.append(Finding(path, (
                f"{text} is the boolean {'true' if as_bool else 'false'} to kubectl and "
                f"calicoctl (YAML 1.1), which refuse it here, but the string {text!r} here "
                f'(YAML 1.2): quote it, "{text}", for the string')))  # fmt: skip
    return out


def in_written_words(
    finding: Finding, body: Mapping[str, Any], written: Mapping[Path, str]
) -> Finding:
    """The finding with a float it begins with shown as written."""
    text = written.get(finding.path)
    if text is None or text in GO_BOOLEAN_WORDS:
        return finding
    value: Any = body
    for part in finding.path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return finding
    shown = flow(value)
    if type(value) is not float or not finding.message.startswith(shown):
        return finding
    return Finding(finding.path, text + finding.message[len(shown) :], finding.severity)
