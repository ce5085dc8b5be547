"""Load YAML documents into Resources, keeping the line of every node.

Bulk loading must be fast (thousands of documents per second per core), so we
use libyaml through ruamel.yaml's C parser to compose node trees (which carry
marks) and build plain values plus a path -> line table in a single walk of
our own. Scalars are resolved here with YAML 1.2 core-schema rules, as
ruamel.yaml does by default (so `yes` stays a string).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from _ruamel_yaml import CParser
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.config.diagnostics import Diagnostic, Path, Severity, format_path
from reconciler.config.model import CALICO_ONLY_KINDS, KINDS, NAMESPACED_KINDS, Resource

# An alias may be expanded many times; cap what one document can grow to.
MAX_NODES_PER_DOCUMENT = 100_000
MAX_DEPTH = 64

_PLAIN = "rcl:plain"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"

_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")


class _Composer(CParser):
    """libyaml composer that defers plain-scalar typing to our walk."""

    def descend_resolver(self, *_: object) -> None:
        pass

    def ascend_resolver(self, *_: object) -> None:
        pass

    def resolve(self, kind: type, value: object, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        return _SEQ if kind is SequenceNode else _MAP


class LoadError(Exception):
    """A problem inside one document, with the line it was found at."""

    def __init__(self, line: int, message: str, path: Path = ()) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path


def resolve_plain(text: str) -> Any:
    """Type a plain (unquoted) scalar by the YAML 1.2 core schema."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT.match(text):
            return int(text)
        if _FLOAT.match(text):
            return float(text)
        if _INF.match(text):
            return -math.inf if first == "-" else math.inf
        if _NAN.match(text):
            return math.nan
        if _OCT.match(text):
            return int(text[2:], 8)
        if _HEX.match(text):
            return int(text[2:], 16)
    return text


_OWN_TAGS = frozenset({_PLAIN, _STR, _SEQ, _MAP})


def _tag(node: Node) -> Any:
    """A node's tag. `node.tag` renders ruamel's Tag object, URI-decoding it,
    on every call: a quarter of a cold validation. Tags our resolver gave
    (no handle, a suffix of ours) are used as they are."""
    ctag = node.ctag
    if ctag is not None and ctag.handle is None and ctag.suffix in _OWN_TAGS:
        return ctag.suffix
    return node.tag


def _scalar(node: ScalarNode) -> Any:
    tag = _tag(node)
    if tag == _PLAIN:
        return resolve_plain(node.value)
    if tag == _STR:
        return node.value
    short = str(tag).rsplit(":", 1)[-1]
    if short in ("int", "float", "bool", "null"):
        value = resolve_plain(node.value)
        want: Any = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}[short]
        if isinstance(value, want):
            return float(value) if short == "float" else value
        raise LoadError(node.start_mark.line + 1, f"value {node.value!r} is not a valid !!{short}")
    raise LoadError(node.start_mark.line + 1, f"unsupported YAML tag {tag!r}")


class _Builder:
    """Turns one composed document into plain values and a line table."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}
        self.budget = MAX_NODES_PER_DOCUMENT

    def build(self, node: Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise LoadError(
                node.start_mark.line + 1,
                f"document expands to more than {MAX_NODES_PER_DOCUMENT} nodes (YAML alias bomb?)",
            )
        if len(path) > MAX_DEPTH:
            raise LoadError(node.start_mark.line + 1, f"nesting deeper than {MAX_DEPTH} levels")
        if isinstance(node, ScalarNode):
            return _scalar(node)
        if isinstance(node, SequenceNode):
            items = []
            for index, child in enumerate(node.value):
                child_path = (*path, index)
                self.lines[child_path] = child.start_mark.line + 1
                items.append(self.build(child, child_path))
            return items
        assert isinstance(node, MappingNode)
        return self._mapping(node, path)

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise LoadError(line, "mapping keys must be scalars", path)
            if _tag(key_node) == _MAP or key_node.value == "<<" and _tag(key_node) == _PLAIN:
                raise LoadError(line, "YAML merge keys ('<<') are not supported", path)
            key = key_node.value
            if key in out:
                first = self.lines.get((*path, key), line)
                raise LoadError(
                    line, f"duplicate key {key!r} (first defined at line {first})", (*path, key)
                )
            child_path = (*path, key)
            self.lines[child_path] = line
            out[key] = self.build(value_node, child_path)
        return out


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one file yielded: its resources and the problems met on the way."""

    resources: tuple[Resource, ...]
    diagnostics: tuple[Diagnostic, ...]


def _documents(data: bytes | str) -> Iterator[Node]:
    parser = _Composer(data)
    while parser.check_node():
        yield parser.get_node()


