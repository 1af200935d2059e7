"""``allOf``, ``anyOf``, ``oneOf``, ``not``, ``if``/``then``/``else`` and ``dependent*`` on Dnf form.

* ``allOf`` (and ``$ref`` with siblings): the product of the members' Dnfs, flat by flat
  (``merge``), dropping empty combinations.
* ``not``: the complement of each flat is the union of "the wrong type" and "the right type,
  one keyword violated" (``negate``); keywords whose violation is not expressible raise.
* ``oneOf``: branch i AND NOT every branch j that it may overlap; branches proven
  disjoint (their merge is empty) need no complement, which is the common case.
* ``if``/``then``/``else``: ``(if AND then) OR (NOT if AND else)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from constrain.deadline import check_deadline
from constrain.errors import CompileTimeoutError
from constrain.schema import arrays, objects, scalars
from constrain.schema.check import is_valid_instance
from constrain.schema.flat import (
    ALL_KINDS,
    ARRAY_RULES,
    MAX_BRANCHES,
    VALUE_CHECKS,
    WHOLE_CHECK,
    Dnf,
    Flat,
    from_node,
    kinds_of,
    set_kinds,
    to_node,
    unsupported,
)


class Algebra:
    """Set operations on Dnfs. ``deref`` expands a ``$ref`` flat; ``valid`` checks a value against a flat."""

    def __init__(self, deref: Callable[[Flat, str], Dnf], valid: Callable[[Any, Flat], bool],
                 finish_arrays: Callable[[Flat, str], Dnf] | None = None) -> None:
        self.deref = deref
        self.valid = valid
        # A merged flat whose uniqueItems/contains must be decided again (nested merges included).
        self.finish_arrays = finish_arrays

    # ------------------------------------------------------------------ and

    def product(self, a: Dnf, b: Dnf, pointer: str) -> Dnf:
        out: Dnf = []
        for x in a:
            check_deadline()
            for y in b:
                out.extend(self.merge(x, y, pointer))
                if len(out) > MAX_BRANCHES:
                    raise unsupported(f"combining these subschemas needs more than {MAX_BRANCHES} alternatives",
                                      "allOf", pointer)
        return _dedupe(out)

    def all_of(self, parts: list[Dnf], pointer: str) -> Dnf:
        result: Dnf = [{}]
        for part in parts:  # in order: the engine keeps properties in the order they are declared
            result = self.product(result, part, pointer)
            if not result:
                break
        return result

    def conj(self, nodes: list[Any], pointer: str) -> Any:
        """The normalised node for the conjunction of normalised nodes."""
        nodes = [n for n in nodes if n is not True and n != {}]
        if not nodes:
            return {}
        if len(nodes) == 1:
            return nodes[0]
        return to_node(self.all_of([from_node(n) for n in nodes], pointer))

    def merge(self, a: Flat, b: Flat, pointer: str) -> Dnf:
        """``a`` AND ``b`` for two flats."""
        if VALUE_CHECKS in a or VALUE_CHECKS in b:  # the product's values must pass both flats' checks
            checks = [*a.get(VALUE_CHECKS, []), *(c for c in b.get(VALUE_CHECKS, []) if c not in a.get(VALUE_CHECKS, []))]
            plain = self.merge(without_checks(a), without_checks(b), pointer)
            return [f for f in (self.check_later(flat, checks) for flat in plain) if f is not None]
        if not a:
            return [b]
        if not b:
            return [a]
        if "$ref" in a:
            return self.product(self.deref(a, pointer), [b], pointer)
        if "$ref" in b:
            return self.product([a], self.deref(b, pointer), pointer)
        if set(a) == {"enum"} and set(b) == {"enum"} and _scalars(a["enum"]) and _scalars(b["enum"]):
            kept = {_key(v) for v in b["enum"]}
            values = [v for v in a["enum"] if _key(v) in kept]
            return [{"enum": values}] if values else []
        if "enum" in a or "enum" in b:
            listed, other = (a, b) if "enum" in a else (b, a)
            values = [v for v in listed["enum"] if self.valid(v, other)]
            return [{"enum": values}] if values else []
        out: Flat = {}
        scalars.merge(a, b, out, pointer)
        objects.merge(a, b, out, self.conj, pointer)
        arrays.merge(a, b, out, self.conj, pointer)
        kinds = kinds_of(a) & kinds_of(b)
        if kinds != ALL_KINDS:
            out["type"] = sorted(kinds)  # set properly by prune
        pruned = self.prune(out, kinds, pointer)
        if self.finish_arrays is None or not any(k in out for k in ARRAY_RULES):
            return pruned
        return [done for flat in pruned for done in self.finish_arrays(flat, pointer)]

    def check_later(self, flat: Flat, checks: list[list[str]]) -> Flat | None:
        """``flat`` whose finished values must also pass ``checks`` (``[keyword, schema text, pointer]``):
        listed values are checked now; None when none passes."""
        if "enum" in flat:
            values = [v for v in flat["enum"] if all(is_valid_instance(text, v) for _, text, _ in checks)]
            return {**flat, "enum": values} if values else None
        return {**flat, VALUE_CHECKS: checks}

    def prune(self, flat: Flat, kinds: frozenset[str] | None = None, pointer: str = "") -> Dnf:
        """``[flat]`` with the kinds no value can have removed from its type; ``[]`` when none is left."""
        if "enum" in flat:
            return [flat] if flat["enum"] else []
        if "$ref" in flat:
            return [flat]
        live = set(kinds_of(flat) if kinds is None else kinds)
        flat.pop("type", None)
        if "string" in live and not scalars.string_feasible(flat):
            live.discard("string")
        integers_fit = True
        if live & {"integer", "float"}:
            possible = scalars.number_kinds(flat)
            live -= {"integer", "float"} - possible
            integers_fit = "integer" in possible
        if "object" in live and not objects.feasible(flat):
            live.discard("object")
        if "array" in live and not arrays.feasible(flat):
            live.discard("array")
        if "float" in live and "integer" not in live:
            if integers_fit:
                live.discard("float")  # never unsound: a non-integer-only number set is not expressible
            else:
                live.add("integer")  # the bounds hold no integer: `number` within them is that set, exactly
        result = set_kinds(flat, live, pointer)
        return [] if result is None else [result]

    # ------------------------------------------------------------------ not

    def kinds(self, dnf: Dnf) -> frozenset[str]:
        """The kinds a Dnf may admit (all for a reference: not looked into)."""
        out: set[str] = set()
        for flat in dnf:
            if "$ref" in flat:
                return ALL_KINDS
            if "enum" in flat:
                out.update(_value_kind(v) for v in flat["enum"])
            else:
                out.update(kinds_of(flat))
        return frozenset(out)

    def negate(self, dnf: Dnf, pointer: str, within: frozenset[str] | None = None) -> Dnf:
        """The complement of a Dnf, restricted to the kinds ``within`` (raises where not expressible)."""
        result: Dnf = [{}]
        for flat in dnf:
            result = self.product(result, self.negate_flat(flat, pointer, within), pointer)
            if not result:
                break
        return result

    def negate_node(self, node: Any, pointer: str) -> Any:
        return to_node(self.negate(from_node(node), pointer))

    def negate_flat(self, flat: Flat, pointer: str, within: frozenset[str] | None = None) -> Dnf:
        if not flat:
            return []
        if VALUE_CHECKS in flat:
            keyword = flat[VALUE_CHECKS][0][0]
            raise unsupported(f"the complement of a `{keyword}` checked while generating cannot be expressed",
                              keyword, pointer)
        if "$ref" in flat:
            return self.negate(self.deref(flat, pointer), pointer, within)
        if "enum" in flat:
            return self._negate_enum(flat["enum"], pointer)
        kinds = kinds_of(flat)
        out: Dnf = []
        others = (ALL_KINDS - kinds) & (ALL_KINDS if within is None else within)
        if others:
            if "float" in others and "integer" not in others:
                raise unsupported("`not` of an integer type (non-integer numbers) cannot be expressed", "not",
                                  pointer)
            wrong = set_kinds({}, others | ({"float"} if "integer" in others else set()), pointer)
            if wrong is not None:
                out.append(wrong)
        body = {k: v for k, v in flat.items() if k != "type"}
        for part in (scalars.negate(body, pointer), objects.negate(body, self.negate_node, pointer),
                     arrays.negate(body, self.negate_node, pointer)):
            for f in part:
                out.extend(self.merge({"type": flat["type"]} if "type" in flat else {}, f, pointer))
        return _dedupe(out)

    def _negate_enum(self, values: list[Any], pointer: str) -> Dnf:
        kinds = set(ALL_KINDS)
        out: Dnf = []
        if any(v is None for v in values):
            kinds.discard("null")
        booleans = {v for v in values if isinstance(v, bool)}
        if booleans:
            kinds.discard("boolean")
            rest = [b for b in (False, True) if b not in booleans]
            if rest:
                out.append({"enum": rest})
        numbers = sorted({v for v in values if isinstance(v, int | float) and not isinstance(v, bool)})
        if numbers:
            kinds -= {"integer", "float"}
            out.append({"type": "number", "exclusiveMaximum": numbers[0]})
            out.extend({"type": "number", "exclusiveMinimum": lo, "exclusiveMaximum": hi}
                       for lo, hi in zip(numbers, numbers[1:], strict=False))
            out.append({"type": "number", "exclusiveMinimum": numbers[-1]})
        strings = [v for v in values if isinstance(v, str)]
        if strings:
            kinds.discard("string")
            out.append({"type": "string", "pattern": scalars.not_one_of_strings(strings)})
        if any(isinstance(v, dict | list) for v in values):
            raise unsupported("`not` of an enum holding objects or arrays cannot be expressed", "not", pointer)
        rest_flat = set_kinds({}, kinds, pointer)
        if rest_flat is not None:
            out.append(rest_flat)
        return out

    # ------------------------------------------------------------------ oneOf, if

    def disjoint(self, a: Dnf, b: Dnf, pointer: str) -> bool:
        try:
            return all(not self.merge(x, y, pointer) for x in a for y in b)
        except CompileTimeoutError:
            raise
        except Exception:  # undecidable here (for example a recursive $ref): assume they overlap
            return False

    def one_of(self, context: Dnf, branches: list[Dnf], pointer: str, branches_first: bool = False) -> Dnf:
        """``context AND oneOf(branches)`` (the branches' properties first when the document says so)."""
        scoped = [self.product(b, context, pointer) if branches_first else self.product(context, b, pointer)
                  for b in branches]
        only_values = _one_of_values(scoped)
        if only_values is not None:
            return only_values
        out: Dnf = []
        for i, term in enumerate(scoped):
            check_deadline()
            for j, other in enumerate(scoped):
                if i == j or not term:
                    continue
                if not self.disjoint(term, other, pointer):
                    try:
                        within = self.kinds(term)
                        term = self.product(term, self.negate(branches[j], pointer, within), pointer)
                    except CompileTimeoutError:
                        raise
                    except Exception as exc:
                        raise unsupported(
                            f"oneOf branches {i} and {j} may both match, and branch {j} has no exact complement "
                            f"({getattr(exc, 'message', exc)})", "oneOf", pointer) from None
            out.extend(term)
        return _dedupe(out)

    def if_then_else(self, context: Dnf, cond: Dnf, then: Dnf, otherwise: Dnf, pointer: str) -> Dnf:
        yes = self.product(self.product(context, cond, pointer), then, pointer)
        try:
            opposite = self.negate(cond, pointer, self.kinds(context))
        except CompileTimeoutError:
            raise
        except Exception as exc:
            raise unsupported(f"the `if` condition has no exact complement ({getattr(exc, 'message', exc)})", "if",
                              pointer) from None
        no = self.product(self.product(context, opposite, pointer), otherwise, pointer)
        return _dedupe(yes + no)


def without_checks(flat: Flat) -> Flat:
    """``flat`` without its value checks (a product keeps them apart, and is no whole-node check)."""
    if VALUE_CHECKS not in flat and WHOLE_CHECK not in flat:
        return flat
    return {k: v for k, v in flat.items() if k not in (VALUE_CHECKS, WHOLE_CHECK)}


def _value_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "float"
    names: dict[type, str] = {dict: "object", list: "array", str: "string"}
    return names[type(value)]


def _scalars(values: list[Any]) -> bool:
    return all(v is None or isinstance(v, str | int | float) for v in values)


def _key(value: Any) -> tuple[str, Any]:
    """A scalar's identity under JSON Schema equality: 1 equals 1.0, true is not 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    return (type(value).__name__, value)


def _one_of_values(scoped: list[Dnf]) -> Dnf | None:
    """``oneOf`` of branches that only list scalar values: the values exactly one branch lists,
    in one pass (the pairwise path below is quadratic in the branches). None otherwise."""
    if not scoped or not all(len(t) <= 1 and all(set(f) == {"enum"} and _scalars(f["enum"]) for f in t)
                             for t in scoped):
        return None
    counts: dict[tuple[str, Any], int] = {}
    for term in scoped:
        for key in {_key(v) for f in term for v in f["enum"]}:
            counts[key] = counts.get(key, 0) + 1
    values: list[Any] = []
    seen: set[tuple[str, Any]] = set()
    for term in scoped:
        for value in (v for f in term for v in f["enum"]):
            key = _key(value)
            if counts[key] == 1 and key not in seen:
                seen.add(key)
                values.append(value)
    return [{"enum": values}] if values else []


def _dedupe(dnf: Dnf) -> Dnf:
    seen: list[Flat] = []
    for flat in dnf:
        if flat not in seen:
            seen.append(flat)
    return seen
