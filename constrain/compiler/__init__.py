"""Request -> Constraint -> grammar text. Pure: no torch, no model, no engine state."""

from constrain.compiler.constraint import TEXT, Constraint, ConstraintKind, Whitespace
from constrain.compiler.grammars import load_grammar, shipped_grammars
from constrain.compiler.response_format import parse_response_format
from constrain.schema.order import PropertyOrder

__all__ = [
    "TEXT",
    "Constraint",
    "ConstraintKind",
    "PropertyOrder",
    "Whitespace",
    "load_grammar",
    "parse_response_format",
    "shipped_grammars",
]
