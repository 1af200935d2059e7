"""``uniqueItems`` that no grammar can express: where in the output the matcher must enforce it.

A grammar cannot say "no two items equal" over unbounded items (strings, numbers, objects).
The normaliser leaves a marker on such arrays; ``split_unique`` removes the markers and
returns the places they stand as instance paths: object keys, any key (but the declared
ones), array indexes, any index. ``constrain.engines.unique`` then watches the arrays at those
paths while tokens are generated and never lets an item complete that equals an earlier one.

That is exact only if the path alone tells whether an array there must be unique. So any other
array that may stand at an overlapping path without the marker, and markers under recursive
``$ref``s (unbounded paths), are refused with a clear error, as before.
"""

from __future__ import annotations

import json
from typing import Any

from constrain.schema.flat import UNIQUE_AT_RUNTIME, unsupported

Path = tuple[Any, ...]  # str key | int index | AnyKey | ANY_INDEX


class AnyKey(tuple):
    """Any object key but the listed ones (the names an object declares are not "additional")."""

    def __new__(cls, excluded: frozenset[str] = frozenset()) -> AnyKey:
        return super().__new__(cls, ("any key", excluded))

    @property
    def excluded(self) -> frozenset[str]:
        return self[1]


ANY_INDEX = ("any index",)


def split_unique(schema: Any) -> tuple[Any, tuple[Path, ...]]:
    """(the schema without markers, the paths of arrays whose items must be distinct)."""
    defs = schema.get("$defs", {}) if isinstance(schema, dict) else {}
    unique: list[Path] = []
    free: list[Path] = []

    def walk(node: Any, path: Path, refs: tuple[str, ...]) -> None:
        if node is True or not isinstance(node, dict):
            if node is True:
                free.append(path)
            return
        if "$ref" in node:
            name = str(node["$ref"]).rsplit("/", 1)[-1]
            if name in refs:  # recursion: fine unless a marker is reachable inside it
                if UNIQUE_AT_RUNTIME in _text(defs.get(name)):
                    raise unsupported("uniqueItems inside a recursive $ref cannot be enforced",
                                      "uniqueItems", "")
                return
            walk(defs.get(name, True), path, (*refs, name))
        for branch in node.get("anyOf", []):
            walk(branch, path, refs)
        if _may_be_array(node):
            (unique if node.get(UNIQUE_AT_RUNTIME) else free).append(path)
        for key, sub in node.get("properties", {}).items():
            walk(sub, (*path, key), refs)
        for sub in node.get("patternProperties", {}).values():
            walk(sub, (*path, AnyKey()), refs)
        others = AnyKey(frozenset(node.get("properties", {})))
        if "additionalProperties" in node:
            walk(node["additionalProperties"], (*path, others), refs)
        elif _may_be_object(node):
            free.append((*path, others))
        for index, sub in enumerate(node.get("prefixItems", [])):
            walk(sub, (*path, index), refs)
        if "items" in node:
            walk(node["items"], (*path, ANY_INDEX), refs)
        elif _may_be_array(node):
            free.append((*path, ANY_INDEX))

    walk(schema, (), ())
    for path in unique:
        for other in free:
            if _overlap(path, other):
                raise unsupported(
                    f"uniqueItems at {_show(path)} shares its place with an array that need not be unique, "
                    "so the matcher could not tell which rule applies", "uniqueItems", "")
    return _strip(schema), tuple(dict.fromkeys(unique))


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
        return {k: _strip(v) for k, v in node.items() if k != UNIQUE_AT_RUNTIME}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _text(node: Any) -> str:
    return json.dumps(node, default=str)


def _show(path: Path) -> str:
    steps = ["*" if isinstance(p, AnyKey) else "#" if p == ANY_INDEX else str(p) for p in path]
    return "/" + "/".join(steps) if steps else "the root"
