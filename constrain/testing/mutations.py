"""Near misses: instances a schema rejects, each one labelled edit away from a valid instance.

Valid instances come from :func:`constrain.testing.examples`; the edits follow the schema down
to each value (``properties``, ``items``, ``prefixItems``, ``additionalProperties``, local
``$ref``s, ``allOf`` and the ``anyOf``/``oneOf`` branches the value takes) and break one keyword
there: drop a required key, cross a bound, leave an enum, break a pattern, change the type, add
a property a closed object refuses, repeat an item of a unique array. An edit is kept only when
the schema's own ``jsonschema`` validator rejects the result, so every counterexample is invalid.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from constrain.schema.refs import resolve_local

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

    from constrain.testing.walker import ExampleSampler

Path = tuple[str | int, ...]

_WRONG_TYPE_VALUES: tuple[tuple[str, Any], ...] = (
    ("null", None), ("boolean", True), ("integer", 0), ("number", 0.5), ("string", ""), ("array", []), ("object", {}),
)
_PATTERN_BREAKERS = ("", " ", "!", "0", "a", "A", "-", "\n", "~~~~", "0000000000", "zzzzzzzzzz", "\u00e9")


@dataclass(frozen=True)
class Counterexample:
    """An instance the schema rejects; ``keyword`` is the rule it breaks, ``pointer`` where (JSON pointer)."""

    instance: Any
    keyword: str
    pointer: str


def _pointer(path: Path) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _replace(document: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(document)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _subschemas(root: Any, schema: Any, value: Any, validator: Validator, depth: int = 0) -> Iterator[dict[str, Any]]:
    """The schema objects that apply to ``value`` here: the node, its local refs, allOf parts and taken branches."""
    if not isinstance(schema, dict) or depth > 16:
        return
    yield schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        yield from _subschemas(root, resolve_local(root, ref), value, validator, depth + 1)
    for part in schema.get("allOf", ()):
        yield from _subschemas(root, part, value, validator, depth + 1)
    for keyword in ("anyOf", "oneOf"):
        for branch in schema.get(keyword, ()):
            if validator.evolve(schema=branch).is_valid(value):
                yield from _subschemas(root, branch, value, validator, depth + 1)
                break


def _locations(root: Any, schema: Any, value: Any, path: Path, validator: Validator,
               depth: int = 0) -> Iterator[tuple[Path, Any, dict[str, Any]]]:
    """Every (path, value, schema object) pair the instance goes through."""
    if depth > 32:
        return
    for node in _subschemas(root, schema, value, validator):
        yield path, value, node
        if isinstance(value, dict):
            properties = node.get("properties", {})
            for key, item in value.items():
                if isinstance(properties, dict) and key in properties:
                    yield from _locations(root, properties[key], item, (*path, key), validator, depth + 1)
                elif isinstance(node.get("additionalProperties"), dict):
                    yield from _locations(root, node["additionalProperties"], item, (*path, key), validator, depth + 1)
        elif isinstance(value, list):
            prefix = node.get("prefixItems", [])
            items = node.get("items")
            if isinstance(items, list):  # draft 2019-09 and earlier: a tuple
                prefix, items = items, node.get("additionalItems")
            for index, item in enumerate(value):
                sub = prefix[index] if index < len(prefix) else items
                if isinstance(sub, dict):
                    yield from _locations(root, sub, item, (*path, index), validator, depth + 1)


def _edits(path: Path, value: Any, node: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(keyword, new value at ``path``) for each way to break one keyword of ``node``."""
    types = node.get("type")
    if isinstance(types, str):
        types = [types]
    if isinstance(types, list):
        allowed = set(types) | ({"integer"} if "number" in types else set())
        for name, wrong in _WRONG_TYPE_VALUES:
            if name not in allowed and not (name == "integer" and "number" in allowed):
                yield "type", wrong
                break
    if "enum" in node and isinstance(node["enum"], list):
        yield "enum", _outside(node["enum"], value)
    if "const" in node:
        yield "const", _outside([node["const"]], value)
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        yield from _number_edits(value, node)
    elif isinstance(value, str):
        if isinstance(node.get("minLength"), int) and node["minLength"] > 0:
            yield "minLength", value[: node["minLength"] - 1]
        if isinstance(node.get("maxLength"), int):
            yield "maxLength", value + "x" * (node["maxLength"] + 1 - len(value))
        if isinstance(node.get("pattern"), str):
            for candidate in (*_PATTERN_BREAKERS, value + " ", " " + value, value[:-1]):
                yield "pattern", candidate
    elif isinstance(value, list):
        if isinstance(node.get("minItems"), int) and node["minItems"] > 0:
            yield "minItems", value[: node["minItems"] - 1]
        if isinstance(node.get("maxItems"), int) and value:
            yield "maxItems", value + [value[-1]] * (node["maxItems"] + 1 - len(value))
        if node.get("uniqueItems") is True and value:
            yield "uniqueItems", value + [value[0]]
        if "contains" in node and value:
            yield "contains", []
    elif isinstance(value, dict):
        for key in node.get("required", ()):
            if key in value:
                yield "required", {k: v for k, v in value.items() if k != key}
        if node.get("additionalProperties") is False or node.get("unevaluatedProperties") is False:
            extra = "unexpected_property"
            while extra in value:
                extra += "_"
            keyword = "additionalProperties" if node.get("additionalProperties") is False else "unevaluatedProperties"
            yield keyword, {**value, extra: 0}
        if isinstance(node.get("minProperties"), int) and node["minProperties"] > 0:
            yield "minProperties", dict(list(value.items())[: node["minProperties"] - 1])
        if isinstance(node.get("maxProperties"), int):
            grown = dict(value)
            while len(grown) <= node["maxProperties"]:
                grown[f"extra_{len(grown)}"] = 0
            yield "maxProperties", grown


