"""Load YAML documents into Resources, keeping the line of every node.

Bulk loading must be fast (thousands of documents per second per core), so we
take libyaml's events through ruamel.yaml's C parser and build plain values
plus a path -> line table in one loop of our own, with an explicit stack: no
input can make it recurse, and every limit of reconciler.config.limits is checked
as the events arrive, before more work is spent. Scalars are resolved here
with YAML 1.2 core-schema rules, as ruamel.yaml does by default (so `yes` stays a string).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from _ruamel_yaml import CParser
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from reconciler.config import converted_kinds, yaml11
from reconciler.config.diagnostics import Diagnostic, Path, Severity, format_path
from reconciler.config.limits import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_INT,
    MAX_INT_DIGITS,
    MAX_LIST_ITEMS,
    MAX_NODES_PER_FILE,
    MAX_SCALAR_BYTES,
    MIN_INT,
    human_bytes,
)
from reconciler.config.model import CALICO_API, CALICO_ONLY_KINDS, KINDS, NAMESPACED_KINDS, Resource

_PLAIN = "rcl:plain"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"

_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_KEYWORDS = _NULL | _TRUE | _FALSE | yaml11.GO_BOOLEAN_WORDS
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(nan|NaN|NAN)\Z")


class LoadError(Exception):
    """A problem inside one document, with the line it was found at."""

    def __init__(self, line: int, message: str, path: Path = (), fatal: bool = False) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.path = path
        self.fatal = fatal  # the rest of the file is not read


def _integer(literal: str, base: int) -> int:
    """An integer literal (0o or 0x before the digits of base 8 or 16),
    refused (ValueError) outside int64 before a long literal costs a
    quadratic conversion."""
    digits = literal if base == 10 else literal[2:]
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError(f"integer {literal[:20]}... is out of range (more than 64 bits)")
    value = int(digits, base)
    if not MIN_INT <= value <= MAX_INT:
        raise ValueError(f"integer {literal} is out of range (more than 64 bits)")
    return value


def resolve_plain(text: str) -> Any:
    """Type a plain (unquoted) scalar by the YAML 1.2 core schema. Raises
    ValueError for an integer that does not fit 64 bits."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    first = text[0]
    if first.isdigit() or first in "+-.":
        if _INT.match(text):
            return _integer(text, 10)
        if _FLOAT.match(text):
            return float(text)
        if _INF.match(text):
            return -math.inf if first == "-" else math.inf
        if _NAN.match(text):
            return math.nan
        if _OCT.match(text):
            return _integer(text, 8)
        if _HEX.match(text):
            return _integer(text, 16)
    return text


class _Frame:
    """An open collection: the value being filled, its path, and for a
    mapping the key waiting for its value."""

    __slots__ = ("anchor", "is_map", "key", "path", "start", "value")

    def __init__(self, value: Any, path: Path, anchor: str | None, start: int) -> None:
        self.value = value
        self.path = path
        self.is_map = isinstance(value, dict)
        self.key: str | None = None
        self.anchor = anchor
        self.start = start


def _plain(text: str, line: int) -> Any:
    """resolve_plain, refusing a number calicoctl's YAML 1.1 reads otherwise."""
    value = resolve_plain(text)
    misread = yaml11.misread(text, value)
    if misread is not None:
        raise LoadError(line, misread)
    return value


def _scalar(event: Any) -> Any:
    tag, text = event.tag, event.value
    line = event.start_mark.line + 1
    if len(text) > MAX_SCALAR_BYTES:
        raise LoadError(line, f"value is longer than {MAX_SCALAR_BYTES} characters")
    try:
        if tag is None or tag == "!":
            return _plain(text, line) if event.implicit[0] else text
        if tag == _STR:
            return text
        short = str(tag).rsplit(":", 1)[-1]
        if short in ("int", "float", "bool", "null"):
            value = _plain(text, line)
            want: Any = {"int": int, "float": (int, float), "bool": bool, "null": type(None)}[short]
            if isinstance(value, want):
                return float(value) if short == "float" else value
            raise LoadError(line, f"value {text!r} is not a valid !!{short}")
    except ValueError as exc:
        raise LoadError(line, str(exc)) from None
    raise LoadError(line, f"unsupported YAML tag {tag!r}")


