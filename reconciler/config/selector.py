"""Calico label selectors: tokenizer, recursive-descent parser and AST.

Grammar (the language of Calico's libcalico-go selector parser):

    selector := ''                      (same as all())
              | or
    or       := and ('||' and)*
    and      := unary ('&&' unary)*
    unary    := '!'* term
    term     := '(' or ')' | 'all()' | 'global()' | 'has(' key ')'
              | key ('==' | '!=' | 'contains' | 'starts with' | 'ends with') string
              | key ('in' | 'not in') '{' [string (',' string)* [',']] '}'
    string   := '"' [^"]* '"' | "'" [^']* "'"      (no escapes, as in Calico)

Like Calico, only spaces and tabs separate tokens, and `has(`, `all(` and
`global(` must be written without a space before the parenthesis. A label key
is any run of letters, digits, '_', '.', '/' and '-', as in Calico's
tokenizer; the stricter Kubernetes rules bind labels on resources. As in
Calico's tokenizer, the operator after a key is read by its prefix: the
blanks inside `starts with`, `ends with` and `not in` may be left out
(`startswith`, `notin`), and none is needed after an operator word
(`contains'x'`, `in{'a'}`). Error columns count from 1.

`str(selector)` is a canonical form used to dedupe ip-sets: `&&`/`||` groups
are parenthesised and flattened, double negation is removed, set members are
sorted and deduplicated, and values are double-quoted unless they contain `"`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from reconciler.config.limits import MAX_SELECTOR_DEPTH

# A selector's AST is as deep as its parentheses (Calico takes 500 levels),
# and parsing, printing and matching it recurse: a few frames per level.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 8 * MAX_SELECTOR_DEPTH))

__all__ = [
    "All",
    "And",
    "Contains",
    "EndsWith",
    "Eq",
    "Global",
    "Has",
    "In",
    "Ne",
    "Not",
    "NotIn",
    "Or",
    "Selector",
    "SelectorError",
    "StartsWith",
    "parse",
    "parse_cached",
]


class SelectorError(ValueError):
    """A selector that does not parse. Raised with the 0-based offset into
    the text; `column` is 1-based, as the message says it (the first
    character is column 1, as a file's first line is line 1)."""

    def __init__(self, message: str, offset: int) -> None:
        self.message = message
        self.column = offset + 1
        super().__init__(f"{message} at column {self.column}")


# ---------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Selector:
    """Base of every selector node; immutable, hashable, comparable."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def children(self) -> tuple[Selector, ...]:
        return ()

    def walk(self) -> Iterator[Selector]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()


@dataclass(frozen=True, slots=True)
class All(Selector):
    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "all()"


@dataclass(frozen=True, slots=True)
class Global(Selector):
    """`global()`: in a namespaceSelector it means "non-namespaced resources".

    As an expression it matches everything (as in Calico); the caller that
    evaluates a namespaceSelector gives it its meaning.
    """

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return "global()"


@dataclass(frozen=True, slots=True)
class Has(Selector):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


def _quote(value: str) -> str:
    # Values never hold both quote kinds: the grammar has no escapes.
    return f"'{value}'" if '"' in value else f'"{value}"'


@dataclass(frozen=True, slots=True)
class Eq(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return f"{self.key} == {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Ne(Selector):
    """`key != v`: also true when the label is absent (Calico semantics)."""

    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get(self.key) != self.value

    def __str__(self) -> str:
        return f"{self.key} != {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class Contains(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is not None and self.value in actual

    def __str__(self) -> str:
        return f"{self.key} contains {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class StartsWith(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is not None and actual.startswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} starts with {_quote(self.value)}"


@dataclass(frozen=True, slots=True)
class EndsWith(Selector):
    key: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is not None and actual.endswith(self.value)

    def __str__(self) -> str:
        return f"{self.key} ends with {_quote(self.value)}"


def _set_literal(values: frozenset[str]) -> str:
    return "{" + ", ".join(_quote(v) for v in sorted(values)) + "}"


@dataclass(frozen=True, slots=True)
class In(Selector):
    key: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is not None and actual in self.values

    def __str__(self) -> str:
        return f"{self.key} in {_set_literal(self.values)}"


@dataclass(frozen=True, slots=True)
class NotIn(Selector):
    """`key not in {...}`: also true when the label is absent (Calico semantics)."""

    key: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.key)
        return actual is None or actual not in self.values

    def __str__(self) -> str:
        return f"{self.key} not in {_set_literal(self.values)}"


@dataclass(frozen=True, slots=True)
class Not(Selector):
    operand: Selector

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.operand.matches(labels)

    def children(self) -> tuple[Selector, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        return f"!{self.operand}"


@dataclass(frozen=True, slots=True)
class And(Selector):
    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(op.matches(labels) for op in self.operands)

    def children(self) -> tuple[Selector, ...]:
        return self.operands

    def __str__(self) -> str:
        return "(" + " && ".join(map(str, self.operands)) + ")"


@dataclass(frozen=True, slots=True)
class Or(Selector):
    operands: tuple[Selector, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(op.matches(labels) for op in self.operands)

    def children(self) -> tuple[Selector, ...]:
        return self.operands

    def __str__(self) -> str:
        return "(" + " || ".join(map(str, self.operands)) + ")"


# ---------------------------------------------------------------- tokenizer

# Calico's tokenizer (libcalico-go/lib/selector/tokenizer), read for what it
# accepts and means: only spaces and tabs separate tokens; a label is any run
# of [A-Za-z0-9_./-]; `has(`, `all(` and `global(` are read as one token
# each (blanks may follow the parenthesis, none may come before it). Right
# after a label the text is read for an operator by its prefix, not as a
# word: `contains`, `starts` [blanks] `with`, `ends` [blanks] `with`, `not`
# [blanks] `in` and `in`, so `startswith`, `notin` and `endswith'x'` are the
# operators, and whatever follows the operator is the next token.

_WORD, _STRING, _EOF = "w", "s", ""
_HAS, _ALL, _GLOBAL = "has(", "all()", "global()"
# (kind, text, column): kind is _WORD (a label, text the key), _STRING (text
# the value), _HAS (text the key), _ALL, _GLOBAL, an operator ('==', '!=',
# 'contains', 'starts with', 'ends with', 'in', 'not in'), other punctuation
# itself, or _EOF; column is the 0-based offset where the token starts.
_Token = tuple[str, str, int]

_LABEL = re.compile(r"[A-Za-z0-9_./-]+")
_PUNCT = {"(": "(", ")": ")", "{": "{", "}": "}", ",": ","}
_PAIRS = {"=": ("==", "expected '=='"), "&": ("&&", "expected '&&'"), "|": ("||", "expected '||'")}
# After a label: (prefix, second word or None, operator), tried in this order.
_AFTER_LABEL = (
    ("contains", None, "contains"),
    ("starts", "with", "starts with"),
    ("ends", "with", "ends with"),
    ("not", "in", "not in"),
    ("in", None, "in"),
)
_CALLS = (("has(", _HAS), ("all(", _ALL), ("global(", _GLOBAL))


def _skip(text: str, at: int) -> int:
    end = len(text)
    while at < end and text[at] in " \t":
        at += 1
    return at


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    append = tokens.append
    at, end = 0, len(text)
    while True:
        at = _skip(text, at)
        if at >= end:
            append((_EOF, "", end))
            return tokens
        char = text[at]
        after_label = bool(tokens) and tokens[-1][0] == _WORD
        if char in _PUNCT:
            append((char, char, at))
            at += 1
        elif char in "\"'":
            close = text.find(char, at + 1)
            if close < 0:
                raise SelectorError("unterminated string", at)
            append((_STRING, text[at + 1 : close], at))
            at = close + 1
        elif char in _PAIRS:
            pair, message = _PAIRS[char]
            if not text.startswith(pair, at):
                raise SelectorError(message, at)
            append((pair, pair, at))
            at += 2
        elif char == "!":
            op = "!=" if text.startswith("!=", at) else "!"
            append((op, op, at))
            at += len(op)
        elif after_label and _LABEL.match(text, at):
            at = _operator(text, at, tokens)
        elif not after_label and text.startswith(("has(", "all(", "global("), at):
            at = _call(text, at, tokens)
        else:
            m = _LABEL.match(text, at)
            if m is None:
                raise SelectorError(f"unexpected character {char!r}", at)
            append((_WORD, m.group(), at))
            at = m.end()


def _operator(text: str, at: int, tokens: list[_Token]) -> int:
    """The operator after a label, read by its prefix as Calico reads it."""
    for prefix, second, op in _AFTER_LABEL:
        if not text.startswith(prefix, at):
            continue
        after = at + len(prefix)
        if second is not None:
            after = _skip(text, after)
            if not text.startswith(second, after):
                raise SelectorError(f"expected '{second}' after '{prefix}'", after)
            after += len(second)
        tokens.append((op, op, at))
        return after
    raise SelectorError(f"expected operator after label '{tokens[-1][1]}'", at)


def _call(text: str, at: int, tokens: list[_Token]) -> int:
    """`has(key)`, `all()` or `global()`: blanks may pad the inside."""
    prefix, kind = next((p, k) for p, k in _CALLS if text.startswith(p, at))
    inside = _skip(text, at + len(prefix))
    key = ""
    if kind == _HAS:
        m = _LABEL.match(text, inside)
        if m is None:
            raise SelectorError("expected label key", inside)
        key = m.group()
        inside = _skip(text, m.end())
    if not text.startswith(")", inside):
        raise SelectorError("expected ')'", inside)
    tokens.append((kind, key, at))
    return inside + 1


# A label key is whatever the tokenizer's label takes: Calico's tokenizer reads
# any run of [A-Za-z0-9_./-] as one (upper case, several '/', a leading '-',
# any length). The Kubernetes rules for label keys bind the labels on
# resources (checked there), not the keys a selector names: a key no resource
# can carry matches nothing.


# ---------------------------------------------------------------- parser

_COMPARISONS: dict[str, type[Eq | Ne | Contains | StartsWith | EndsWith]] = {
    "==": Eq,
    "!=": Ne,
    "contains": Contains,
    "starts with": StartsWith,
    "ends with": EndsWith,
}
_FUNCTIONS = frozenset({"has", "all", "global"})


class _Parser:
    __slots__ = ("tokens", "pos")

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        if token[0] != _EOF:
            self.pos += 1
        return token

    def expect(self, kind: str, what: str) -> _Token:
        token = self.take()
        if token[0] != kind:
            raise SelectorError(f"expected {what}", token[2])
        return token

    def parse_or(self) -> Selector:
        operands = [self.parse_and()]
        while self.peek()[0] == "||":
            self.pos += 1
            operands.append(self.parse_and())
        return _group(Or, operands)

    def parse_and(self) -> Selector:
        operands = [self.parse_unary()]
        while self.peek()[0] == "&&":
            self.pos += 1
            operands.append(self.parse_unary())
        return _group(And, operands)

    def parse_unary(self) -> Selector:
        negated = False
        while self.peek()[0] == "!":
            self.pos += 1
            negated = not negated
        term = self.parse_term()
        if not negated:
            return term
        # `!(!x)` is x: keeps the canonical form free of double negation.
        return term.operand if isinstance(term, Not) else Not(term)

    def parse_term(self) -> Selector:
        kind, text, column = self.take()
        if kind == "(":
            inner = self.parse_or()
            self.expect(")", "')'")
            return inner
        if kind == _HAS:
            return Has(text)
        if kind == _ALL:
            return All()
        if kind == _GLOBAL:
            return Global()
        if kind != _WORD:
            raise SelectorError("expected expression", column)
        return self.parse_comparison(text, column)

    def parse_comparison(self, key: str, key_column: int) -> Selector:
        kind, _, column = self.take()
        comparison = _COMPARISONS.get(kind)
        if comparison is not None:
            value = self.expect(_STRING, "quoted string")
            return comparison(key, value[1])
        if kind in ("in", "not in"):
            values = self.parse_set()
            return In(key, values) if kind == "in" else NotIn(key, values)
        if key in _FUNCTIONS and kind == "(":
            raise SelectorError(f"no space allowed between '{key}' and '('", key_column)
        raise SelectorError(f"expected operator after label '{key}'", column)

    def parse_set(self) -> frozenset[str]:
        self.expect("{", "'{'")
        values: list[str] = []
        while True:
            kind, text, column = self.take()
            if kind == "}":
                return frozenset(values)
            if kind != _STRING:
                raise SelectorError("expected quoted string or '}'", column)
            values.append(text)
            kind, _, column = self.take()
            if kind == "}":
                return frozenset(values)
            if kind != ",":
                raise SelectorError("expected ',' or '}'", column)


def _group(cls: type[And] | type[Or], operands: list[Selector]) -> Selector:
    if len(operands) == 1:
        return operands[0]
    # Flatten nested groups of the same operator so that equivalent
    # parenthesisations share one canonical string.
    flat: list[Selector] = []
    for op in operands:
        if isinstance(op, cls):
            flat.extend(op.operands)
        else:
            flat.append(op)
    return cls(tuple(flat))


def _check_depth(tokens: list[_Token]) -> None:
    """Refuse nesting deeper than MAX_SELECTOR_DEPTH before the recursive
    parser meets it."""
    depth = 0
    for kind, _, column in tokens:
        if kind == "(":
            depth += 1
            if depth > MAX_SELECTOR_DEPTH:
                raise SelectorError(
                    f"nested deeper than {MAX_SELECTOR_DEPTH} parentheses", column
                )
        elif kind == ")":
            depth -= 1


def parse(text: str) -> Selector:
    """Parse a Calico selector; an empty or blank selector is `all()`.

    Raises SelectorError (its column 1-based) on malformed input.
    """
    tokens = _tokenize(text)
    if tokens[0][0] == _EOF:
        return All()
    _check_depth(tokens)
    parser = _Parser(tokens)
    tree = parser.parse_or()
    kind, _, column = parser.peek()
    if kind != _EOF:
        raise SelectorError("expected '&&', '||' or end of selector", column)
    return tree


@lru_cache(maxsize=16384)
def parse_cached(text: str) -> Selector:
    """`parse`, memoised: the same selectors recur across thousands of rules."""
    return parse(text)
