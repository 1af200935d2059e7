"""Array rules and value checks no grammar can express, and where in the output the matcher
must enforce them.

A grammar cannot say "no two items equal" (``uniqueItems``) or "between k and m items match
this schema" (``contains`` with ``minContains``/``maxContains``) over unbounded items. The
normaliser leaves a marker on such arrays; ``split_runtime`` removes the markers and returns
the places they stand as instance paths (object keys, any key but the declared ones, array
indexes, any index), each with its ``ArrayRule``. ``constrain.engines.rules_matcher`` watches the
arrays at those paths while tokens are generated: an item that would repeat an earlier one,
or a match beyond ``maxContains``, never completes; the array never closes short of
``minContains``.

The same paths carry value checks (``ValueRule``): a ``oneOf`` whose branches may overlap with
no exact complement, or a ``not`` or ``if`` with none, is written in the grammar as a superset
(any branch, the rest without the ``not``, either outcome) and the value at that place is
validated against the keyword, as written, when it ends; a token that would end it invalid
is never allowed.

That is exact only if the path alone tells which rule applies. So any other array (any other
value, for a check) that may stand at an overlapping path with another rule (or none), and
markers under recursive ``$ref``s (unbounded paths), are refused with a clear error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from constrain.schema.flat import (
    CONTAINS_AT_RUNTIME,
    CONTAINS_SOURCE,
    UNIQUE_AT_RUNTIME,
    VALUE_CHECKS,
    WHOLE_CHECK,
    unsupported,
)

MARKERS = (UNIQUE_AT_RUNTIME, CONTAINS_AT_RUNTIME, CONTAINS_SOURCE, VALUE_CHECKS, WHOLE_CHECK)
# What a contains marker stands in for: the engine sees none of it.
_CONTAINS_KEYWORDS = ("contains", "minContains", "maxContains")

Path = tuple[Any, ...]  # str key | int index | AnyKey | ANY_INDEX


class AnyKey(tuple[str, frozenset[str]]):
    """Any object key but the listed ones (the names an object declares are not "additional")."""

    def __new__(cls, excluded: frozenset[str] = frozenset()) -> AnyKey:
        return super().__new__(cls, ("any key", excluded))

    @property
    def excluded(self) -> frozenset[str]:
        return self[1]


ANY_INDEX = ("any index",)


@dataclass(frozen=True)
class ArrayRule:
    """What the matcher keeps true of one array's items."""

    unique: bool = False
    # A self-contained JSON Schema (canonical text) that ``min_contains``..``max_contains`` items match.
    contains: str | None = None
    min_contains: int = 1
    max_contains: int | None = None

    @property
    def keyword(self) -> str:
        """The keyword this rule keeps (for errors)."""
        return "uniqueItems" if self.unique else "contains"

    @classmethod
    def of(cls, node: dict[str, Any]) -> ArrayRule | None:
        """The rule a normalised node's markers ask for (None when it has none)."""
        contains = node.get(CONTAINS_AT_RUNTIME)
        if not node.get(UNIQUE_AT_RUNTIME) and not contains:
            return None
        if not contains:
            return cls(unique=True)
        return cls(bool(node.get(UNIQUE_AT_RUNTIME)), contains["schema"], contains["min"], contains["max"])


# (keyword, schema text, pointer of the keyword in the document): each schema self-contained.
Checks = tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class ValueRule:
    """What a value at one place must also pass when it ends."""

    checks: Checks

    @property
    def keyword(self) -> str:
        """The first keyword checked (for errors)."""
        return self.checks[0][0]

    @property
    def schemas(self) -> tuple[str, ...]:
        return tuple(text for _, text, _ in self.checks)


