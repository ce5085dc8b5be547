"""jsonschema's errors as findings in the words of the YAML file.

jsonschema writes a value as Python's repr (None, True, {'a': 1}); the file
says null, true and {a: 1}, so every value in a message is rendered as YAML
writes it (reconciler.config.yaml_words). One error may stand for several
problems (a mapping with two unknown fields): each gets its own finding, on
its own line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from reconciler.config.diagnostics import Finding
from reconciler.config.yaml_words import flow, scalar

# The booleans of YAML 1.1 (kubectl, calicoctl) that YAML 1.2 reads as strings.
YAML11_BOOLEANS = {"yes": True, "y": True, "on": True, "no": False, "n": False, "off": False}

# What a JSON Schema type is called in a message, and the empty value of it
# that can be written instead of null (none for a scalar: no value is "empty").
_TYPES: dict[str, tuple[str, str | None]] = {
    "object": ("a mapping", "{}"),
    "array": ("a list", "[]"),
    "string": ("a string", '""'),
    "integer": ("an integer", None),
    "number": ("a number", None),
    "boolean": ("a boolean", None),
}


def hint(value: str, options: list[str]) -> str:
    """A 'did you mean' suffix: same word in another case first, then close spellings."""
    import difflib  # only to explain an error

    same = [o for o in options if o.lower() == value.lower()]
    close = same or difflib.get_close_matches(value, options, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _deref(root: Mapping[str, Any], node: Any) -> Any:
    """A schema node with its local $ref followed (the schemas have only local ones)."""
    for _ in range(16):  # a bound, not a depth any schema reaches
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return node
        node = root
        for part in ref[2:].split("/"):
            node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _required(root: Mapping[str, Any], schema_path: list[Any], field: str) -> bool:
    """Whether the mapping holding `field` requires it. The error's schema path
    ends at the field's schema under `properties`; it does not record the
    $refs it went through, so they are followed again on the way."""
    holder = None
    for i in range(len(schema_path) - 2, -1, -1):
        if schema_path[i] == "properties" and schema_path[i + 1] == field:
            holder = schema_path[:i]
            break
    if holder is None:
        return False
    node: Any = root
    for part in holder:
        node = _deref(root, node)
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return False
    node = _deref(root, node)
    return isinstance(node, Mapping) and field in node.get("required", ())


def null_message(
    types: list[str], path: tuple[Any, ...], required: bool, options: list[Any], empty_ok: bool
) -> str:
    """What to write instead of null where a value of `types` is required:
    the type's empty value when the field takes it (`empty_ok`), one of
    `options` when it has them. Null is refused, never read as the field
    left out: a Calico field left null is Go's zero value, which for a
    selector selects everything."""
    names = [_TYPES.get(t, (f"a {t}", None)) for t in types]
    wanted = " or ".join(name for name, _ in names)
    field = path[-1] if path else None
    empty = names[0][1] if len(names) == 1 and empty_ok else None
    thing = wanted.split(" ", 1)[1]
    selector = isinstance(field, str) and field.lower().endswith("selector")
    if options:
        instead = f"write one of {', '.join(scalar(o) for o in options)}"
    elif selector and types == ["string"]:
        instead = "write a selector"
    elif empty is not None:
        instead = f"write {empty} for an empty {'selector' if selector else thing}"
    elif types == ["boolean"]:
        instead = "write true or false"
    else:
        instead = "write one"
    if isinstance(field, int):
        instead += ", or remove the item"
    elif field is not None and not required:
        instead += ", or leave the field out"
    return f"null is not {wanted}: {instead}"


def _takes(validator: Any, error: Any, value: str | None) -> bool:
    """Whether the schema of the error's field takes `value` (JSON text)."""
    if value is None:
        return False
    try:
        return bool(validator.evolve(schema=error.schema).is_valid(json.loads(value)))
    except Exception:  # noqa: BLE001 - a hint must never stop the explanation
        return False


def _message(error: Any, validator: Any) -> str:
    """The error's message with every value in YAML's words."""
    root = validator.schema
    instance = error.instance
    value = flow(instance)
    if error.validator == "type":
        types = error.validator_value
        types = [types] if isinstance(types, str) else list(types)
        if instance is None:
            path = tuple(error.absolute_path)
            field = path[-1] if path else None
            required = isinstance(field, str) and _required(
                root, list(error.absolute_schema_path), field
            )
            empty = _TYPES.get(types[0], ("", None))[1]
            options = error.schema.get("enum", [])
            return null_message(types, path, required, options, _takes(validator, error, empty))
        return f"{value} is not of type {', '.join(repr(t) for t in types)}"
    if error.validator == "const":
        return f"{value} is not allowed here: write {scalar(error.validator_value)}"
    if error.validator == "pattern":
        return f"{value} does not match {scalar(error.validator_value)}"
    if error.validator == "oneOf" and not error.context:
        return f"{value} matches more than one of the forms allowed here"
    if error.validator == "not":
        return f"{value} is not allowed here"
    if error.validator == "contains":
        return f"no item of {value} is allowed here"
    # The rest begin with the value, then say only the schema's numbers or names.
    shown = repr(instance)
    if error.message.startswith(shown):
        return value + error.message[len(shown) :]
    return str(error.message)


