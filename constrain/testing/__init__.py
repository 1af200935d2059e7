"""Testing with constrain: readable schema assertions, schema-valid data, near misses, a pytest plugin.

``assert_valid`` reports every violation at once; ``examples`` and the Hypothesis strategy
``from_schema`` draw valid instances by walking a schema's compiled constraint (no model);
``counterexamples`` edits them into labelled invalid ones. The pytest plugin
(``constrain.testing.plugin``, loaded through the ``pytest11`` entry point) adds the fixtures
``constrain_model``, ``constrain_server``, ``openai_client`` and ``inference_client``.
"""

from constrain.testing.assertions import SchemaAssertionError, Violation, assert_valid, violations
from constrain.testing.mutations import Counterexample, counterexamples
from constrain.testing.strategies import from_schema
from constrain.testing.walker import ExampleError, ExampleSampler, examples

__all__ = [
    "Counterexample",
    "ExampleError",
    "ExampleSampler",
    "SchemaAssertionError",
    "Violation",
    "assert_valid",
    "counterexamples",
    "examples",
    "from_schema",
    "violations",
]