def split_runtime(schema: Any) -> tuple[Any, tuple[tuple[Path, ArrayRule | ValueRule], ...]]:
    """(the schema without markers, the paths of the arrays and values the matcher watches, with their rules)."""
    defs = schema.get("$defs", {}) if isinstance(schema, dict) else {}
    ruled: list[tuple[Path, ArrayRule]] = []
    free: list[Path] = []
    short: list[Path] = []
    # Every place a value may stand, with the checks the nodes there ask for (none: a free value).
    placed: list[tuple[Path, Checks]] = []

    def walk(node: Any, path: Path, refs: tuple[str, ...], inherited: Checks = (), covered: bool = False,
             whole: bool = False) -> None:
        """``covered``: below a check of a whole node (``whole``: this place has one), which
        validates everything under it: the checks there are redundant, and so is telling their
        places apart."""
        if node is True or not isinstance(node, dict):
            if node is True:
                free.append(path)
                if not covered:
                    placed.append((path, inherited))
            return
        checks = (*inherited, *(tuple(c) for c in node.get(VALUE_CHECKS, []) if tuple(c) not in inherited))
        if covered:
            checks = ()
        whole = whole or bool(node.get(WHOLE_CHECK))
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            if name in refs:  # recursion: fine unless a marker is reachable inside it
                text = _text(defs.get(name))
                for marker, keyword in ((UNIQUE_AT_RUNTIME, "uniqueItems"), (CONTAINS_AT_RUNTIME, "contains"),
                                        (VALUE_CHECKS, "oneOf")):
                    if marker in text and not (covered and marker == VALUE_CHECKS):
                        if marker == VALUE_CHECKS:
                            keyword, _, where = first_check(defs.get(name))
                            raise unsupported(f"a `{keyword}` with no exact grammar form, checked while generating, "
                                              "cannot be enforced inside a recursive $ref", keyword, where)
                        raise unsupported(f"{keyword} inside a recursive $ref cannot be enforced", keyword, "")
                return
            walk(defs.get(name, True), path, (*refs, name), checks, covered, whole)
        for branch in node.get("anyOf", []):
            walk(branch, path, refs, checks, covered, whole)
        bare = set(node) - {VALUE_CHECKS, WHOLE_CHECK}
        if bare <= {"$ref", "anyOf", "$defs"}:
            if not bare and not covered:
                placed.append((path, checks))  # any value
            return  # a pure reference or union: the value is what its targets or branches say
        if not covered:
            placed.append((path, checks))
        below = covered or whole
        if _may_be_array(node):
            rule = ArrayRule.of(node)
            if rule is None and node.get("maxItems", 2) <= 1:
                short.append(path)  # at most one item: distinct already, so no unique rule is broken
            elif rule is None:
                free.append(path)
            else:
                ruled.append((path, rule))
        for key, sub in node.get("properties", {}).items():
            walk(sub, (*path, key), refs, covered=below)
        for sub in node.get("patternProperties", {}).values():
            walk(sub, (*path, AnyKey()), refs, covered=below)
        others = AnyKey(frozenset(node.get("properties", {})))
        if "additionalProperties" in node:
            walk(node["additionalProperties"], (*path, others), refs, covered=below)
        elif _may_be_object(node):
            free.append((*path, others))
            if not below:
                placed.append(((*path, others), ()))
        for index, sub in enumerate(node.get("prefixItems", [])):
            walk(sub, (*path, index), refs, covered=below)
        if "items" in node:
            walk(node["items"], (*path, ANY_INDEX), refs, covered=below)
        elif _may_be_array(node):
            free.append((*path, ANY_INDEX))
            if not below:
                placed.append(((*path, ANY_INDEX), ()))

    walk(schema, (), ())
    for index, (path, rule) in enumerate(ruled):
        others = [*free, *(p for p, r in ruled[index + 1:] if r != rule)]
        if rule.contains is not None:
            others += short
        if any(_overlap(path, other) for other in others):
            keyword = rule.keyword
            raise unsupported(
                f"{keyword} at {_show(path)} shares its place with an array under other rules, "
                "so the matcher could not tell which rule applies", keyword, "")
    values = _value_rules(placed)
    return _strip(schema), (*dict.fromkeys(ruled), *values)


def _value_rules(placed: list[tuple[Path, Checks]]) -> list[tuple[Path, ValueRule]]:
    """The checked places, each once; refused where another value may stand there unchecked
    or checked otherwise (the matcher tells places apart by their path alone)."""
    checked = list(dict.fromkeys((path, checks) for path, checks in placed if checks))
    if not checked:
        return []
    by_length: dict[int, list[tuple[Path, Checks]]] = {}
    for path, checks in dict.fromkeys(placed):
        by_length.setdefault(len(path), []).append((path, checks))
    for path, checks in checked:
        if any(other != checks and _overlap(path, where) for where, other in by_length[len(path)]):
            keyword, _, pointer = checks[0]
            raise unsupported(
                f"a `{keyword}` with no exact grammar form, checked while generating, stands at {_show(path)} where "
                "a value under other rules may stand too, so the matcher could not tell which check applies",
                keyword, pointer)
    return [(path, ValueRule(checks)) for path, checks in checked]


def first_check(node: Any) -> list[str]:
    """The first value check found in ``node`` (for errors)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if VALUE_CHECKS in item:
                return list(item[VALUE_CHECKS][0])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return ["oneOf", "", ""]


def matches(pattern: Path, path: Path) -> bool:
    """Whether a concrete instance path (keys and indexes) falls under ``pattern``."""
    if len(pattern) != len(path):
        return False
    for want, got in zip(pattern, path, strict=True):
        if isinstance(want, AnyKey):
            if not isinstance(got, str) or got in want.excluded:
                return False
        elif want == ANY_INDEX:
            if not isinstance(got, int):
                return False
        elif want != got:
            return False
    return True


def _may_be_array(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    if "enum" in node:
        return any(isinstance(v, list) for v in node["enum"])
    return kind is None or kind == "array" or (isinstance(kind, list) and "array" in kind)


def _may_be_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    if "enum" in node:
        return False  # enum objects are fixed values: nothing unique inside them to watch
    return kind is None or kind == "object" or (isinstance(kind, list) and "object" in kind)


def _overlap(a: Path, b: Path) -> bool:
    return len(a) == len(b) and all(_compatible(x, y) for x, y in zip(a, b, strict=True))


def _compatible(x: Any, y: Any) -> bool:
    """Whether two path steps can name the same key or index (wildcards conservatively)."""
    if x == y:
        return True
    x_index = x == ANY_INDEX or isinstance(x, int)
    if x_index != (y == ANY_INDEX or isinstance(y, int)):
        return False
    if x_index:
        return ANY_INDEX in (x, y)
    if isinstance(x, AnyKey) and isinstance(y, AnyKey):
        return True
    if isinstance(x, AnyKey):
        return y not in x.excluded
    if isinstance(y, AnyKey):
        return x not in y.excluded
    return False


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        drop = (*MARKERS, *_CONTAINS_KEYWORDS) if CONTAINS_AT_RUNTIME in node else MARKERS
        return {k: _strip(v) for k, v in node.items() if k not in drop}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _text(node: Any) -> str:
    return json.dumps(node, default=str)


def _show(path: Path) -> str:
    steps = ["*" if isinstance(p, AnyKey) else "#" if p == ANY_INDEX else str(p) for p in path]
    return "/" + "/".join(steps) if steps else "the root"