def _scalar_path(top: _Frame | None) -> Path:
    """Where the scalar about to be stored under `top` goes: the key waiting
    in a mapping, the next index of a list, or the root."""
    if top is None:
        return ()
    if top.is_map:
        return (*top.path, top.key) if top.key is not None else top.path
    return (*top.path, len(top.value))


class _Builder:
    """Builds one document's values and path -> line table from parser
    events, with an explicit stack: nesting costs no recursion, so a deep
    document is refused at MAX_DEPTH instead of overflowing the C stack.
    `budget` is shared by the documents of a file: one list cell of values
    left, an alias costing the size of what it repeats."""

    def __init__(self, budget: list[int]) -> None:
        self.lines: dict[Path, int] = {}
        self.budget = budget
        self.root: Any = None
        self.root_line = 1
        self.done = False
        self.floats = False  # a float was read (validate checks such a resource strictly)
        # plain scalars YAML 1.1 reads otherwise than their value shows: a
        # float's text, a word that is a boolean to YAML 1.1 (validate's words)
        self.as_written: dict[Path, str] = {}
        self.anchors: dict[str, tuple[Any, int]] = {}

    def _spend(self, count: int, line: int) -> None:
        """Take `count` values from the budget; LoadError once it is overdrawn
        (the hot loop takes one itself and calls this with 0 to raise)."""
        self.budget[0] -= count
        if self.budget[0] < 0:
            raise LoadError(
                line,
                f"file expands to more than {MAX_NODES_PER_FILE} values (a YAML alias bomb?)",
                fatal=True,
            )

    def document(self, parser: Any) -> Any:
        """The document's value; consumes its events up to DocumentEndEvent.

        The common events (a plain key, a scalar that is plainly a string)
        take a short path inline; anything unusual goes through _key and
        _scalar, which hold every check and its message."""
        stack: list[_Frame] = []
        lines, budget, anchors = self.lines, self.budget, self.anchors
        get_event = parser.get_event
        top: _Frame | None = None
        while True:
            event = get_event()
            kind = type(event)
            if kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                top = stack[-1] if stack else None
                if frame.anchor is not None:
                    anchors[frame.anchor] = (frame.value, self.spent - frame.start)
                continue
            if kind is DocumentEndEvent:
                self.done = True
                return self.root
            line = event.start_mark.line + 1
            if top is not None and top.is_map and top.key is None:
                key = event.value if kind is ScalarEvent else None
                mapping = top.value
                if (
                    key is None
                    or key == "<<"
                    or len(key) > MAX_SCALAR_BYTES
                    or key in mapping
                    or len(mapping) >= MAX_LIST_ITEMS
                ):
                    self._key(top, event, kind, line)  # raises, or takes a quoted "<<"
                    continue
                budget[0] -= 1  # _spend(1), inlined: once per key of 10,000 resources
                if budget[0] < 0:
                    self._spend(0, line)
                top.key = key
                lines[(*top.path, key)] = line
                continue
            if kind is ScalarEvent:
                budget[0] -= 1
                if budget[0] < 0:
                    self._spend(0, line)
                text = event.value
                first = text[:1]
                if (
                    event.tag is None
                    and len(text) <= MAX_SCALAR_BYTES
                    and not (
                        event.implicit[0]
                        and (first.isdigit() or first in "+-." or text in _KEYWORDS)
                    )
                ):
                    value = text  # quoted, or plain and not a null, bool or number
                else:
                    try:
                        value = _scalar(event)
                    except LoadError as err:
                        raise LoadError(err.line, err.message, _scalar_path(top)) from None
                    if type(value) is float:
                        self.floats = True  # JSON Schema takes 80.0 for 80: a strict check follows
                        self.as_written[_scalar_path(top)] = text
                    elif event.implicit[0] and text in yaml11.GO_BOOLEAN_WORDS:
                        self.as_written[_scalar_path(top)] = text
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                collection = False
            elif kind is AliasEvent:
                found = anchors.get(event.anchor)
                if found is None:
                    raise LoadError(line, f"unknown alias '*{event.anchor}'")
                self._spend(found[1], line)
                value = copy.deepcopy(found[0])
                self.floats = True  # (what it repeats is not tracked: check strictly)
                collection = False
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    # fatal: libyaml takes time quadratic in the depth to skip the rest
                    raise LoadError(line, f"nesting deeper than {MAX_DEPTH} levels", fatal=True)
                budget[0] -= 1
                if budget[0] < 0:
                    self._spend(0, line)
                value = {} if kind is MappingStartEvent else []
                collection = True
            else:
                continue
            if top is None:
                path: Path = ()
                self.root, self.root_line = value, line
            elif top.is_map:
                key = top.key
                top.value[key] = value
                top.key = None
                if not collection:
                    continue  # its line is its key's, recorded with the key
                assert key is not None
                path = (*top.path, key)
            else:
                items = top.value
                if len(items) >= MAX_LIST_ITEMS:
                    raise LoadError(line, f"list has more than {MAX_LIST_ITEMS} items", top.path)
                path = (*top.path, len(items))
                lines[path] = line
                items.append(value)
            if collection:
                top = _Frame(value, path, event.anchor, self.spent - 1)
                stack.append(top)

    @property
    def spent(self) -> int:
        return MAX_NODES_PER_FILE - self.budget[0]

    def _key(self, frame: _Frame, event: Any, kind: type, line: int) -> None:
        if kind is not ScalarEvent:
            raise LoadError(line, "mapping keys must be plain scalars", frame.path)
        key = event.value
        if key == "<<" and event.tag is None and event.implicit[0]:
            raise LoadError(line, "YAML merge keys ('<<') are not supported", frame.path)
        if len(key) > MAX_SCALAR_BYTES:
            raise LoadError(line, f"key is longer than {MAX_SCALAR_BYTES} characters", frame.path)
        mapping = frame.value
        if key in mapping:
            first = self.lines.get((*frame.path, key), line)
            raise LoadError(
                line, f"duplicate key {key!r} (first defined at line {first})", (*frame.path, key)
            )
        if len(mapping) >= MAX_LIST_ITEMS:
            raise LoadError(line, f"mapping has more than {MAX_LIST_ITEMS} keys", frame.path)
        self._spend(1, line)
        frame.key = key
        self.lines[(*frame.path, key)] = line


