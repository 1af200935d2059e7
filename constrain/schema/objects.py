"""Object keywords: intersection, complement, emptiness, and ``propertyNames``/``dependent*`` rewrites.

``properties``, ``patternProperties`` and ``additionalProperties`` are merged key by key:
a name in either ``properties`` gets the conjunction of what each side says about that
name (its own schema, the patterns it matches, else that side's ``additionalProperties``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from constrain.schema.flat import Dnf, Flat, is_true, kinds_of, unsupported

Conj = Callable[[list[Any], str], Any]


def _search(pattern: str, name: str) -> bool:
    try:
        return re.search(pattern, name) is not None
    except re.error:
        raise unsupported(f"patternProperties regex {pattern!r} cannot be matched against property names",
                          "patternProperties", "") from None


def schemas_for(flat: Flat, name: str) -> list[Any]:
    """Every schema ``flat`` applies to the value of property ``name`` (empty: anything goes)."""
    out: list[Any] = []
    properties = flat.get("properties", {})
    if name in properties:
        out.append(properties[name])
    matched = [s for p, s in flat.get("patternProperties", {}).items() if _search(p, name)]
    out.extend(matched)
    if name not in properties and not matched and "additionalProperties" in flat:
        out.append(flat["additionalProperties"])
    return [s for s in out if not is_true(s)]


def merge(a: Flat, b: Flat, out: Flat, conj: Conj, pointer: str) -> None:
    """Write into ``out`` the object keywords of ``a`` AND ``b``."""
    names = list(dict.fromkeys([*a.get("properties", {}), *b.get("properties", {})]))
    if names:
        out["properties"] = {n: conj([*schemas_for(a, n), *schemas_for(b, n)], f"{pointer}/properties/{n}")
                             for n in names}
    pa, pb = a.get("patternProperties", {}), b.get("patternProperties", {})
    ea, eb = a.get("additionalProperties"), b.get("additionalProperties")
    if pa and pb and set(pa) != set(pb):
        raise unsupported("combining objects with different patternProperties cannot be expressed exactly",
                          "patternProperties", pointer)
    if pa or pb:
        patterns: dict[str, Any] = {}
        for p in dict.fromkeys([*pa, *pb]):
            parts = [pa[p]] if p in pa else ([ea] if ea is not None else [])
            parts += [pb[p]] if p in pb else ([eb] if eb is not None else [])
            patterns[p] = conj(parts, f"{pointer}/patternProperties")
        out["patternProperties"] = patterns
    if ea is not None or eb is not None:
        out["additionalProperties"] = conj([e for e in (ea, eb) if e is not None],
                                           f"{pointer}/additionalProperties")
    required = list(dict.fromkeys([*a.get("required", []), *b.get("required", [])]))
    if required:
        out["required"] = required
    for key, pick in (("minProperties", max), ("maxProperties", min)):
        values = [x[key] for x in (a, b) if key in x]
        if values:
            out[key] = pick(values)


def feasible(flat: Flat) -> bool:
    """Whether some object satisfies the object keywords."""
    required = flat.get("required", [])
    if any(s is False for name in required for s in schemas_for(flat, name)):
        return False
    low, high = flat.get("minProperties", 0), flat.get("maxProperties")
    if high is not None and (low > high or len(set(required)) > high):
        return False
    if flat.get("additionalProperties") is False and not flat.get("patternProperties"):
        allowed = [n for n, s in flat.get("properties", {}).items() if s is not False]
        if low > len(allowed):
            return False
    return True


MAX_COUNT_SPLIT = 6  # optional properties whose presence is spelled out: at most 2**6 = 64 branches


def fold_match_all(flat: Flat, matches_all: Callable[[str], bool], conj: Conj, pointer: str) -> Flat:
    """A pattern property that every name matches (``.*``, ``a*``: a search finds the empty match)
    applies its schema S to every property: so S joins each declared property and each other
    pattern, and becomes what the remaining names get (``additionalProperties`` never applied to
    them). Exact, and it leaves the engine patterns that need not overlap."""
    patterns = flat.get("patternProperties", {})
    every = [p for p in patterns if matches_all(p)]
    if not every:
        return flat
    shared = conj([patterns[p] for p in every], f"{pointer}/patternProperties")
    out = dict(flat)
    out["properties"] = {n: conj([sub, shared], f"{pointer}/properties") for n, sub in flat.get("properties", {}).items()}
    others = {p: conj([sub, shared], f"{pointer}/patternProperties") for p, sub in patterns.items() if p not in every}
    if others:
        out["patternProperties"] = others
    else:
        del out["patternProperties"]
    if not out["properties"]:
        del out["properties"]
    out["additionalProperties"] = shared
    return out


def split_counts(flat: Flat) -> Dnf:
    """``minProperties``/``maxProperties`` next to optional properties, as branches the engine counts.

    The engine counts properties only when every declared property is required (or ``false``).
    So each branch fixes which optional properties are present (required) and which are absent
    (``false``); the branches are disjoint and together exact. Bounds that the required names, or
    the declared names alone, already meet are dropped first.
    """
    low, high = flat.get("minProperties", 0), flat.get("maxProperties")
    if (not low and high is None) or "$ref" in flat or "object" not in kinds_of(flat):
        return [flat]
    properties = flat.get("properties", {})
    required = list(dict.fromkeys(flat.get("required", [])))
    optional = [n for n, s in properties.items() if s is not False and n not in required]
    closed = flat.get("additionalProperties") is False and not flat.get("patternProperties")
    out = dict(flat)
    if low <= len(required):
        out.pop("minProperties", None)
    if high is not None and closed and len(required) + len(optional) <= high:
        out.pop("maxProperties", None)
    if ("minProperties" not in out and "maxProperties" not in out) or not optional:
        return [out]
    if len(optional) > MAX_COUNT_SPLIT:
        return [out]  # the engine names the limit
    branches: Dnf = []
    for bits in range(1 << len(optional)):
        present = [n for i, n in enumerate(optional) if bits >> i & 1]
        count = len(required) + len(present)
        if (high is not None and count > high) or (closed and count < low):
            continue
        branch = dict(out)
        branch["required"] = [*required, *present]
        branch["properties"] = {n: (False if n in optional and n not in present else s)
                                for n, s in properties.items()}
        if closed:  # nothing else can be present: the count is fixed and was checked
            branch.pop("minProperties", None)
            branch.pop("maxProperties", None)
        branches.append(branch)
    return branches


def negate(flat: Flat, negate_node: Callable[[Any, str], Any], pointer: str) -> Dnf:
    """Objects that violate one of ``flat``'s object keywords."""
    out: Dnf = []
    for name in flat.get("required", []):
        out.append({"type": "object", "properties": {name: False}})
    for name, schema in flat.get("properties", {}).items():
        opposite = negate_node(schema, f"{pointer}/properties/{name}")
        if opposite is not False:
            out.append({"type": "object", "required": [name], "properties": {name: opposite}})
    patterns = {p: s for p, s in flat.get("patternProperties", {}).items() if not is_true(s)}
    if patterns:
        raise unsupported("`not` of patternProperties cannot be expressed exactly", "patternProperties", pointer)
    extra = flat.get("additionalProperties")
    if extra is not None and not is_true(extra):
        if extra is False and not flat.get("properties") and not flat.get("patternProperties"):
            out.append({"type": "object", "minProperties": 1})
        else:
            raise unsupported("`not` of additionalProperties cannot be expressed exactly",
                              "additionalProperties", pointer)
    if flat.get("minProperties", 0) > 0:
        out.append({"type": "object", "maxProperties": flat["minProperties"] - 1})
    if "maxProperties" in flat:
        out.append({"type": "object", "minProperties": flat["maxProperties"] + 1})
    return out


