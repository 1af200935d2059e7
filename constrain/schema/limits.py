"""Bounds on a user's schema: nesting depth, size, enum sizes, numbers the engine can represent.

Checked once, before anything walks the schema recursively (the meta-schema check, the
normaliser, the engine), with a walk that is itself iterative: a hostile schema fails in
milliseconds with an error naming the limit and the JSON pointer where it was hit, instead of
a ``RecursionError``, an engine's raw message, or minutes of compiling.
"""

from __future__ import annotations

import math
from typing import Any

from constrain.errors import SchemaLimitError, render_param

# Each at least twice the largest in MaskBench's 9.7k real schemas and the official test suite
# (depth 63, 28.5k values, an enum of 5.4k, 587 properties, 22 patternProperties).
MAX_DEPTH = 128  # JSON values nested in the schema (objects and arrays)
MAX_VALUES = 200_000  # JSON values in the whole schema
MAX_ENUM = 8_192  # values of one `enum`
MAX_PROPERTIES = 4_096  # names in one `properties`
MAX_PATTERN_PROPERTIES = 64  # patterns in one `patternProperties` (the engine's time grows ~cubically)
MAX_REF_DEPTH = 64  # `$ref`s followed in a row while normalising
MIN_INTEGER = -(2**63)  # the engine reads integers as signed or unsigned 64-bit values
MAX_INTEGER = 2**64 - 1


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def check_limits(schema: Any, *, param: str, at: str = "") -> None:
    """Raise SchemaLimitError (400, located at ``param``, the pointer ``at`` + the place inside
    ``schema``) where ``schema`` passes a limit."""
    stack: list[tuple[Any, str, int]] = [(schema, "", 0)]
    seen = 0
    while stack:
        value, pointer, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise _error(param, at, pointer, "values", MAX_VALUES, f"has more than {MAX_VALUES} JSON values")
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int):
            if not MIN_INTEGER <= value <= MAX_INTEGER:
                raise _error(param, at, pointer, "integer", MAX_INTEGER,
                             f"holds the integer {str(value)[:40]}{'...' if len(str(value)) > 40 else ''}, "
                             "beyond 64 bits (the engine's integers)")
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise _error(param, at, pointer, "number", None, f"holds {value}, which is not a JSON number")
            continue
        if depth >= MAX_DEPTH:
            raise _error(param, at, pointer, "depth", MAX_DEPTH, f"is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, limit in (("enum", MAX_ENUM), ("properties", MAX_PROPERTIES),
                               ("patternProperties", MAX_PATTERN_PROPERTIES)):
                held = value.get(key)
                if isinstance(held, list | dict) and len(held) > limit:
                    raise _error(param, at, f"{pointer}/{key}", key, limit,
                                 f"has {len(held)} entries in one `{key}`; at most {limit} are accepted")
            stack.extend((sub, f"{pointer}/{_escape(str(key))}", depth + 1) for key, sub in value.items())
        elif isinstance(value, list):
            stack.extend((sub, f"{pointer}/{index}", depth + 1) for index, sub in enumerate(value))


def _error(param: str, at: str, pointer: str, limit: str, value: int | None, what: str) -> SchemaLimitError:
    shown = pointer if len(pointer) <= 120 else f"{pointer[:60]}...{pointer[-50:]}"
    return SchemaLimitError(f"`{render_param(param, at)}` {what} (at {shown or '/'})", limit=limit, value=value,
                            param=param, at=at + pointer)