def _number_edits(value: float, node: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    integral = isinstance(value, int)
    for keyword, sign in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1), ("exclusiveMaximum", 0)):
        bound = node.get(keyword)
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
            continue
        if sign == 0:  # the bound itself is out
            yield keyword, int(bound) if integral and float(bound).is_integer() else bound
        else:
            step = 1 if integral else 0.5
            crossed = bound + sign * step
            yield keyword, int(math.floor(crossed) if sign < 0 else math.ceil(crossed)) if integral else crossed
    multiple = node.get("multipleOf")
    if isinstance(multiple, int | float) and not isinstance(multiple, bool) and multiple > 0:
        yield "multipleOf", value + multiple / 2 if not (integral and multiple == 1) else value + 0.5
    if integral and node.get("type") == "integer":
        yield "type", value + 0.5


def _outside(values: list[Any], value: Any) -> Any:
    """A value of the same kind as ``value`` that is not among ``values``."""
    listed = {json.dumps(v, sort_keys=True) for v in values}
    candidates: list[Any]
    if isinstance(value, str):
        candidates = [value + "_", "_" + value, ""]
    elif isinstance(value, bool):
        candidates = [not value, None]
    elif isinstance(value, int | float):
        candidates = [value + 1, value - 1, -value - 1]
    else:
        candidates = ["not listed", 0, None]
    for candidate in candidates:
        if json.dumps(candidate, sort_keys=True) not in listed:
            return candidate
    return {"not": "listed"}


def counterexamples(schema: Any, n: int = 10, *, seed: int | None = 0,
                    sampler: ExampleSampler | None = None) -> list[Counterexample]:
    """Up to ``n`` instances ``schema`` rejects, each one edit away from a valid instance.

    Every counterexample is checked with the schema's ``jsonschema`` validator (its ``$schema``
    dialect; 2020-12 by default) and kept only when rejected. Keywords come round-robin, so a
    small ``n`` still shows several kinds of mistake. Fewer than ``n`` come back when the schema
    offers fewer edits (``{}`` accepts everything: none).

    Parameters
    ----------
    schema : dict | bool
        A JSON Schema that :func:`constrain.compile_constraint` accepts.
    n : int, default: 10
    seed : int | None, default: 0
        The same seed gives the same counterexamples.
    sampler : ExampleSampler, optional
        Where the valid starting points come from; default: the shared one.
    """
    from jsonschema.validators import Draft202012Validator, validator_for

    from constrain.testing.walker import default_sampler

    sampler = sampler or default_sampler()
    validator = validator_for(schema, default=Draft202012Validator)(schema)
    bases = sampler.examples(schema, n=max(3, min(n, 8)), seed=seed)
    by_keyword: dict[str, list[Counterexample]] = {}
    seen: set[str] = set()
    for base in bases:
        for path, value, node in _locations(schema, schema, base, (), validator):
            for keyword, edited in _edits(path, value, node):
                instance = _replace(base, path, edited)
                try:
                    key = json.dumps(instance, sort_keys=True)
                except (TypeError, ValueError):
                    continue
                if key in seen or validator.is_valid(instance):
                    continue
                seen.add(key)
                by_keyword.setdefault(keyword, []).append(Counterexample(instance, keyword, _pointer(path)))
    rng = np.random.default_rng(seed)
    pools = [by_keyword[k] for k in sorted(by_keyword)]
    for pool in pools:
        rng.shuffle(pool)
    out: list[Counterexample] = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return out
