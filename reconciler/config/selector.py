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
tokenizer; the stricter Kubernetes rules bind labels on resources.

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
    """A selector that does not parse; `column` is a 0-based offset into the text."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}")
        self.message = message
        self.column = column


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

# One pass over the text. Every position matches some alternative (the last
# one catches stray characters), so tokens are contiguous; only trailing
# blanks are left unmatched. Words use Calico's label character set; the
# parser decides whether a word is a key or an operator from its position.
_TOKEN = re.compile(
    r"""[ \t]*(?:
        (?P<w>[A-Za-z0-9_./-]+)
      | (?P<s>"[^"]*"|'[^']*')
      | (?P<p>==|!=|&&|\|\||[(){},!])
      | (?P<x>[^ \t])
    )""",
    re.VERBOSE | re.DOTALL,
)

_WORD, _STRING, _EOF = "w", "s", ""
# (kind, text, column): kind is _WORD, _STRING, the punctuation itself, or _EOF.
_Token = tuple[str, str, int]

_STRAY = {
    "=": "expected '=='",
    "&": "expected '&&'",
    "|": "expected '||'",
    '"': "unterminated string",
    "'": "unterminated string",
}


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    append = tokens.append
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "w":
            append((_WORD, m.group("w"), m.start("w")))
        elif kind == "s":
            append((_STRING, m.group("s")[1:-1], m.start("s")))
        elif kind == "p":
            punct = m.group("p")
            append((punct, punct, m.start("p")))
        else:
            char, column = m.group("x"), m.start("x")
            raise SelectorError(_STRAY.get(char, f"unexpected character {char!r}"), column)
    append((_EOF, "", len(text)))
    return tokens


# A label key is whatever the tokenizer's word takes: Calico's tokenizer reads
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
        if kind != _WORD:
            raise SelectorError("expected expression", column)
        after = self.peek()
        if text in _FUNCTIONS and after[0] == "(":
            if after[2] != column + len(text):
                raise SelectorError(f"no space allowed between '{text}' and '('", column)
            self.pos += 1
            return self.parse_function(text)
        return self.parse_comparison(text)

    def parse_function(self, name: str) -> Selector:
        if name == "has":
            key = self.expect(_WORD, "label key")
            self.expect(")", "')'")
            return Has(key[1])
        self.expect(")", "')'")
        return All() if name == "all" else Global()

    def parse_comparison(self, key: str) -> Selector:
        kind, text, column = self.take()
        op = kind
        if kind == _WORD:
            op = text
            if text in ("starts", "ends"):
                self.expect_word("with", text)
                op = f"{text} with"
            elif text == "not":
                self.expect_word("in", "not")
                op = "not in"
        comparison = _COMPARISONS.get(op)
        if comparison is not None:
            value = self.expect(_STRING, "quoted string")
            return comparison(key, value[1])
        if op in ("in", "not in"):
            values = self.parse_set()
            return In(key, values) if op == "in" else NotIn(key, values)
        raise SelectorError(f"expected operator after label '{key}'", column)

    def expect_word(self, word: str, after: str) -> None:
        kind, text, column = self.take()
        if kind != _WORD or text != word:
            raise SelectorError(f"expected '{word}' after '{after}'", column)

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

    Raises SelectorError with a 0-based column on malformed input.
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
