"""String keywords (``format``, ``pattern``, draft 7 ``content*``) rewritten into engine patterns.

The engine reads ``pattern`` with Rust regex meaning and knows only a few formats, some of
them loosely (February 30, any leap second, 64-character host labels). So every string
keyword becomes one or more full-match engine regexes, built here and in
:mod:`constrain.schema.formats`: the first goes in ``pattern``, the rest in ``allOf``
(the engine intersects them with each other and with ``minLength``/``maxLength``).

Both keywords constrain strings only; the engine applies ``pattern`` to strings only too,
so a node that also allows numbers or objects keeps allowing them unchanged.
"""

from __future__ import annotations

import warnings
from typing import Any

from constrain.errors import SchemaWarning, UnsupportedSchemaError
from constrain.schema import formats
from constrain.schema.patterns import ecma_to_engine

STRING_KEYWORDS = ("pattern", "format", "contentEncoding", "contentMediaType", "contentSchema")

_ENCODINGS = {"base64": formats.BASE64}
# contentMediaType values every string (after decoding) satisfies.
_ANY_TEXT_MEDIA = {"text/plain"}


def content_is_asserted(dialect: str | None) -> bool:
    """Draft 7 lets validators assert ``contentEncoding``/``contentMediaType``; 2019-09+ never do.

    Without ``$schema`` we assert (a draft 7 schema reads the same): stricter is safe.
    """
    return not dialect or "draft-07" in dialect


def _types(node: dict[str, Any]) -> set[str] | None:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    return None


def _where(pointer: str, keyword: str) -> str:
    return f"{pointer}/{keyword}"


def format_patterns(name: str, pointer: str) -> list[str]:
    """Full-match engine regexes for ``format: name``; [] (with a SchemaWarning) when unknown."""
    regexes = formats.format_regexes(name)
    if regexes is not None:
        return ["^" + r + "$" for r in regexes]
    if name in formats.UNSUPPORTED:
        raise UnsupportedSchemaError(
            f"`format: {name}` (at {_where(pointer, 'format')}) cannot be enforced exactly: "
            f"{formats.UNSUPPORTED[name]}",
            keyword="format",
            pointer=_where(pointer, "format"),
        )
    warnings.warn(
        f"unknown `format: {name}` at {_where(pointer, 'format')} is an annotation: not enforced",
        SchemaWarning,
        stacklevel=3,
    )
    return []


def _content_patterns(node: dict[str, Any], pointer: str) -> list[str]:
    encoding = node.get("contentEncoding")
    media = node.get("contentMediaType")
    out: list[str] = []
    if isinstance(encoding, str):
        regex = _ENCODINGS.get(encoding.lower())
        if regex is None:
            raise UnsupportedSchemaError(
                f"`contentEncoding: {encoding}` (at {_where(pointer, 'contentEncoding')}) cannot be "
                f"enforced exactly (supported: {', '.join(sorted(_ENCODINGS))})",
                keyword="contentEncoding",
                pointer=_where(pointer, "contentEncoding"),
            )
        out.append("^" + regex + "$")
    if isinstance(media, str) and media.split(";")[0].strip().lower() not in _ANY_TEXT_MEDIA:
        raise UnsupportedSchemaError(
            f"`contentMediaType: {media}` (at {_where(pointer, 'contentMediaType')}) cannot be enforced "
            "exactly: the engine cannot check a document's syntax inside a string",
            keyword="contentMediaType",
            pointer=_where(pointer, "contentMediaType"),
        )
    return out


def rewrite_string_keywords(node: dict[str, Any], pointer: str, *, dialect: str | None = None) -> dict[str, Any]:
    """``node`` with ``format``/``pattern``/``content*`` replaced by engine-exact ``pattern``s.

    ``pointer`` locates the node for error messages; ``dialect`` is the root ``$schema``
    (content keywords are annotations from 2019-09 on). Raises UnsupportedSchemaError
    naming the keyword when no exact (or documented never-looser) form exists.
    """
    if not any(k in node for k in STRING_KEYWORDS):
        return node
    out = {k: v for k, v in node.items() if k not in STRING_KEYWORDS}
    types = _types(node)
    if types is not None and "string" not in types:
        return out  # the keywords never apply: no string can reach them
    regexes: list[str] = []
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        translated = ecma_to_engine(pattern, _where(pointer, "pattern"))
        if translated is not None:
            regexes.append(translated)
    name = node.get("format")
    if isinstance(name, str):
        regexes.extend(format_patterns(name, pointer))
    if content_is_asserted(dialect):
        regexes.extend(_content_patterns(node, pointer))
    regexes = list(dict.fromkeys(regexes))
    if not regexes:
        return out
    out["pattern"] = regexes[0]
    if len(regexes) > 1:
        out["allOf"] = [*out.get("allOf", []), *({"pattern": r} for r in regexes[1:])]
    return out
