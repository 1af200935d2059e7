"""String keywords (``format``, ``pattern``) rewritten into what the engine enforces exactly.

Stub: the real rewrite (ECMA-262 patterns, standard formats as exact regexes) lands here.
"""

from __future__ import annotations

from typing import Any


def rewrite_string_keywords(node: dict[str, Any], pointer: str) -> dict[str, Any]:
    """``node`` with ``format``/``pattern`` replaced by engine-exact forms; raises UnsupportedSchemaError."""
    return node