def property_names(flat: Flat, names: Dnf, name_regex: Callable[[Flat], str | None], conj: Conj,
                   pointer: str) -> Flat:
    """``flat`` AND ``propertyNames: names``, as properties/patternProperties/additionalProperties."""
    where = f"{pointer}/propertyNames"
    strings = [f for f in names if "string" in _kinds(f)]
    if any(set(f) - {"type"} == set() for f in strings):
        return flat  # every string is a valid name
    out = dict(flat)
    if not strings:
        out["maxProperties"] = 0
        return out
    values: list[str] = []
    regexes: list[str] = []
    for f in strings:
        if "enum" in f:
            values.extend(v for v in f["enum"] if isinstance(v, str))
            continue
        regex = name_regex(f)
        if regex is None:
            raise unsupported("this propertyNames schema cannot be turned into a name pattern", "propertyNames",
                              where)
        regexes.append(regex)
    if regexes and values:
        raise unsupported("propertyNames mixing patterns and enumerated names", "propertyNames", where)
    properties = dict(flat.get("properties", {}))
    if values:
        allowed = list(dict.fromkeys(values))
        new_props = {n: s for n, s in properties.items() if n in allowed}
        for n in properties:
            if n not in allowed:
                new_props[n] = False
        for n in allowed:
            if n not in properties:
                new_props[n] = conj(schemas_for(flat, n), f"{where}/{n}")
        out["properties"] = new_props
        out.pop("patternProperties", None)
        out["additionalProperties"] = False
        return out
    if flat.get("patternProperties"):
        raise unsupported("propertyNames together with patternProperties cannot be expressed exactly",
                          "propertyNames", where)
    combined = regexes[0] if len(regexes) == 1 else "|".join(f"(?:{r})" for r in regexes)
    for n in properties:
        if re.search(combined, n) is None:
            properties[n] = False
    if properties:
        out["properties"] = properties
    extra = flat.get("additionalProperties", {})
    out["patternProperties"] = {combined: extra}
    out["additionalProperties"] = False
    return out


def _kinds(flat: Flat) -> set[str]:
    if "enum" in flat:
        return {"string"} if any(isinstance(v, str) for v in flat["enum"]) else set()
    return set(kinds_of(flat))