def describe(error: Any, validator: Any) -> list[Finding]:
    """The findings one jsonschema error stands for; `validator` is the
    jsonschema validator that found it."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        return _unknown_fields(error, path, validator)
    if error.validator == "required" and path == ("metadata",) and "'namespace'" in error.message:
        why = 'required: a namespaced kind names its namespace ("default" is not assumed)'
        return [Finding((*path, "namespace"), why)]
    instance = error.instance
    if (
        error.validator == "type"
        and error.validator_value == "boolean"
        and isinstance(instance, str)
        and instance.lower() in YAML11_BOOLEANS
    ):
        # kubectl's and calicoctl's YAML 1.1 read these as booleans; YAML 1.2 does not
        word = "true" if YAML11_BOOLEANS[instance.lower()] else "false"
        return [Finding(path, f"{scalar(instance)} is a string here, not a boolean (YAML 1.2 "
                              f"reads only true and false as booleans): write {word}")]  # fmt: skip
    if error.validator == "enum":
        return [Finding(path, _enum_message(instance, list(error.validator_value)))]
    described = error.schema.get("description") if isinstance(error.schema, Mapping) else None
    if error.validator in ("pattern", "maxLength") and isinstance(described, str):
        # The rule in words, not the regular expression that encodes it.
        return [Finding(path, f"{flow(instance)} is not valid: {described}")]
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the alternative that got furthest, not "is not valid under any".
        best = max(error.context, key=lambda e: len(e.absolute_path))
        if len(best.absolute_path) > len(error.absolute_path):
            return describe(best, validator)
        if isinstance(described, str):
            return [Finding(path, f"{flow(instance)} is not valid: {described}")]
    return [Finding(path, _message(error, validator))]


def _enum_message(instance: Any, options: list[Any]) -> str:
    """Not one of `options`. An option "" is a field Calico's Go type always
    writes (no omitempty), empty when unset: it is told apart as the default,
    not offered as a spelling."""
    named = [v for v in options if v != ""]
    listed = ", ".join(scalar(v) for v in named)
    unset = ' (or "" for the default)' if len(named) < len(options) else ""
    found = hint(str(instance), [str(v) for v in named])
    return f"{flow(instance)} is not one of {listed}{unset}{found}"


def _unknown_fields(error: Any, path: tuple[Any, ...], validator: Any) -> list[Finding]:
    """One finding per field the mapping's schema does not know, each on its
    own line with its own hint: every typo is told in one run."""
    unknown = unknown_fields(error)
    options = list(error.schema.get("properties", {}))
    return [
        Finding((*path, field), _unknown_field(field, path, options, validator))
        for field in unknown
    ] or [Finding(path, _message(error, validator))]


def unknown_fields(error: Any) -> list[Any]:
    """The keys of an additionalProperties error's mapping its schema does not know."""
    allowed = error.schema.get("properties", {})
    patterns = error.schema.get("patternProperties", {})
    return [k for k in error.instance if k not in allowed and not _matches_any(k, patterns)]


def _unknown_field(field: Any, path: tuple[Any, ...], options: list[str], validator: Any) -> str:
    if path == ("metadata",) and field == "namespace":
        # The API server drops it from a cluster-scoped object: refused here,
        # as the file would say the object is in a namespace it is not in.
        kind = validator.schema.get("properties", {}).get("kind", {}).get("const", "this kind")
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        return f"{article} {kind} is cluster-scoped, in no namespace: remove metadata.namespace"
    if path == () and field == "status":
        return _no_status(validator.schema.get("properties", {}))
    return f"unknown field {scalar(field)}{hint(str(field), options)}"


def _no_status(top: Mapping[str, Any]) -> str:
    """A status on a kind that has none: what an export of an older API
    server printed, never configuration (nothing here reads a status)."""
    kind = top.get("kind", {}).get("const", "this kind")
    api = top.get("apiVersion", {}).get("const")
    what = f"{api} {kind}" if api else kind
    if (api, kind) == ("networking.k8s.io/v1", "NetworkPolicy"):
        return (
            f"a {what} has no status: the field is gone (Kubernetes removed the alpha "
            "NetworkPolicyStatus; an export from kubectl 1.24-1.27 may still print "
            "'status: {}'): remove it"
        )
    return (
        f"a {what} has no status field: remove it (a status is the API server's "
        "report, not configuration)"
    )


def _matches_any(key: Any, patterns: Mapping[str, Any]) -> bool:
    return isinstance(key, str) and any(re.search(p, key) for p in patterns)


def told_by_unknown_fields(errors: list[Any]) -> set[int]:
    """The ids of maxProperties errors that only repeat an unknown field:
    the mapping's known fields alone are within the bound, and each
    unknown one is told on its own line already."""
    unknown = {
        tuple(e.absolute_path): unknown_fields(e)
        for e in errors
        if e.validator == "additionalProperties" and isinstance(e.instance, Mapping)
    }
    return {
        id(e)
        for e in errors
        if e.validator == "maxProperties"
        and isinstance(e.instance, Mapping)
        and tuple(e.absolute_path) in unknown
        and len(e.instance) - len(unknown[tuple(e.absolute_path)]) <= e.validator_value
    }
