"""String and number keywords: intersection (``allOf``), complement (``not``), emptiness.

``format``/``pattern`` stay in their JSON Schema spelling here; ``strings.rewrite_string_keywords``
turns them into engine regexes once the node is final. A second, different pattern is kept in
``_patterns`` (the engine intersects patterns) until then.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from constrain.schema.flat import Dnf, Flat, unsupported


def _tighter(a: Any, b: Any, pick: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


def merge(a: Flat, b: Flat, out: Flat, pointer: str) -> None:
    """Write into ``out`` the string and number keywords of ``a`` AND ``b``."""
    for key, pick in (("minLength", max), ("maxLength", min), ("minimum", max), ("maximum", min),
                      ("exclusiveMinimum", max), ("exclusiveMaximum", min)):
        value = _tighter(a.get(key), b.get(key), pick)
        if value is not None:
            out[key] = value
    patterns = [p for p in (a.get("pattern"), *a.get("_patterns", ()), b.get("pattern"), *b.get("_patterns", ()))
                if p is not None]
    patterns = list(dict.fromkeys(patterns))
    if patterns:
        out["pattern"] = patterns[0]
        if len(patterns) > 1:
            out["_patterns"] = patterns[1:]
    for key in ("format", "contentEncoding", "contentMediaType", "contentSchema"):
        if key in a and key in b and a[key] != b[key]:
            raise unsupported(f"two different `{key}` values in one schema cannot be combined", key, pointer)
        if key in a or key in b:
            out[key] = a.get(key, b.get(key))
    step = _multiple(a.get("multipleOf"), b.get("multipleOf"), pointer)
    if step is not None:
        out["multipleOf"] = step


def _multiple(a: Any, b: Any, pointer: str) -> Any:
    if a is None or b is None or a == b:
        return a if b is None else b
    fa, fb = Fraction(str(a)), Fraction(str(b))
    if (fa / fb).denominator == 1:
        return a
    if (fb / fa).denominator == 1:
        return b
    lcm = _lcm(fa, fb)
    if lcm.denominator == 1:
        return int(lcm)
    raise unsupported("two `multipleOf` values whose common multiple is not an integer", "multipleOf", pointer)


# llguidance builds a divisibility automaton with one state per remainder, eagerly: 10^5 takes
# ~0.1 s, 10^6 ~3 s, 10^8 does not finish. Larger integer steps are refused, never left to hang.
MAX_INTEGER_STEP = 100_000


def integer_step(flat: Flat, pointer: str = "") -> Flat:
    """An integer multiple of a/b (in lowest terms) is exactly a multiple of a: b must divide the
    factor. So ``{"type": "integer", "multipleOf": 0.5}`` is every integer, and a fractional step
    becomes an integer one the engine can spell (it refuses steps with many decimals)."""
    step = flat.get("multipleOf")
    if step is None:
        return flat
    out = dict(flat)
    if flat.get("type") == "integer" and not float(step).is_integer():
        step = Fraction(str(step)).numerator
        if step == 1:
            del out["multipleOf"]
            return out
        out["multipleOf"] = step
    if float(step).is_integer() and abs(step) > MAX_INTEGER_STEP:
        raise unsupported(f"multipleOf {step} is too large for the engine (at most {MAX_INTEGER_STEP:,} for a "
                          "whole-number step)", "multipleOf", pointer)
    return out


def decimal_spellings(flat: Flat) -> Flat:
    """A number with a fractional step, spelled with every count of decimals up to the step's.

    llguidance spells a multiple of c*10^-e as an integer or with exactly e decimals, so
    ``{"multipleOf": 0.25}`` refused ``0.5`` and ``2.0``. The multiples written with k < e decimals
    are exactly the multiples of lcm(step, 10^-k), which the engine spells with k decimals: an
    ``anyOf`` of those steps holds every spelling with at most e decimals (more is still refused).
    """
    step = flat.get("multipleOf")
    if step is None or flat.get("type") != "number" or float(step).is_integer():
        return flat
    fraction = Fraction(str(step))
    steps: list[Any] = []
    for k in range(1, _decimals(fraction)):
        common = _lcm(fraction, Fraction(1, 10**k))
        spelled = int(common) if common.denominator == 1 else float(common)
        if spelled not in steps and spelled != step and not float(spelled).is_integer():
            steps.append(spelled)
    if not steps:
        return flat
    return {"anyOf": [flat, *({**flat, "multipleOf": s} for s in steps)]}


def _lcm(a: Fraction, b: Fraction) -> Fraction:
    """The least common multiple of two positive fractions in lowest terms."""
    return Fraction(math.lcm(a.numerator, b.numerator), math.gcd(a.denominator, b.denominator))


def _decimals(fraction: Fraction) -> int:
    """How many decimals a terminating fraction needs (0 for an integer)."""
    count = 0
    while fraction.denominator != 1:
        fraction *= 10
        count += 1
        if count > 30:
            break
    return count


def string_feasible(flat: Flat) -> bool:
    low, high = flat.get("minLength", 0), flat.get("maxLength")
    return high is None or low <= high


def number_kinds(flat: Flat) -> set[str]:
    """Which of integer/float remain possible under the bounds (multipleOf ignored: never unsound)."""
    low, high = flat.get("minimum"), flat.get("maximum")
    xlow, xhigh = flat.get("exclusiveMinimum"), flat.get("exclusiveMaximum")
    lo = max((Fraction(str(v)) for v in (low, xlow) if v is not None), default=None)
    hi = min((Fraction(str(v)) for v in (high, xhigh) if v is not None), default=None)
    lo_open = xlow is not None and lo == Fraction(str(xlow))
    hi_open = xhigh is not None and hi == Fraction(str(xhigh))
    if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_open or hi_open))):
        return set()
    kinds = {"float"}
    first = None if lo is None else (math.floor(lo) + 1 if lo_open else math.ceil(lo))
    last = None if hi is None else (math.ceil(hi) - 1 if hi_open else math.floor(hi))
    if first is None or last is None or first <= last:
        kinds.add("integer")
    return kinds


def negate(flat: Flat, pointer: str) -> Dnf:
    """Strings or numbers that violate one of ``flat``'s string/number keywords."""
    out: Dnf = []
    if flat.get("minLength", 0) > 0:
        out.append({"type": "string", "maxLength": flat["minLength"] - 1})
    if "maxLength" in flat:
        out.append({"type": "string", "minLength": flat["maxLength"] + 1})
    for key, opposite in (("minimum", "exclusiveMaximum"), ("maximum", "exclusiveMinimum"),
                          ("exclusiveMinimum", "maximum"), ("exclusiveMaximum", "minimum")):
        if key in flat:
            out.append({"type": "number", opposite: flat[key]})
    for key in ("pattern", "_patterns", "format", "multipleOf", "contentEncoding", "contentMediaType"):
        if key in flat:
            raise unsupported(f"`not` of `{key.lstrip('_')}` cannot be expressed exactly",
                              key.lstrip("_").replace("_patterns", "pattern"), pointer)
    return out


def not_one_of_strings(values: list[str]) -> str:
    """An ECMA-262 pattern matching exactly the strings that are not in ``values`` (a trie's complement)."""
    trie: dict[str, Any] = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[""] = True

    def walk(node: dict[str, Any]) -> str:
        children = sorted(c for c in node if c)
        options = [] if node.get("") else [""]
        if children:
            options.append("[^" + "".join(_class_char(c) for c in children) + "][\\s\\S]*")
            options.extend(_char(c) + walk(node[c]) for c in children)
        else:
            options.append("[\\s\\S]+")
        return "(?:" + "|".join(options) + ")"

    return "^" + walk(trie) + "$"


def _char(c: str) -> str:
    return "\\" + c if c in r"\^$.|?*+()[]{}/-" else (f"\\u{ord(c):04x}" if ord(c) < 32 else c)


def _class_char(c: str) -> str:
    return "\\" + c if c in r"\^-][/" else (f"\\u{ord(c):04x}" if ord(c) < 32 else c)
