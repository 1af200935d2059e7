"""Array keywords: intersection, complement, emptiness, and the exact forms of ``uniqueItems``/``contains``.

``uniqueItems`` is exact in the grammar when at most one item can exist, or when items come
from a small finite set (each ordering of distinct values is spelled out); ``contains`` when
every possible item satisfies it (its counts are then lengths). Otherwise, when the caller
allows it, the array is marked for the matcher (``schema/array_rules.py``), which keeps items
distinct and counts the items matching ``contains`` while tokens are generated. Anything
else is an UnsupportedSchemaError: a looser mask is never an option.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from constrain.schema.flat import (
    CONTAINS_AT_RUNTIME,
    CONTAINS_SOURCE,
    MAX_BRANCHES,
    UNIQUE_AT_RUNTIME,
    Dnf,
    Flat,
    is_true,
    unsupported,
)

Conj = Callable[[list[Any], str], Any]


def _at(flat: Flat, index: int) -> Any:
    prefix = flat.get("prefixItems", [])
    if index < len(prefix):
        return prefix[index]
    return flat.get("items", True)


def merge(a: Flat, b: Flat, out: Flat, conj: Conj, pointer: str) -> None:
    """Write into ``out`` the array keywords of ``a`` AND ``b``."""
    length = max(len(a.get("prefixItems", [])), len(b.get("prefixItems", [])))
    if length:
        out["prefixItems"] = [conj([s for s in (_at(a, i), _at(b, i)) if not is_true(s)],
                                   f"{pointer}/prefixItems/{i}") for i in range(length)]
    if "items" in a or "items" in b:
        out["items"] = conj([x["items"] for x in (a, b) if "items" in x], f"{pointer}/items")
    for key, pick in (("minItems", max), ("maxItems", min)):
        values = [x[key] for x in (a, b) if key in x]
        if values:
            out[key] = pick(values)
    if any(x.get(k) for x in (a, b) for k in ("uniqueItems", UNIQUE_AT_RUNTIME)):
        out["uniqueItems"] = True  # finish() decides again, on the merged items
    if "contains" in a and "contains" in b:
        raise unsupported("two `contains` in one schema cannot be combined", "contains", pointer)
    for x in (a, b):
        for key in ("contains", "minContains", "maxContains", CONTAINS_SOURCE):
            if key in x:
                out[key] = x[key]


def feasible(flat: Flat) -> bool:
    low, high = flat.get("minItems", 0), flat.get("maxItems")
    if high is not None and low > high:
        return False
    prefix = flat.get("prefixItems", [])
    if any(s is False for s in prefix[:low]):
        return False
    return not (flat.get("items") is False and low > len(prefix))


def negate(flat: Flat, negate_node: Callable[[Any, str], Any], pointer: str) -> Dnf:
    """Arrays that violate one of ``flat``'s array keywords."""
    out: Dnf = []
    if flat.get("minItems", 0) > 0:
        out.append({"type": "array", "maxItems": flat["minItems"] - 1})
    if "maxItems" in flat:
        out.append({"type": "array", "minItems": flat["maxItems"] + 1})
    prefix = flat.get("prefixItems", [])
    for index, schema in enumerate(prefix):
        opposite = negate_node(schema, f"{pointer}/prefixItems/{index}")
        if opposite is not False:
            out.append({"type": "array", "minItems": index + 1, "prefixItems": [*([{}] * index), opposite]})
    items = flat.get("items")
    if items is False:
        out.append({"type": "array", "minItems": len(prefix) + 1})
    elif items is not None and not is_true(items):
        raise unsupported("`not` of items (some item violating a schema) cannot be expressed exactly", "items",
                          pointer)
    for key in ("uniqueItems", "contains", UNIQUE_AT_RUNTIME):
        if flat.get(key):
            keyword = "uniqueItems" if key == UNIQUE_AT_RUNTIME else key
            raise unsupported(f"`not` of {keyword} cannot be expressed exactly", keyword, pointer)
    return out


