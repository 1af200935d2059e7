"""Every response_format dialect in circulation -> one Constraint.

Accepted (see the README's table):
- HF / TGI: ``{"type": "json", "value": schema | "<schema text>"}``, ``{"type": "regex", "value": pat}``,
  ``{"type": "json_object", "value": schema}`` (what huggingface_hub sends for a json_schema format),
  ``{"type": "json_schema", "value": {"name", "schema", "strict"}}`` (TGI's spelling);
- OpenAI: ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``,
  ``{"type": "json_object"}`` (any JSON object), ``{"type": "text"}``;
- ours: ``{"type": "grammar", "value": "<Lark grammar>"}``;
- in Python: a pydantic model class (its ``model_json_schema()``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from constrain.compiler.constraint import TEXT, Constraint, Whitespace
from constrain.errors import InvalidRegexError, InvalidRequestError, InvalidSchemaError, SchemaLimitError
from constrain.schema import check_schema

ANY_JSON_OBJECT: dict[str, Any] = {"type": "object"}
KNOWN_TYPES = ("json", "json_object", "json_schema", "regex", "grammar", "text")


def parse_response_format(
    response_format: Any,
    *,
    whitespace: Whitespace = "compact",
    close_objects: bool = False,
    param: str = "response_format",
) -> Constraint:
    """Normalise any accepted dialect into a Constraint; anything else is an InvalidRequestError."""
    if response_format is None:
        return TEXT
    if isinstance(response_format, type):
        return _from_pydantic(response_format, whitespace, close_objects, param)
    if hasattr(response_format, "model_dump") and not isinstance(response_format, dict):
        response_format = response_format.model_dump(by_alias=True, exclude_none=True)
    if not isinstance(response_format, dict):
        raise InvalidRequestError(
            f"`{param}` must be an object with a `type`, got {type(response_format).__name__}", param=param
        )
    kind = response_format.get("type")
    if kind not in KNOWN_TYPES:
        raise InvalidRequestError(
            f"`{param}.type` must be one of {', '.join(KNOWN_TYPES)}; got {kind!r}", param=f"{param}.type"
        )
    extra = set(response_format) - {"type", "value", "json_schema", "schema"}
    if extra:
        raise InvalidRequestError(
            f"`{param}` has unknown field(s) {sorted(extra)} for type {kind!r}", param=param
        )
    value = response_format.get("value")

    if kind == "text":
        if value is not None:
            raise InvalidRequestError(f"`{param}` of type 'text' takes no `value`", param=f"{param}.value")
        return TEXT
    if kind == "regex":
        return _regex(value, f"{param}.value")
    if kind == "grammar":
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequestError(
                f"`{param}.value` must be a non-empty Lark grammar string", param=f"{param}.value"
            )
        return Constraint(kind="grammar", source=value)
    if kind == "json_schema":
        body = response_format.get("json_schema", value)
        where = f"{param}.json_schema" if "json_schema" in response_format else f"{param}.value"
        if isinstance(body, str):
            body = _json_text(body, where)
        if not isinstance(body, dict) or "schema" not in body and "schema" not in response_format:
            raise InvalidRequestError(
                f"`{where}` must be an object with a `schema` (and optional `name`, `strict`)", param=where
            )
        schema = body.get("schema", response_format.get("schema"))
        return _json(schema, whitespace, close_objects, f"{where}.schema", name=body.get("name"))
    # json / json_object
    schema = response_format.get("value", response_format.get("schema"))
    if schema is None:
        if kind == "json":
            raise InvalidRequestError(f"`{param}.value` is required for type 'json'", param=f"{param}.value")
        schema = ANY_JSON_OBJECT
    return _json(schema, whitespace, close_objects, f"{param}.value")


def _json_text(text: str, param: str) -> Any:
    try:
        return json.loads(text, parse_constant=_not_json)
    except (json.JSONDecodeError, ValueError) as exc:
        raise InvalidSchemaError(f"`{param}` is not valid JSON: {exc}", param=param) from None
    except RecursionError:
        raise SchemaLimitError(f"`{param}` is nested too deeply to be read", limit="depth", param=param) from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(schema: Any, whitespace: Whitespace, close_objects: bool, param: str, name: str | None = None) -> Constraint:
    if isinstance(schema, str):
        schema = _json_text(schema, param)
    prepared = check_schema(schema, param=param)
    return Constraint(
        kind="json",
        source=json.dumps(prepared, ensure_ascii=False, separators=(",", ":")),
        whitespace=whitespace,
        close_objects=close_objects,
        name=name,
        param=param,
        _schema=prepared,
    )


def _regex(pattern: Any, param: str) -> Constraint:
    if not isinstance(pattern, str) or pattern == "":
        raise InvalidRequestError(f"`{param}` must be a non-empty regex string", param=param)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRegexError(f"`{param}` is not a valid regex: {exc}", param=param) from None
    return Constraint(kind="regex", source=pattern)


def _from_pydantic(model: type, whitespace: Whitespace, close_objects: bool, param: str) -> Constraint:
    schema_of = getattr(model, "model_json_schema", None)
    if schema_of is None:
        raise InvalidRequestError(
            f"`{param}` as a class must be a pydantic model, got {model.__name__}", param=param
        )
    return _json(schema_of(), whitespace, close_objects, param, name=model.__name__)
