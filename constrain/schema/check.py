"""Meta-schema checks of user schemas, and validation of instances against them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError, ValidationError

from constrain.errors import InvalidSchemaError


def pointer(path: Any) -> str:
    """A JSON pointer (RFC 6901) for a jsonschema error path."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""


def _validator_class(schema: Any) -> type:
    # The dialect comes from "$schema"; without one, 2020-12 (what the spec and our users write).
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


def check_schema(schema: Any, *, param: str = "schema") -> Any:
    """Return ``schema`` if it is a valid JSON Schema (object or boolean), else raise InvalidSchemaError."""
    if not isinstance(schema, dict | bool):
        raise InvalidSchemaError(
            f"`{param}` must be a JSON Schema object (or boolean), got {type(schema).__name__}", param=param
        )
    if schema is False:
        raise InvalidSchemaError(f"`{param}` is the schema `false`, which no output can match", param=param)
    if isinstance(schema, dict):
        if not isinstance(schema.get("$schema", ""), str):
            raise InvalidSchemaError(f"`{param}.$schema` must be a string", param=f"{param}.$schema")
        try:
            _validator_class(schema).check_schema(schema)
        except SchemaError as exc:
            where = pointer(exc.path)
            raise InvalidSchemaError(
                f"`{param}` is not a valid JSON Schema: at {where or '/'} (keyword {exc.validator!r}): "
                f"{exc.message}",
                param=param + where.replace("/", "."),
            ) from None
    return schema


@lru_cache(maxsize=256)
def _validator_for_text(schema_text: str) -> Any:
    import json

    schema = json.loads(schema_text)
    cls = _validator_class(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_instance(schema_text: str, instance: Any) -> str | None:
    """None if ``instance`` is valid against the schema (given as canonical text), else the reason."""
    try:
        _validator_for_text(schema_text).validate(instance)
    except ValidationError as exc:
        return f"at {pointer(exc.absolute_path) or '/'}: {exc.message}"
    return None
