"""``$ref`` resolution inside one document: ``$defs``/``definitions``, JSON pointers, ``$anchor``, local ``$id``.

The index maps every absolute URI a subschema can be reached by (its resource's ``$id``
plus a JSON pointer, or an anchor) to that subschema and its base URI. Remote documents
are never fetched: a reference that leaves the document is an UnsupportedSchemaError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from constrain.errors import UnsupportedSchemaError
from constrain.schema.dialects import DRAFT6, DRAFT2019, at_least

ROOT_URI = "https://constrain.invalid/root.json"


def join_uri(base: str, ref: str) -> str:
    """``ref`` resolved against ``base`` (RFC 3986), also for schemes ``urljoin`` does not treat as
    hierarchical (``urn:``, ``tag:``): a fragment-only reference keeps the base, an absolute one
    stands alone."""
    if urlsplit(ref).scheme:
        return ref
    if ref.startswith("#") or not ref:
        return urldefrag(base)[0] + ref
    return urljoin(base, ref)


# Keywords whose value is a schema, a list of schemas, or a map of name -> schema: the only
# places where subschemas (and so their `$id`s and anchors) live. A `$id` under any other key
# (an unknown keyword, `enum`, `const`) is data, not an identifier.
SCHEMA_VALUED = ("additionalProperties", "items", "additionalItems", "contains", "propertyNames", "not",
                 "if", "then", "else", "unevaluatedItems", "unevaluatedProperties", "contentSchema")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies")


@dataclass(frozen=True)
class Target:
    """A resolved reference: the subschema, the base URI it is read against, and its pointer."""

    node: Any
    base: str
    pointer: str


def resolve_local(root: Any, ref: Any) -> Any:
    """What a ``#``-pointer reference points at inside ``root``; None for anything else (an
    anchor, another document, a pointer to nothing)."""
    if not isinstance(ref, str) or not ref.startswith("#") or (len(ref) > 1 and ref[1] != "/"):
        return None
    node = root
    for part in ref[2:].split("/") if len(ref) > 1 else ():
        part = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def find_keyword(schema: Any, keyword: str, path: str = "") -> str | None:
    """JSON pointer of the first place ``keyword`` is used as a schema keyword."""
    if isinstance(schema, dict):
        if keyword in schema:
            return path or "/"
        for key, value in schema.items():
            # The names under these maps are property names, not keywords.
            if key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
                if isinstance(value, dict):
                    for name, sub in value.items():
                        found = find_keyword(sub, keyword, f"{path}/{key}/{name}")
                        if found:
                            return found
                continue
            found = find_keyword(value, keyword, f"{path}/{key}")
            if found:
                return found
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            found = find_keyword(value, keyword, f"{path}/{index}")
            if found:
                return found
    return None


class RefIndex:
    """Every resource (``$id``) and anchor of one document; built once per normalisation."""

    def __init__(self, root: Any, dialect: str) -> None:
        self.dialect = dialect
        self.resources: dict[str, tuple[Any, str, str]] = {}
        self.anchors: dict[str, Target] = {}
        self._subschemas: set[int] = set()  # the nodes the walk met where the dialect puts subschemas
        root_id = self.id_of(root)
        self.root_base = join_uri(ROOT_URI, root_id) if root_id else ROOT_URI
        self.resources[ROOT_URI] = (root, "", ROOT_URI)
        self._walk(root, ROOT_URI, "")

    def id_of(self, node: Any) -> str | None:
        """The ``$id`` (``id`` in draft-04) that changes the base URI, without an anchor fragment."""
        if not isinstance(node, dict):
            return None
        if not at_least(self.dialect, DRAFT2019) and "$ref" in node:
            return None  # before 2019-09, $ref's siblings (its $id included) are ignored
        key = "$id" if at_least(self.dialect, DRAFT6) else "id"
        value = node.get(key)
        if not isinstance(value, str):
            return None
        uri, _ = urldefrag(value)
        return uri or None

    def _anchor_of(self, node: dict[str, Any]) -> str | None:
        for key in ("$anchor", "$dynamicAnchor"):
            anchor = node.get(key)
            if isinstance(anchor, str):
                return anchor
        key = "$id" if at_least(self.dialect, DRAFT6) else "id"
        value = node.get(key)
        if isinstance(value, str) and "#" in value and not at_least(self.dialect, DRAFT2019):
            fragment = value.split("#", 1)[1]
            return fragment or None
        return None

    def at_schema_location(self, node: Any) -> bool:
        """Whether ``node`` sits where the dialect puts subschemas, as the meta-schema check sees
        them (a JSON-pointer ``$ref`` may also name a node under an unknown keyword)."""
        return not isinstance(node, dict) or id(node) in self._subschemas

    def _walk(self, node: Any, base: str, pointer: str) -> None:
        if not isinstance(node, dict):
            return
        self._subschemas.add(id(node))
        outer = base
        own = self.id_of(node)
        if own:
            base = join_uri(base, own)
            self.resources.setdefault(base, (node, pointer, outer))
        anchor = self._anchor_of(node)
        if anchor:
            self.anchors.setdefault(f"{base}#{anchor}", Target(node, outer, pointer))
        # Each subschema is visited once: a walk linear in the document's size.
        for key, value in node.items():
            where = f"{pointer}/{escape(key)}"
            if key in SCHEMA_MAPS and isinstance(value, dict):
                for name, sub in value.items():
                    self._walk(sub, base, f"{where}/{escape(name)}")
            elif key in SCHEMA_LISTS and isinstance(value, list):
                for index, sub in enumerate(value):
                    self._walk(sub, base, f"{where}/{index}")
            elif key in SCHEMA_VALUED and isinstance(value, dict):
                self._walk(value, base, where)

    def resolve(self, ref: str, base: str, pointer: str) -> Target:
        """The subschema ``ref`` names, read against ``base``; raises for what is outside the document."""
        absolute = join_uri(base, ref)
        uri, fragment = urldefrag(absolute)
        if absolute in self.anchors:
            return self.anchors[absolute]
        if uri == self.root_base or (uri == ROOT_URI):
            node, start, outer = self.resources[ROOT_URI]
        elif uri in self.resources:
            node, start, outer = self.resources[uri]
        else:
            raise UnsupportedSchemaError(
                f"`$ref: {ref}` (at {pointer or '/'}) points outside the schema; only local references "
                "($defs, definitions, $anchor, $id inside the document) are resolved",
                keyword="$ref",
                pointer=pointer,
            )
        if fragment and not fragment.startswith("/"):
            raise UnsupportedSchemaError(
                f"`$ref: {ref}` (at {pointer or '/'}) names an anchor that the schema does not define",
                keyword="$ref",
                pointer=pointer,
            )
        # The base a subschema is read against excludes its own $id (the normaliser applies that).
        current_base = outer
        where = start
        for raw in fragment.split("/")[1:] if fragment else []:
            token = unquote(raw).replace("~1", "/").replace("~0", "~")
            own = self.id_of(node)
            if own:
                current_base = join_uri(current_base, own)
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise UnsupportedSchemaError(
                    f"`$ref: {ref}` (at {pointer or '/'}) does not resolve to a subschema",
                    keyword="$ref",
                    pointer=pointer,
                )
            where = f"{where}/{escape(token)}"
        if not isinstance(node, dict | bool):
            raise UnsupportedSchemaError(
                f"`$ref: {ref}` (at {pointer or '/'}) does not resolve to a schema",
                keyword="$ref",
                pointer=pointer,
            )
        return Target(node, current_base, where)
