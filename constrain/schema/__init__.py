"""JSON Schema in, a schema the engine enforces exactly out.

``check_schema`` validates a user's schema against its meta-schema; ``normalize``
rewrites it into an equivalent form the engine can enforce (never a looser one),
and raises ``UnsupportedSchemaError`` naming the keyword and its location when no
exact rewrite exists.
"""

from constrain.schema.check import check_schema, validate_instance
from constrain.schema.normalize import Normalized, normalize, normalize_with_rules

__all__ = ["Normalized", "check_schema", "normalize", "normalize_with_rules", "validate_instance"]