@dataclass(frozen=True, slots=True)
class Loaded:
    """What one file yielded: its resources and the problems met on the way."""

    resources: tuple[Resource, ...]
    diagnostics: tuple[Diagnostic, ...]
    with_floats: frozenset[int] = frozenset()  # indices of resources holding a float
    # a resource's plain scalars YAML 1.1 reads otherwise, by index: path -> text
    as_written: Mapping[int, Mapping[Path, str]] = field(default_factory=dict)


def _kind_hint(kind: str, cutoff: float = 0.6) -> str:
    import difflib  # only to explain an unknown kind

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


# Network policy of Kubernetes' own APIs that this node does not enforce: a
# security resource, so an error (never a note a push could slip by with).
# The kinds it does read and convert are reconciler.config.converted_kinds'.
KUBERNETES_POLICY = {
    ("policy.networking.k8s.io", "ClusterNetworkPolicy"): "a projectcalico.org/v3 "
    "GlobalNetworkPolicy",
}


def _check_api_group(body: dict[str, Any], kind: str, line: int, lines: dict[Path, int]) -> None:
    """Raise for a kind that is ours by name but of another API: Kubernetes'
    network policy, or Calico's CRD storage group (crd.projectcalico.org)."""
    api_version = body.get("apiVersion")
    if not isinstance(api_version, str) or "/" not in api_version:
        return
    group = api_version.split("/")[0]
    at = lines.get(("apiVersion",), line)
    instead = KUBERNETES_POLICY.get((group, kind))
    unread = converted_kinds.unread_version(api_version, kind)
    if unread is not None:
        raise LoadError(at, unread, ("apiVersion",))
    if instead is not None:
        raise LoadError(
            at,
            f"{kind} of {api_version} is Kubernetes' network policy, which this node does not "
            f"enforce: write it as {instead} (or list the file in ignorePaths of .reconcile.yaml "
            "if something else enforces it)",
            ("apiVersion",),
        )
    if group == "crd.projectcalico.org":
        raise LoadError(
            at,
            f"{api_version} is the group Calico stores its resources in: write them as "
            f"{CALICO_API}, as calicoctl does",
            ("apiVersion",),
        )


