"""JSON Schema dialects (draft-04, 06, 07, 2019-09, 2020-12), each node rewritten to 2020-12 spelling.

The normaliser works in one vocabulary: 2020-12. Older drafts differ in spelling
(``id``, boolean ``exclusiveMinimum``, ``items`` arrays with ``additionalItems``,
``dependencies``) and in which keywords exist at all: a keyword a draft does not
define is an unknown keyword there, which JSON Schema ignores. ``upgrade`` does both.
"""

from __future__ import annotations

from typing import Any

DRAFT4 = "draft4"
DRAFT6 = "draft6"
DRAFT7 = "draft7"
DRAFT2019 = "2019-09"
DRAFT2020 = "2020-12"
ORDER = (DRAFT4, DRAFT6, DRAFT7, DRAFT2019, DRAFT2020)

_URIS = {
    "json-schema.org/draft-04/schema": DRAFT4,
    "json-schema.org/draft-06/schema": DRAFT6,
    "json-schema.org/draft-07/schema": DRAFT7,
    "json-schema.org/draft/2019-09/schema": DRAFT2019,
    "json-schema.org/draft/2020-12/schema": DRAFT2020,
}

# Keywords each draft added: in an older draft they are unknown, hence ignored.
_ADDED = {
    DRAFT6: ("const", "contains", "propertyNames", "examples"),
    DRAFT7: ("if", "then", "else", "contentMediaType", "contentEncoding"),
    DRAFT2019: (
        "dependentRequired", "dependentSchemas", "minContains", "maxContains", "unevaluatedItems",
        "unevaluatedProperties", "$anchor", "$recursiveRef", "$recursiveAnchor", "$defs",
    ),
    DRAFT2020: ("prefixItems", "$dynamicRef", "$dynamicAnchor"),
}


def dialect_of(schema: Any) -> str:
    """The dialect named by the root's ``$schema``; 2020-12 when absent or unknown."""
    uri = schema.get("$schema") if isinstance(schema, dict) else None
    if isinstance(uri, str):
        bare = uri.split("://", 1)[-1].rstrip("#")
        return _URIS.get(bare, DRAFT2020)
    return DRAFT2020


def at_least(dialect: str, other: str) -> bool:
    return ORDER.index(dialect) >= ORDER.index(other)


def upgrade(node: dict[str, Any], dialect: str) -> dict[str, Any]:
    """One schema object in 2020-12 spelling (children untouched); the input is not modified."""
    if dialect == DRAFT2020:
        return node
    out = dict(node)
    for added, keywords in _ADDED.items():
        if not at_least(dialect, added):
            for keyword in keywords:
                out.pop(keyword, None)
    if not at_least(dialect, DRAFT6):
        if isinstance(out.get("id"), str):
            out["$id"] = out.pop("id")
        for bound, exclusive in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
            flag = out.pop(exclusive, None)
            if flag is True and bound in out:
                out[exclusive] = out.pop(bound)
    if not at_least(dialect, DRAFT2020):
        items = out.get("items")
        if isinstance(items, list):
            out["prefixItems"] = out.pop("items")
            if "additionalItems" in out:
                out["items"] = out.pop("additionalItems")
        else:
            out.pop("additionalItems", None)
    return out