def _kind_hint(kind: str, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(kind, KINDS, n=1, cutoff=cutoff)
    return f"; did you mean {close[0]!r}?" if close else ""


class ForeignDocument(Exception):
    """A document that is not ours to validate (a Deployment, a Kustomization,
    Helm values): reported as a note, which --skip-kinds silences and
    --strict-kinds makes an error."""

    def __init__(self, line: int, ref: str, message: str) -> None:
        super().__init__(message)
        self.line, self.ref, self.message = line, ref, message


def _is_calico(api_version: object) -> bool:
    return isinstance(api_version, str) and api_version.split("/")[0].endswith("projectcalico.org")


def _check_kind(body: dict[str, Any], kind: str, line: int, lines: dict[Path, int]) -> None:
    """Raise for a kind we do not read: an error where it looks like a typo
    of ours, a ForeignDocument where it is somebody else's."""
    at = lines.get(("kind",), line)
    api_version = body.get("apiVersion")
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    ref = f"{kind}/{name}" if isinstance(name, str) else kind
    if _is_calico(api_version) and kind in CALICO_ONLY_KINDS:
        raise ForeignDocument(
            at, ref, f"{kind} is a Calico kind this node does not act on: accepted, not enforced"
        )
    if _is_calico(api_version) or _kind_hint(kind, 0.8):
        expected = ", ".join(sorted(KINDS))
        raise LoadError(
            at, f"unknown kind {kind!r} (expected one of {expected}){_kind_hint(kind)}", ("kind",)
        )
    raise ForeignDocument(
        at,
        ref,
        f"not validated: {kind} ({api_version or 'no apiVersion'}) is not a kind reconcile reads",
    )


def _list_items(
    body: dict[str, Any], lines: dict[Path, int]
) -> list[tuple[Any, int, dict[Path, int]]] | None:
    """The items of a `kind: List` or calicoctl `<Kind>List` document, each
    with its line and its own line table; None if `body` is not a list."""
    kind, items = body.get("kind"), body.get("items")
    if not isinstance(kind, str) or not kind.endswith("List") or not isinstance(items, list):
        return None
    single = kind[: -len("List")]
    tables: list[dict[Path, int]] = [{} for _ in items]
    for path, line in lines.items():
        if len(path) > 2 and path[0] == "items" and isinstance(path[1], int):
            tables[path[1]][path[2:]] = line
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and single in KINDS:
            # calicoctl's lists may leave kind and apiVersion to the list.
            item = {"apiVersion": body.get("apiVersion"), "kind": single, **item}
        out.append((item, lines.get(("items", i), 1), tables[i]))
    return out


def _resource_from(body: Any, file: str, line: int, lines: dict[Path, int]) -> Resource:
    if not isinstance(body, dict):
        shape = "a list" if isinstance(body, list) else type(body).__name__
        raise LoadError(
            line, f"a document must be a mapping (a Kubernetes-style object), not {shape}"
        )
    kind = body.get("kind")
    if not any(k in body for k in ("apiVersion", "kind", "metadata")):
        raise ForeignDocument(
            line, "-", "not validated: not a Kubernetes object (no apiVersion or kind)"
        )
    if not isinstance(kind, str) or not kind:
        raise LoadError(lines.get(("kind",), line), "missing 'kind'", ("kind",))
    if kind not in KINDS:
        _check_kind(body, kind, line, lines)
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    if kind in NAMESPACED_KINDS and namespace is None:
        namespace = "default"  # as calicoctl and kubectl do
    return Resource(
        kind=kind,
        name=name if isinstance(name, str) else "<unnamed>",
        namespace=namespace if isinstance(namespace, str) and kind in NAMESPACED_KINDS else None,
        body=body,
        file=file,
        line=line,
        lines=lines,
    )


def load(data: bytes | str, file: str) -> Loaded:
    """Parse every document of one file; never raises for bad input."""
    resources: list[Resource] = []
    diagnostics: list[Diagnostic] = []
    docs = _documents(data)
    while True:
        try:
            node = next(docs)
        except StopIteration:
            break
        except (MarkedYAMLError, YAMLError) as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            line = mark.line + 1 if mark is not None else 1
            diagnostics.append(Diagnostic(file, line, "-", "(document)", f"YAML syntax: {problem}"))
            break  # the parser cannot resynchronise after a syntax error
        line = node.start_mark.line + 1
        if isinstance(node, ScalarNode) and _tag(node) == _PLAIN and node.value in _NULL:
            continue  # empty document, e.g. a trailing '---'
        builder = _Builder()
        try:
            body = builder.build(node, ())
            items = _list_items(body, builder.lines) if isinstance(body, dict) else None
            documents = items if items is not None else [(body, line, builder.lines)]
        except LoadError as err:
            diagnostics.append(
                Diagnostic(file, err.line, _ref_guess(node), _path_text(err.path), err.message)
            )
            continue
        prefix: Path = ("items",) if items is not None else ()
        for i, (doc, doc_line, doc_lines) in enumerate(documents):
            try:
                resources.append(_resource_from(doc, file, doc_line, doc_lines))
            except LoadError as err:
                where = (*prefix, i, *err.path) if items is not None else err.path
                ref = _ref_of(doc) if items is not None else _ref_guess(node)
                diagnostics.append(Diagnostic(file, err.line, ref, _path_text(where), err.message))
            except ForeignDocument as note:
                diagnostics.append(
                    Diagnostic(file, note.line, note.ref, "kind", note.message, Severity.NOTE)
                )
    return Loaded(tuple(resources), tuple(diagnostics))


def _ref_of(doc: Any) -> str:
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return "-"
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{doc['kind']}/{name}" if isinstance(name, str) else str(doc["kind"])


def _path_text(path: Path) -> str:
    return format_path(path)


def _ref_guess(node: Node) -> str:
    """Best-effort Kind/name for a document we could not build."""
    if not isinstance(node, MappingNode):
        return "-"
    kind = name = None
    for key, value in node.value:
        if isinstance(key, ScalarNode) and isinstance(value, ScalarNode) and key.value == "kind":
            kind = value.value
        if (
            isinstance(key, ScalarNode)
            and key.value == "metadata"
            and isinstance(value, MappingNode)
        ):
            for k2, v2 in value.value:
                if isinstance(k2, ScalarNode) and k2.value == "name" and isinstance(v2, ScalarNode):
                    name = v2.value
    if kind is None:
        return "-"
    return f"{kind}/{name}" if name else str(kind)
