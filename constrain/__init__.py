"""constrain: chat completions from a local transformers model, guaranteed to match a schema."""

__version__ = "0.1.0"

from constrain.constraints import CompiledConstraint, compile_constraint  # noqa: E402
from constrain.errors import ConstrainError  # noqa: E402
from constrain.model import Model, load  # noqa: E402
from constrain.processor import ConstraintLogitsProcessor  # noqa: E402

__all__ = [
    "CompiledConstraint",
    "ConstrainError",
    "ConstraintLogitsProcessor",
    "Model",
    "__version__",
    "compile_constraint",
    "load",
]
