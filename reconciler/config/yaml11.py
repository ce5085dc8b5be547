"""Numbers that calicoctl's YAML reads otherwise than our YAML 1.2 loader.

calicoctl (and kubectl) read YAML as YAML 1.1 the way Go's yaml package
does: '_' between digits is dropped, a leading 0 makes an integer octal,
0b is binary, and the 0x, 0o and 0b prefixes take capitals and a sign.
YAML 1.2's core schema, which the loader follows, reads `010` as 10 and
`1_000`, `0b101`, `0X1F` or `-0x1F` as strings. Base-60 numbers (`1:30`)
are strings to both: Go's yaml package never read them as YAML 1.1 says.
Pure; the loader refuses a plain scalar this finds (reconciler.config.load).
"""

from __future__ import annotations

import re

# Go's strconv.ParseInt(text, 0, 64) after yaml drops every '_'.
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
# The float form Go's yaml tries next (the same as YAML 1.2's).
_GO_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_PLAIN_DECIMAL = re.compile(r"[-+]?[1-9][0-9]*\Z")
_UINT64 = 2**64 - 1
# The plain words Go's yaml (YAML 1.1) reads as booleans and YAML 1.2 as
# strings (true, false and their capitalised forms are booleans to both).
GO_BOOLEAN_WORDS = frozenset(
    {"y", "Y", "yes", "Yes", "YES", "on", "On", "ON"}
    | {"n", "N", "no", "No", "NO", "off", "Off", "OFF"}
)


def _go_number(text: str) -> int | float | None:
    """What Go's yaml makes of a plain scalar that starts with a digit or a
    sign: an int, a float, or None for a string."""
    plain = text.replace("_", "")
    if _GO_INT.match(plain):
        sign = -1 if plain[0] == "-" else 1
        digits = plain.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0" and digits[1].isdigit():
            value = int(digits, 8)
        else:
            value = int(digits, 0)
        if sign * value >= -(2**63) and value <= _UINT64:
            return sign * value
    if _GO_FLOAT.match(plain):
        return float(plain)
    return None


def _why(text: str) -> str:
    if "_" in text:
        return "it drops '_' between digits"
    if re.match(r"[-+]?0[0-7]", text):
        return "a leading 0 makes it octal"
    if re.match(r"[-+]?0[bB]", text):
        return "0b is binary"
    return "0x, 0o and 0b take capitals and a sign"


def misread(text: str, ours: object) -> str | None:
    """Why calicoctl would read the plain scalar `text`, which the loader
    read as `ours`, as another value; None when both read the same."""
    if isinstance(ours, float | bool) or ours is None or _PLAIN_DECIMAL.match(text):
        return None  # (floats and the usual decimals read alike)
    first = text[:1]
    if not (first.isdigit() or first in "+-"):
        return None
    theirs = _go_number(text)
    if theirs is None or (not isinstance(ours, str) and theirs == ours):
        return None
    here = f"the string {text!r}" if isinstance(ours, str) else str(ours)
    return (
        f"{text} is {theirs} to calicoctl and kubectl (YAML 1.1: {_why(text)}) but {here} here "
        f"(YAML 1.2): write {theirs} for the number they read"
        + (f", or {ours}" if isinstance(ours, int) else ", or quote it for the string")
    )
