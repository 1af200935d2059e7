"""The normaliser's working form: a schema as a disjunction (``Dnf``) of flat conjunctions.

A *flat* is a dict of keywords the engine enforces natively (``type``, ``enum``,
``properties``..., never ``anyOf``/``allOf``/``not``), whose child schemas are already
normalised nodes; ``{"$ref": "#/$defs/N"}`` alone is an opaque flat (a reference to a
normalised definition, expanded only when it must be combined). A ``Dnf`` is a list of
flats meaning their ``anyOf``; ``[]`` is the schema ``false``, ``[{}]`` is ``true``.

Types are tracked as the set of *kinds* below: ``number`` is ``integer`` plus ``float``
(a number that is not an integer), which JSON Schema cannot name on its own.
"""

from __future__ import annotations

from typing import Any

from constrain.errors import UnsupportedSchemaError

Flat = dict[str, Any]
Dnf = list[Flat]

KINDS = ("null", "boolean", "object", "array", "string", "integer", "float")
ALL_KINDS = frozenset(KINDS)
MAX_BRANCHES = 64

# What each keyword constrains; a keyword of one kind says nothing about values of another.
OBJECT_KEYWORDS = ("properties", "patternProperties", "additionalProperties", "required", "minProperties",
                   "maxProperties")
# Private markers of arrays whose rules the matcher keeps (schema/array_rules.py, engines/rules_matcher.py):
# distinct items; items matching a schema counted. The source is the user's `contains` subschema,
# self-contained, which the matcher validates items against.
UNIQUE_AT_RUNTIME = "_unique_at_runtime"
CONTAINS_AT_RUNTIME = "_contains_at_runtime"
CONTAINS_SOURCE = "_contains_source"
# A private marker of values checked when they end: ``[[keyword, schema text, pointer], ...]``, each a
# self-contained schema (a ``oneOf``, ``not`` or ``if`` with no exact grammar form) that the
# matcher validates the finished value against; the grammar holds a superset of the value's
# language (schema/array_rules.py places the checks, engines/rules_matcher.py keeps them).
VALUE_CHECKS = "_checked_at_runtime"
# Beside VALUE_CHECKS: the check is the whole node at this place, which covers every check below it.
WHOLE_CHECK = "_checked_whole"
ARRAY_KEYWORDS = ("prefixItems", "items", "minItems", "maxItems", "uniqueItems", "contains", "minContains",
                  "maxContains", UNIQUE_AT_RUNTIME, CONTAINS_AT_RUNTIME, CONTAINS_SOURCE)
# The array keywords that ``arrays.finish`` rewrites (again, after a merge).
ARRAY_RULES = ("uniqueItems", "contains", "minContains", "maxContains")
STRING_KEYWORDS = ("minLength", "maxLength", "pattern", "format", "contentEncoding", "contentMediaType",
                   "contentSchema", "_patterns")
NUMBER_KEYWORDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
NATIVE = frozenset(("type", "enum", "$ref", *OBJECT_KEYWORDS, *ARRAY_KEYWORDS, *STRING_KEYWORDS,
                    *NUMBER_KEYWORDS))


def unsupported(message: str, keyword: str, pointer: str) -> UnsupportedSchemaError:
    return UnsupportedSchemaError(f"{message} (keyword `{keyword}` at {pointer or '/'})", keyword=keyword,
                                  pointer=pointer)


def kinds_of(flat: Flat) -> frozenset[str]:
    """The kinds of value a flat's ``type`` admits (all of them when it has none)."""
    declared = flat.get("type")
    if declared is None:
        return ALL_KINDS
    names = [declared] if isinstance(declared, str) else declared
    out: set[str] = set()
    for name in names:
        out.update(("integer", "float") if name == "number" else (name,))
    return frozenset(out & ALL_KINDS)


def set_kinds(flat: Flat, kinds: frozenset[str] | set[str], pointer: str = "") -> Flat | None:
    """``flat`` restricted to ``kinds`` (None when empty); raises when only non-integer numbers are left."""
    kinds = frozenset(kinds)
    if not kinds:
        return None
    if kinds == ALL_KINDS:
        flat.pop("type", None)
        return flat
    if "float" in kinds and "integer" not in kinds:
        raise unsupported("a number that is not an integer cannot be expressed", "type", pointer)
    names: list[str] = [k for k in ("null", "boolean", "object", "array", "string") if k in kinds]
    if "float" in kinds:
        names.append("number")
    elif "integer" in kinds:
        names.append("integer")
    flat["type"] = names[0] if len(names) == 1 else names
    return flat


def to_node(dnf: Dnf) -> Any:
    """A schema node for a Dnf: ``false``, one flat, or an ``anyOf``."""
    if not dnf:
        return False
    if len(dnf) == 1:
        return dnf[0]
    return {"anyOf": dnf}


def from_node(node: Any) -> Dnf:
    """The Dnf of a normalised node (the inverse of ``to_node``)."""
    if node is False:
        return []
    if node is True:
        return [{}]
    if set(node) == {"anyOf"}:
        return [dict(f) for f in node["anyOf"]]
    return [dict(node)]


def is_true(node: Any) -> bool:
    return node is True or node == {}
