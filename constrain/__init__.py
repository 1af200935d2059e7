"""constrain: chat completions from a local transformers model, guaranteed to match a schema."""

from constrain.constraints import CompiledConstraint, compile_constraint
from constrain.errors import ConstrainError
from constrain.export import ExportedConstraint, export_constraint
from constrain.model import Model, load
from constrain.processor import ConstraintLogitsProcessor
from constrain.version import __version__

__all__ = [
    "CompiledConstraint",
    "ConstrainError",
    "ConstraintLogitsProcessor",
    "ExportedConstraint",
    "Model",
    "__version__",
    "compile_constraint",
    "export_constraint",
    "load",
]
