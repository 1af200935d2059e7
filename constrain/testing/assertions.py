"""Schema assertions that list every violation, not just jsonschema's first one.

A failing ``assert_valid`` raises :class:`SchemaAssertionError` (an ``AssertionError``, so pytest
reports it as a failed assertion) whose message lists each violation with its JSON pointer,
the keyword, the offending value and the schema fragment that refused it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_MAX_SHOWN = 200  # characters of a value or fragment in the message


@dataclass(frozen=True)
class Violation:
    """One broken rule: where in the instance (JSON pointer), which keyword, the value, the schema part."""

    pointer: str
    keyword: str
    value: Any
    schema: Any
    schema_pointer: str
    message: str

    def __str__(self) -> str:
        return (f"at {self.pointer or '/'}: {self.keyword}: {self.message}\n"
                f"    value:  {_short(self.value)}\n"
                f"    schema: {self.schema_pointer or '#'} = {_short(self.schema)}")


class SchemaAssertionError(AssertionError):
    """An instance does not match its schema; ``violations`` holds every broken rule."""

    def __init__(self, message: str, violations: list[Violation]) -> None:
        super().__init__(message)
        self.violations = violations


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _as_schema(schema: Any) -> Any:
    """A JSON Schema from a dict, a boolean, JSON text, or a pydantic model class."""
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema()
    if isinstance(schema, str):
        return json.loads(schema)
    return schema


def _as_instance(instance: Any) -> Any:
    """Pydantic models are checked as the JSON they dump to."""
    if hasattr(instance, "model_dump") and not isinstance(instance, type):
        return instance.model_dump(mode="json")
    return instance


def violations(instance: Any, schema: Any) -> list[Violation]:
    """Every violation of ``schema`` by ``instance`` (empty when valid), deepest causes first.

    ``schema`` may be a dict, a boolean, JSON text or a pydantic model class; ``instance`` may be
    a pydantic model. The dialect comes from ``$schema`` (2020-12 by default); ``format`` is checked.
    Errors inside ``anyOf``/``oneOf`` list each branch's own violations.
    """
    from jsonschema.exceptions import ValidationError
    from jsonschema.validators import Draft202012Validator, validator_for

    schema = _as_schema(schema)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    found: list[Violation] = []

    def add(error: ValidationError) -> None:
        if error.context:
            for sub in sorted(error.context, key=lambda e: (list(e.absolute_schema_path), str(e.message))):
                add(sub)
        found.append(Violation(
            pointer=_pointer(error.absolute_path),
            keyword=str(error.validator),
            value=error.instance,
            schema=error.schema,
            schema_pointer="#" + _pointer(list(error.absolute_schema_path)[:-1]),
            message=error.message,
        ))

    for error in sorted(validator.iter_errors(_as_instance(instance)), key=lambda e: list(map(str, e.absolute_path))):
        add(error)
    return found


def assert_valid(instance: Any, schema: Any, *, message: str = "") -> None:
    """Raise :class:`SchemaAssertionError` listing every violation unless ``instance`` matches ``schema``.

    Parameters
    ----------
    instance : Any
        A JSON value, or a pydantic model (checked as ``model_dump(mode="json")``).
    schema : dict | bool | str | type[pydantic.BaseModel]
        The JSON Schema (its ``$schema`` dialect; 2020-12 by default), as a dict, JSON text or a
        pydantic model class (its ``model_json_schema()``).
    message : str, optional
        Put first in the failure message.

    Raises
    ------
    SchemaAssertionError
        An ``AssertionError``: pytest shows its message as the failure.
    jsonschema.exceptions.SchemaError
        The schema itself is invalid.
    """
    __tracebackhide__ = True  # pytest: show the caller's line, not this one
    found = violations(instance, schema)
    if not found:
        return
    head = f"{message}\n" if message else ""
    body = "\n".join(f"{i}. {v}" for i, v in enumerate(found, 1))
    raise SchemaAssertionError(
        f"{head}instance does not match the schema ({len(found)} violation{'s' if len(found) > 1 else ''}):\n"
        f"{body}\ninstance: {_short(_as_instance(instance))}",
        found,
    )