def _check_kind(body: dict[str, Any], kind: str, line: int, lines: dict[Path, int]) -> None:
    """Raise for a kind we do not read: an error where it looks like a typo
    of ours, a ForeignDocument where it is somebody else's."""
    _check_api_group(body, kind, line, lines)
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
    if "apiVersion" not in body and "kind" not in body and "metadata" not in body:
        raise ForeignDocument(
            line, "-", "not validated: not a Kubernetes object (no apiVersion or kind)"
        )
    if not isinstance(kind, str) or not kind:
        raise LoadError(lines.get(("kind",), line), "missing 'kind'", ("kind",))
    # A converted kind (Kubernetes' NetworkPolicy shares its kind with
    # Calico's) is loaded under a kind of its own; validation converts it.
    converted = converted_kinds.converted(body.get("apiVersion"), kind)
    if converted is not None:
        kind = converted.kind
    elif kind not in KINDS:
        _check_kind(body, kind, line, lines)
    elif body.get("apiVersion") != KINDS[kind]:
        _check_api_group(body, kind, line, lines)
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    # A namespaced kind without one is refused by its schema (a config
    # repository names it; kubectl's "default" is not assumed), and named
    # without one meanwhile.
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    namespaced = converted.namespaced if converted is not None else kind in NAMESPACED_KINDS
    return Resource(
        kind=kind,
        name=name if isinstance(name, str) else "<unnamed>",
        namespace=namespace if isinstance(namespace, str) and namespaced else None,
        body=body,
        file=file,
        line=line,
        lines=lines,
    )


def _skip_document(parser: Any) -> None:
    """Consume the rest of a document that could not be built."""
    while type(parser.get_event()) is not DocumentEndEvent:
        pass


def _too_big(data: bytes | str, file: str) -> Loaded | None:
    size = len(data.encode() if isinstance(data, str) else data)
    if size <= MAX_FILE_BYTES:
        return None
    # (only the first MAX_FILE_BYTES + 1 bytes of a file are ever read: no size is claimed)
    message = f"file is more than the limit of {human_bytes(MAX_FILE_BYTES)}"
    return Loaded((), (Diagnostic(file, 1, "-", "(file)", message),))


