"""Calico selector language: parsing, evaluation, errors and canonical form."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.config.selector import (
    All,
    And,
    Eq,
    Global,
    Has,
    In,
    Not,
    NotIn,
    Or,
    Selector,
    SelectorError,
    parse,
    parse_cached,
)

WEB = {"app": "web", "tier": "frontend", "projectcalico.org/namespace": "prod"}

# (selector, labels, expected match)
EVALUATIONS = [
    ("", WEB, True),
    ("   ", {}, True),
    ("all()", {}, True),
    ("global()", WEB, True),
    ("has(app)", WEB, True),
    ("has(app)", {}, False),
    ("has( app )", WEB, True),
    ("has(projectcalico.org/namespace)", WEB, True),
    ('app == "web"', WEB, True),
    ("app == 'web'", WEB, True),
    ('app == "db"', WEB, False),
    ('app == "web"', {}, False),
    ('app != "db"', WEB, True),
    ('app != "web"', WEB, False),
    ('app != "web"', {}, True),  # absent label: != matches, as in Calico
    ('app in {"web", "db"}', WEB, True),
    ('app in {"db"}', WEB, False),
    ('app in {"web"}', {}, False),
    ("app in {}", WEB, False),
    ('app not in {"db"}', WEB, True),
    ('app not in {"web"}', WEB, False),
    ('app not in {"web"}', {}, True),  # absent label: not in matches
    ("app not in {}", WEB, True),
    ('tier contains "ont"', WEB, True),
    ('tier contains "back"', WEB, False),
    ('tier contains ""', {}, False),  # needs the label even for ""
    ('tier starts with "front"', WEB, True),
    ('tier starts with "end"', WEB, False),
    ('tier ends with "end"', WEB, True),
    ('tier ends with "front"', WEB, False),
    ('tier ends with "x"', {}, False),
    ("!has(app)", WEB, False),
    ("!has(app)", {}, True),
    ("!!has(app)", WEB, True),
    ('!app == "web"', WEB, False),
    ('has(app) && tier == "frontend"', WEB, True),
    ('has(app) && tier == "backend"', WEB, False),
    ('has(nope) || tier == "frontend"', WEB, True),
    ("has(nope) || has(other)", WEB, False),
    ('(app == "web" || app == "db") && !has(nope)', WEB, True),
    ('all == "x"', {"all": "x"}, True),  # a keyword without '(' is a label key
    ('contains contains "o"', {"contains": "foo"}, True),
    ('app=="web"&&tier=="frontend"', WEB, True),
    ('app in{"web"}', WEB, True),
    ('app in {"web",}', WEB, True),  # trailing comma, as Calico allows
    ("\tapp  ==\t'web' ", WEB, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), EVALUATIONS)
def test_evaluates(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse(text).matches(labels) is expected


# (selector, the tree it must parse to)
PRECEDENCE = [
    # && binds tighter than ||
    (
        'a == "1" || b == "1" && c == "1"',
        Or((Eq("a", "1"), And((Eq("b", "1"), Eq("c", "1"))))),
    ),
    (
        'a == "1" && b == "1" || c == "1"',
        Or((And((Eq("a", "1"), Eq("b", "1"))), Eq("c", "1"))),
    ),
    # ! binds tighter than && and ==
    ("!has(a) && has(b)", And((Not(Has("a")), Has("b")))),
    ('!a == "1"', Not(Eq("a", "1"))),
    # parentheses override
    (
        '(a == "1" || b == "1") && c == "1"',
        And((Or((Eq("a", "1"), Eq("b", "1"))), Eq("c", "1"))),
    ),
    ("!(has(a) || has(b))", Not(Or((Has("a"), Has("b"))))),
    # same-operator groups flatten; double negation cancels
    ("(has(a) && has(b)) && has(c)", And((Has("a"), Has("b"), Has("c")))),
    ("has(a) || (has(b) || has(c))", Or((Has("a"), Has("b"), Has("c")))),
    ("!(!has(a))", Has("a")),
    ("!!!has(a)", Not(Has("a"))),
    ("((has(a)))", Has("a")),
    ("", All()),
    ("global()", Global()),
    ('a in {"y", "x", "y"}', In("a", frozenset({"x", "y"}))),
    ("a not in {}", NotIn("a", frozenset())),
]


@pytest.mark.parametrize(("text", "tree"), PRECEDENCE)
def test_parses_to_tree(text: str, tree: object) -> None:
    assert parse(text) == tree


# (malformed selector, str(error)); the column is the number in the message.
ERRORS = [
    ('app == "web', "unterminated string at column 8"),
    ("app == 'web", "unterminated string at column 8"),
    ('(app == "web" && has(x)', "expected ')' at column 24"),
    ('app = "web"', "expected '==' at column 5"),
    ('app === "web"', "expected '==' at column 7"),
    ('app == "web" & has(x)', "expected '&&' at column 14"),
    ('app == "web" | has(x)', "expected '||' at column 14"),
    ('app ~= "web"', "unexpected character '~' at column 5"),
    ("app == web", "expected quoted string at column 8"),
    ('app is "web"', "expected operator after label 'app' at column 5"),
    ("app", "expected operator after label 'app' at column 4"),
    ('app == "web")', "expected '&&', '||' or end of selector at column 13"),
    ('app == "web" has(x)', "expected '&&', '||' or end of selector at column 14"),
    ("has(app) &&", "expected expression at column 12"),
    ("&& has(app)", "expected expression at column 1"),
    ("()", "expected expression at column 2"),
    ("has()", "expected label key at column 5"),
    ("has(app", "expected ')' at column 8"),
    ("all(x)", "expected ')' at column 5"),
    ("has (app)", "no space allowed between 'has' and '(' at column 1"),
    ('app in "web"', "expected '{' at column 8"),
    ('app in {"a" "b"}', "expected ',' or '}' at column 13"),
    ("app in {a}", "expected quoted string or '}' at column 9"),
    ('app in {"a",,}', "expected quoted string or '}' at column 13"),
    ('app not "web"', "expected 'in' after 'not' at column 9"),
    ('app starts "w"', "expected 'with' after 'starts' at column 12"),
    ('app ends "w"', "expected 'with' after 'ends' at column 10"),
    ('app:x == "1"', "unexpected character ':' at column 4"),
    ("has(x) &&\nhas(y)", "unexpected character '\\n' at column 10"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_rejects_with_column(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse(text)
    assert str(caught.value) == message
    assert message.endswith(f" at column {caught.value.column}")
    assert message == f"{caught.value.message} at column {caught.value.column}"


# (selector, canonical string)
CANONICAL = [
    ("", "all()"),
    ("  all( )  ", "all()"),
    ("has( a )", "has(a)"),
    ("a=='x'", 'a == "x"'),
    ("a == 'say \"hi\"'", "a == 'say \"hi\"'"),
    ("a!='x'", 'a != "x"'),
    ("a contains 'x'", 'a contains "x"'),
    ("a   starts  with 'x'", 'a starts with "x"'),
    ("a ends\twith 'x'", 'a ends with "x"'),
    ("a in {'z','x','z'}", 'a in {"x", "z"}'),
    ("a not in {}", "a not in {}"),
    ("has(a)&&has(b)", "(has(a) && has(b))"),
    ("has(a)||has(b)&&has(c)", "(has(a) || (has(b) && has(c)))"),
    ("((has(a) || has(b)) || has(c))", "(has(a) || has(b) || has(c))"),
    ("!(has(a) && has(b))", "!(has(a) && has(b))"),
    ("!!has(a)", "has(a)"),
    ("global()", "global()"),
]


@pytest.mark.parametrize(("text", "canonical"), CANONICAL)
def test_canonical_form_round_trips(text: str, canonical: str) -> None:
    tree = parse(text)
    assert str(tree) == canonical
    assert parse(str(tree)) == tree
    assert str(parse(str(tree))) == canonical


@pytest.mark.parametrize(
    "variants",
    [
        ("app == 'web'", 'app=="web"', ' app  ==  "web" ', '(app == "web")'),
        ('a in {"x","y"}', "a in {'y', 'x'}", 'a in {"y", "x", "x",}'),
        (
            "has(a) && has(b) && has(c)",
            "(has(a) && has(b)) && has(c)",
            "has(a) && (has(b) && has(c))",
        ),
        ("", "all()", " all( ) "),
    ],
)
def test_equivalent_spellings_share_one_canonical_form(variants: tuple[str, ...]) -> None:
    assert len({str(parse(v)) for v in variants}) == 1
    assert len({parse(v) for v in variants}) == 1


def test_parse_cached_memoises() -> None:
    text = 'app == "cached"'
    assert parse_cached(text) is parse_cached(text)
    assert parse_cached(text) == parse(text)


def test_parse_cached_raises_like_parse() -> None:
    with pytest.raises(SelectorError):
        parse_cached("app ==")


def test_tree_is_immutable_and_hashable() -> None:
    tree = parse('a == "1" && b in {"2"}')
    assert isinstance(tree, And)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tree.operands = ()  # type: ignore[misc]
    index: dict[Selector, int] = {tree: 1}
    assert index[parse('a=="1"&&b in{"2"}')] == 1


def test_walk_visits_every_node() -> None:
    tree = parse('has(a) && !(b == "1" || global())')
    kinds = [type(node).__name__ for node in tree.walk()]
    assert kinds == ["And", "Has", "Not", "Or", "Eq", "Global"]


def test_deep_nesting_parses_as_calico_does_and_is_bounded():
    from reconciler.config.limits import MAX_SELECTOR_DEPTH
    from reconciler.config.selector import SelectorError, parse

    deep = "(" * 500 + "a == 'b'" + ")" * 500
    assert parse(deep).matches({"a": "b"})
    assert str(parse("!(" * 500 + "a == 'b'" + ")" * 500)) == 'a == "b"'
    too_deep = "(" * (MAX_SELECTOR_DEPTH + 1) + "a == 'b'" + ")" * (MAX_SELECTOR_DEPTH + 1)
    with pytest.raises(SelectorError) as err:
        parse(too_deep)
    assert err.value.column == MAX_SELECTOR_DEPTH + 1  # the opening parenthesis too many
    assert f"nested deeper than {MAX_SELECTOR_DEPTH} parentheses" in str(err.value)


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        # Calico's tokenizer takes any run of [A-Za-z0-9_./-] as a key: upper
        # case prefixes, several '/', a leading '-' and any length all parse
        # (its LabelKeyMatcher constant says 512, but the tokenizer's scan has
        # no bound).
        ("has(Example.COM/app)", {"Example.COM/app": ""}),
        ("Foo/bar == 'x'", {"Foo/bar": "x"}),
        ("a/B/c == 'x'", {"a/B/c": "x"}),
        ("-app == 'x'", {"-app": "x"}),
        ("x.io/ == 'x'", {"x.io/": "x"}),
        (f"{'a' * 600} == 'x'", {"a" * 600: "x"}),
    ],
)
def test_label_keys_as_calicos_tokenizer_takes_them(text: str, labels: dict[str, str]) -> None:
    tree = parse(text)
    assert tree.matches(labels) and not tree.matches({})