def finish(flat: Flat, values_of: Callable[[Any], list[Any] | None], conj: Conj, pointer: str,
           at_runtime: bool = False) -> Dnf:
    """``flat`` with ``uniqueItems`` and ``contains`` rewritten into exact native forms (or an error).

    With ``at_runtime``, a ``uniqueItems`` over unbounded items, or a ``contains`` that is not
    about every item, is left to the matcher: the flat keeps a marker that ``schema/array_rules.py``
    turns into a path the matcher watches.
    """
    if "contains" in flat or "minContains" in flat or "maxContains" in flat:
        flat = _contains(flat, conj, pointer, at_runtime)
    if not flat.get("uniqueItems"):
        flat.pop("uniqueItems", None)
        return [flat]
    flat = dict(flat)
    del flat["uniqueItems"]
    if flat.get("maxItems", 1) <= 1 and "maxItems" in flat:
        return [flat]
    prefix = flat.get("prefixItems", [])
    high = flat.get("maxItems")
    if flat.get("items") is False:
        high = len(prefix) if high is None else min(high, len(prefix))
    # Every item from a finite set: spell out each sequence of distinct values.
    no_more = flat.get("items") is False or (high is not None and high <= len(prefix))
    item_values = [] if no_more else values_of(flat.get("items", True))
    choices = [values_of(_at(flat, i)) for i in range(len(prefix))]
    spelled = item_values is not None and all(c is not None for c in choices) and CONTAINS_AT_RUNTIME not in flat
    if not spelled and at_runtime:
        return [{**flat, UNIQUE_AT_RUNTIME: True}]
    if item_values is None or any(c is None for c in choices):
        raise unsupported("uniqueItems is exact only when items come from a finite set (enum, const, boolean, "
                          "null) or maxItems <= 1", "uniqueItems", pointer)
    pool = _dedupe([*item_values, *(v for c in choices for v in c)])  # type: ignore[union-attr]
    longest = len(pool) if high is None else min(high, len(pool))
    out: Dnf = []
    low = flat.get("minItems", 0)
    for length in range(low, longest + 1):
        for combo in itertools.permutations(range(len(pool)), length):
            values = [pool[i] for i in combo]
            if all(_member(values[i], choices[i] if i < len(prefix) else item_values) for i in range(length)):
                out.append({"enum": [values]})
                if len(out) > MAX_BRANCHES * 8:
                    if at_runtime:  # too many to spell out: the matcher keeps them distinct instead
                        return [{**flat, UNIQUE_AT_RUNTIME: True}]
                    raise unsupported("uniqueItems over this many values spells out too many arrays",
                                      "uniqueItems", pointer)
    return [{"enum": [v for f in out for v in f["enum"]]}] if out else []


def _member(value: Any, pool: list[Any] | None) -> bool:
    return pool is not None and any(_equal(value, v) for v in pool)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not any(_equal(v, w) for w in out):
            out.append(v)
    return out


def _counts_are_lengths(flat: Flat, low: int, high: int | None) -> Flat:
    """Every item matches ``contains``: its bounds are bounds on the array's length."""
    if low:
        flat["minItems"] = max(flat.get("minItems", 0), low)
    if high is not None:
        flat["maxItems"] = min(flat.get("maxItems", high), high)
    return flat


def _contains(flat: Flat, conj: Conj, pointer: str, at_runtime: bool) -> Flat:
    where = f"{pointer}/contains"
    flat = dict(flat)
    source = flat.pop(CONTAINS_SOURCE, None)
    flat.pop(CONTAINS_AT_RUNTIME, None)
    if "contains" not in flat:  # minContains/maxContains without contains say nothing
        flat.pop("minContains", None)
        flat.pop("maxContains", None)
        return flat
    schema = flat.pop("contains")
    low = flat.pop("minContains", 1)
    high = flat.pop("maxContains", None)
    if high is not None and high < low:
        flat["minItems"], flat["maxItems"] = 1, 0  # no count fits: no array
        return flat
    if low == 0 and high is None:
        return flat  # at least zero matches: every array
    if schema is True or schema == {}:
        return _counts_are_lengths(flat, low, high)  # every item matches
    if schema is False:
        if low:
            flat["minItems"], flat["maxItems"] = 1, 0  # no array can contain a match of `false`
        return flat
    if not flat.get("prefixItems") and "items" in flat:
        # Every item already satisfies `contains` when items AND contains == items: counts are lengths.
        if conj([flat["items"], schema], where) == flat["items"]:
            return _counts_are_lengths(flat, low, high)
    if not at_runtime or source is None:
        reason = "its schema uses references" if at_runtime else "not every item satisfies it"
        raise unsupported(f"contains cannot be enforced exactly here: {reason}", "contains", where)
    if low and "maxItems" in flat:
        # The matcher cannot look ahead: it could fill the array with non-matching items first.
        raise unsupported("contains with minContains > 0 next to maxItems cannot be enforced without dead ends",
                          "contains", where)
    # Kept as written (for later intersections and value checks) and marked for the matcher.
    kept = {"contains": schema, "minContains": low, **({} if high is None else {"maxContains": high})}
    return {**flat, **kept, CONTAINS_SOURCE: source,
            CONTAINS_AT_RUNTIME: {"schema": source, "min": low, "max": high}}