def load(data: bytes | str, file: str) -> Loaded:
    """Parse every document of one file; never raises for bad input."""
    too_big = _too_big(data, file)
    if too_big is not None:
        return too_big
    resources: list[Resource] = []
    diagnostics: list[Diagnostic] = []
    with_floats: set[int] = set()
    as_written: dict[int, Mapping[Path, str]] = {}
    parser = CParser(data)
    budget = [MAX_NODES_PER_FILE]
    try:
        while True:
            event = parser.get_event()
            if type(event) is StreamEndEvent:
                break
            if type(event) is not DocumentStartEvent:
                continue
            builder = _Builder(budget)
            try:
                body = builder.document(parser)
                if body is None:
                    continue  # empty document, e.g. a trailing '---'
                items = _list_items(body, builder.lines) if isinstance(body, dict) else None
            except LoadError as err:
                ref = _ref_guess(builder.root)
                diagnostics.append(
                    Diagnostic(file, err.line, ref, _path_text(err.path), err.message)
                )
                if err.fatal:
                    break
                if not builder.done:
                    _skip_document(parser)
                continue
            documents = items if items is not None else [(body, builder.root_line, builder.lines)]
            prefix: Path = ("items",) if items is not None else ()
            for i, (doc, doc_line, doc_lines) in enumerate(documents):
                try:
                    resources.append(_resource_from(doc, file, doc_line, doc_lines))
                    if builder.floats:
                        with_floats.add(len(resources) - 1)
                    written = _under(builder.as_written, (*prefix, i) if items else ())
                    if written:
                        as_written[len(resources) - 1] = written
                except LoadError as err:
                    where = (*prefix, i, *err.path) if items is not None else err.path
                    ref = _ref_of(doc) if items is not None else _ref_guess(builder.root)
                    diagnostics.append(
                        Diagnostic(file, err.line, ref, _path_text(where), err.message)
                    )
                except ForeignDocument as note:
                    diagnostics.append(
                        Diagnostic(file, note.line, note.ref, "kind", note.message, Severity.NOTE)
                    )
    except (MarkedYAMLError, YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = (getattr(exc, "problem", None) or str(exc)).splitlines()[0]
        line = mark.line + 1 if mark is not None else 1
        position = getattr(exc, "position", None)  # a reader's error (encoding) has no mark
        if mark is None and isinstance(position, int):
            newline = b"\n" if isinstance(data, bytes) else "\n"
            line = data[:position].count(newline) + 1  # type: ignore[arg-type]
        diagnostics.append(Diagnostic(file, line, "-", "(document)", f"YAML syntax: {problem}"))
        # the parser cannot resynchronise after a syntax error
    return Loaded(tuple(resources), tuple(diagnostics), frozenset(with_floats), as_written)


def _under(written: Mapping[Path, str], prefix: Path) -> dict[Path, str]:
    """The entries under `prefix` (a List's item), with paths relative to it."""
    n = len(prefix)
    return {p[n:]: text for p, text in written.items() if p[:n] == prefix}


def _ref_of(doc: Any) -> str:
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return "-"
    return _named(doc["kind"], doc.get("metadata"))


def _named(kind: str, meta: Any) -> str:
    """Kind/name or Kind/ns/name, as Resource.ref names a resource; Kind
    alone while the name is not known."""
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        return kind
    namespace = meta.get("namespace")
    if isinstance(namespace, str) and namespace:
        return f"{kind}/{namespace}/{name}"
    return f"{kind}/{name}"


def _path_text(path: Path) -> str:
    return format_path(path)


def _ref_guess(body: Any) -> str:
    """Best-effort Kind/name for a document we could not build (what was
    built of it before the problem)."""
    if not isinstance(body, dict):
        return "-"
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        return "-"
    return _named(kind, body.get("metadata"))


def with_lines(resource: Resource) -> Resource:
    """`resource` with its line map, for an error that names a field's line.
    One rebuilt from the validation cache has none: its file is read again,
    and the lines taken only from the same document (same identity, same
    body), since the file on disk may be another version of it (a Git
    source's path) or gone; else `resource` as it is."""
    if resource.lines:
        return resource
    try:
        with open(resource.file, "rb") as fh:
            data = fh.read()
    except OSError:
        return resource
    for found in load(data, resource.file).resources:
        if converted_kinds.converted_name(found) == resource.name:
            found = converted_kinds.enforced(found)  # as validation stored it
        if found.key == resource.key and found.body == resource.body:
            return found
    return resource
