"""from_schema(): a Hypothesis strategy of valid instances that shrinks toward small ones."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis.errors import NoSuchExample
from jsonschema.validators import Draft202012Validator

from constrain.errors import InvalidRequestError
from constrain.testing import ExampleSampler, from_schema

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "level": {"enum": [1, 2, 3]},
    },
    "required": ["name"],
}
FAST = settings(max_examples=40, database=None, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def test_values_are_valid(sampler: ExampleSampler):
    validator = Draft202012Validator(SCHEMA)
    seen = []

    @settings(max_examples=100, database=None, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(from_schema(SCHEMA, sampler=sampler))
    def check(value):
        assert validator.is_valid(value), value
        seen.append(value)

    check()
    assert len(seen) >= 50
    assert any("tags" in v or "level" in v for v in seen)  # optional properties come up


def test_shrinks_toward_small_instances(sampler: ExampleSampler):
    schema = {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}
    smallest = find(from_schema(schema, sampler=sampler), lambda v: len(v) >= 3,
                    settings=settings(max_examples=300, database=None, deadline=None, derandomize=True))
    # near the minimal such instance [{"n":0},{"n":0},{"n":0}]: three small items, nothing else
    assert len(smallest) == 3
    assert [item["n"] for item in smallest] == [0, 0, 0]
    assert len(json.dumps(smallest, separators=(",", ":"))) <= 40


def test_runtime_rules_hold(sampler: ExampleSampler):
    schema = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "minItems": 3}

    @FAST
    @given(from_schema(schema, sampler=sampler))
    def check(value):
        assert len(value) >= 3 and len(set(value)) == len(value)

    check()


def test_impossible_condition_finds_nothing(sampler: ExampleSampler):
    with pytest.raises(NoSuchExample):
        find(from_schema({"enum": ["a", "b"]}, sampler=sampler), lambda v: v == "c",
             settings=settings(max_examples=30, database=None))


def test_unsupported_schema_fails_at_once(sampler: ExampleSampler):
    with pytest.raises(InvalidRequestError):
        from_schema({"type": "string", "pattern": "(a)\\1"}, sampler=sampler)
