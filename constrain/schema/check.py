"""Meta-schema checks of user schemas, and validation of instances against them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any, Literal

import jsonschema
import regex
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator

from constrain.errors import InvalidSchemaError, UnsupportedSchemaError, render_param
from constrain.schema import formats
from constrain.schema.limits import check_limits
from constrain.schema.patterns import ecma_to_engine, is_ecma_regex


def pointer(path: Any) -> str:
    """A JSON pointer (RFC 6901) for a jsonschema error path."""
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""


def _validator_class(schema: Any) -> type[Validator]:
    # The dialect comes from "$schema"; without one, 2020-12 (what the spec and our users write).
    return jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)


# JSON Schema's regexes are ECMA-262; jsonschema checks them with Python's `re`, which rejects
# valid ECMA (`\p{Letter}`, `[^]`) and reads `\s`, `$` differently. Both checks use ours.


@lru_cache(maxsize=1024)
def ecma_matcher(pattern: str) -> Callable[[str], bool] | None:
    """A predicate: does a string contain a match of the ECMA ``pattern``? None if we cannot tell."""
    translated: str | Literal[False] | None
    try:
        translated = ecma_to_engine(pattern, "")
    except UnsupportedSchemaError:
        translated = False
    if translated is None:
        return lambda text: True
    try:
        if translated is False:
            compiled = regex.compile(pattern)
            return lambda text: compiled.search(text) is not None
        compiled = regex.compile(translated)
        return lambda text: compiled.fullmatch(text) is not None
    except regex.error:
        return None


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    matches = ecma_matcher(pattern)
    if matches is not None and not matches(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_VOCABULARIES_2020 = ("core", "applicator", "unevaluated", "validation", "meta-data", "format-annotation", "content")


def _single_document(node: Any) -> Any:
    """The 2020-12 meta-schema's references, rewritten for one merged document."""
    if isinstance(node, list):
        return [_single_document(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$dynamicRef" and value == "#meta":
            out["$ref"] = "#"
        elif key == "$ref" and isinstance(value, str) and "#/$defs/" in value:
            out["$ref"] = "#/$defs/" + value.split("#/$defs/", 1)[1]
        else:
            out[key] = _single_document(value)
    return out


@lru_cache(maxsize=1)
def _flat_meta_schema_2020() -> dict[str, Any]:
    """The 2020-12 meta-schema as one document with plain ``$ref``s.

    Equivalent for the standard dialect (no vocabulary extends ``#meta``), and about 10x
    faster to validate against than the seven linked vocabulary documents with ``$dynamicRef``.
    """
    from jsonschema_specifications import REGISTRY

    meta = jsonschema.Draft202012Validator.META_SCHEMA
    properties: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    for name in _VOCABULARIES_2020:
        vocabulary = _single_document(REGISTRY.contents(f"https://json-schema.org/draft/2020-12/meta/{name}"))
        for key, value in vocabulary.get("properties", {}).items():
            properties[key] = {"allOf": [properties[key], value]} if key in properties else value
        defs.update(vocabulary.get("$defs", {}))
    for key, value in _single_document(meta["properties"]).items():
        properties[key] = {"allOf": [properties[key], value]} if key in properties else value
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": ["object", "boolean"],
        "properties": properties,
        "$defs": defs,
    }


@lru_cache(maxsize=16)
def _meta_validator(cls: type[Validator]) -> Validator:
    if cls is jsonschema.Draft202012Validator:
        return jsonschema.Draft202012Validator(_flat_meta_schema_2020(), format_checker=_format_checker(cls))
    meta_cls = jsonschema.validators.validator_for(cls.META_SCHEMA, default=cls)
    return meta_cls(cls.META_SCHEMA, format_checker=_format_checker(cls))


def _format_checker(cls: type[Validator], *, as_enforced: bool = False) -> jsonschema.FormatChecker:
    """jsonschema's format checks, ``regex`` read as ECMA-262. ``as_enforced``: the formats the
    grammar enforces are checked by the same regexes (``schema/formats.py``), so that a value a
    matcher validates, or the output check, agrees with the grammar; jsonschema alone skips a
    format whose optional package is missing (``duration`` without ``isoduration``)."""
    checker = jsonschema.FormatChecker()
    checker.checkers = dict(cls.FORMAT_CHECKER.checkers)
    checker.checkers["regex"] = (lambda value: not isinstance(value, str) or is_ecma_regex(value), ())
    if as_enforced:
        for name in (*formats.EXACT, *formats.SUBSET):
            checker.checkers[name] = (_full_matches(formats.format_regexes(name) or []), ())
    return checker


@lru_cache(maxsize=16)
def enforced_formats(cls: type[Validator]) -> jsonschema.FormatChecker:
    """The format checker that agrees with the grammar (for checks the normaliser makes itself);
    one per dialect, its format regexes compiled once (the enum filter asks per listed value)."""
    return _format_checker(cls, as_enforced=True)


def _full_matches(patterns: list[str]) -> Callable[[Any], bool]:
    compiled = [re.compile(p) for p in patterns]
    return lambda value: not isinstance(value, str) or all(c.fullmatch(value) for c in compiled)


@lru_cache(maxsize=16)
def _ecma_class(cls: type[Validator]) -> type[Validator]:
    # `dependencies` is still met from 2019-09 on, as the normaliser enforces it (the suite's
    # "dependencies-compatibility"); jsonschema's 2019-09/2020-12 classes ignore it.
    keywords = {"pattern": _ecma_pattern, "dependencies": jsonschema.Draft7Validator.VALIDATORS["dependencies"]}
    extended: type[Validator] = jsonschema.validators.extend(cls, keywords)
    return extended


def check_schema(schema: object, *, param: str = "schema", at: str = "") -> dict[str, Any] | bool:
    """Return ``schema`` if it is a valid JSON Schema (object or boolean), else raise InvalidSchemaError.

    ``schema`` is the request field ``param``, or the part of it at the JSON pointer ``at`` (a
    ``$ref`` target checked on its own): errors are located there, pointer kept apart from field.
    """
    name = render_param(param, at)
    if not isinstance(schema, dict | bool):
        raise InvalidSchemaError(
            f"`{name}` must be a JSON Schema object (or boolean), got {type(schema).__name__}", param=param, at=at
        )
    check_limits(schema, param=param, at=at)  # first: what follows walks the schema recursively
    if isinstance(schema, dict):
        if not isinstance(schema.get("$schema", ""), str):
            raise InvalidSchemaError(f"`{name}.$schema` must be a string", param=param, at=f"{at}/$schema")
        try:
            error = jsonschema.exceptions.best_match(_meta_validator(_validator_class(schema)).iter_errors(schema))
            if error is not None:
                raise SchemaError.create_from(error)
        except SchemaError as exc:
            where = pointer(exc.path)
            raise InvalidSchemaError(
                f"`{name}` is not a valid JSON Schema: at {where or '/'} (keyword {exc.validator!r}): "
                f"{exc.message}",
                param=param,
                at=at + where,
            ) from None
    return schema


@lru_cache(maxsize=256)
def _validator_for_text(schema_text: str) -> Validator:
    import json

    schema = json.loads(schema_text)
    cls = _validator_class(schema)
    return _ecma_class(cls)(schema, format_checker=enforced_formats(cls))


def validate_instance(schema_text: str, instance: Any) -> str | None:
    """None if ``instance`` is valid against the schema (given as canonical text), else the reason."""
    try:
        _validator_for_text(schema_text).validate(instance)
    except ValidationError as exc:
        return f"at {pointer(exc.absolute_path) or '/'}: {exc.message}"
    return None


def is_valid_instance(schema_text: str, instance: Any) -> bool:
    """Whether ``instance`` is valid (no error built: the matcher asks this for many candidate items)."""
    return bool(_validator_for_text(schema_text).is_valid(instance))
