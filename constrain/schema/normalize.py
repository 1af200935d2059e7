"""Rewrite a checked JSON Schema into an equivalent one the engine enforces exactly."""

from __future__ import annotations

import copy
from typing import Any


def normalize(schema: Any, *, close_objects: bool = False, param: str = "schema") -> Any:
    """An equivalent schema for the engine; with ``close_objects``, objects allow declared properties only."""
    out = copy.deepcopy(schema)
    if close_objects:
        _close(out)
    return out


def _close(node: Any) -> None:
    if isinstance(node, dict):
        if ("properties" in node or node.get("type") == "object") and "additionalProperties" not in node:
            if "patternProperties" not in node and "unevaluatedProperties" not in node:
                node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)
