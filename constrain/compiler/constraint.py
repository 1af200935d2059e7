"""Constraint: the one internal form of every response_format dialect."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from constrain.schema.order import PropertyOrder

ConstraintKind = Literal["json", "regex", "grammar", "text"]
Whitespace = Literal["compact", "pretty"]


@dataclass(frozen=True)
class Constraint:
    """What the output must match, before any engine sees it.

    ``source`` is canonical text: the JSON Schema serialised (key order kept: it is
    the order properties are generated in), the regex, or the Lark grammar. Two
    requests with equal constraints share one compiled grammar.
    """

    kind: ConstraintKind
    source: str = ""
    whitespace: Whitespace = "compact"
    close_objects: bool = False
    # "schema": declared properties in the schema's order (generated so); "any": every order accepted.
    property_order: PropertyOrder = "schema"
    name: str | None = None
    # Where the schema sat in the request (``response_format.json_schema.schema``), for errors.
    param: str | None = field(default=None, compare=False, hash=False)
    _schema: Any = field(default=None, compare=False, hash=False, repr=False)

    @property
    def schema(self) -> Any:
        """The JSON Schema as given by the user (for validating outputs)."""
        if self.kind != "json":
            raise AttributeError("only a json constraint has a schema")
        return self._schema if self._schema is not None else json.loads(self.source)

    @property
    def key(self) -> tuple[str, str, str, bool, str]:
        return (self.kind, self.source, self.whitespace, self.close_objects, self.property_order)

    def __str__(self) -> str:
        return f"{self.kind}: {self.source}"


TEXT = Constraint(kind="text")
