"""examples(): valid by construction (checked here with jsonschema), reproducible, varied."""

from __future__ import annotations

import json
import random

import jsonschema
import pytest
from jsonschema.validators import Draft202012Validator, validator_for

from constrain.errors import InvalidRequestError, UnsatisfiableSchemaError
from constrain.testing import ExampleSampler, examples
from tests.conftest import read_jsonl_gz

OBJECT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 999},
        "colour": {"enum": ["red", "green", "blue"]},
        "note": {"type": "string", "maxLength": 12},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    },
    "required": ["id"],
    "additionalProperties": False,
}

SCHEMAS = {
    "object with optional properties": OBJECT,
    "anyOf branches": {"anyOf": [{"type": "string", "pattern": "^[a-z]{2,4}$"}, {"type": "integer"}, {"type": "null"}]},
    "unique strings": {"type": "array", "items": {"type": "string", "maxLength": 3}, "uniqueItems": True,
                       "minItems": 2, "maxItems": 5},
    "unique objects": {"type": "array", "uniqueItems": True, "minItems": 2,
                       "items": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}},
    "contains": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 20},
                 "contains": {"type": "integer", "minimum": 10}, "minContains": 2},
    "pattern": {"type": "string", "pattern": "^[A-Z]{3}-\\d{2}$"},
    "formats": {"type": "object", "properties": {"day": {"type": "string", "format": "date"},
                                                 "mail": {"type": "string", "format": "email"}},
                "required": ["day", "mail"]},
    "numbers": {"type": "array", "items": {"type": "number", "multipleOf": 0.5, "minimum": -2, "maximum": 2}},
    "refs and recursion": {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
        "required": ["value"]}}, "$ref": "#/$defs/node"},
    "draft-04": {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0,
                 "maximum": 5, "exclusiveMaximum": True},
    "open object": {"type": "object"},
}


def _validator(schema):
    return validator_for(schema, default=Draft202012Validator)(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_example_is_valid(sampler: ExampleSampler, name: str):
    schema = SCHEMAS[name]
    values = sampler.examples(schema, n=25, seed=3)
    assert len(values) == 25
    validator = _validator(schema)
    for value in values:
        assert validator.is_valid(value), (name, value)


def test_same_seed_same_examples(sampler: ExampleSampler):
    first = sampler.examples(OBJECT, n=10, seed=11)
    assert sampler.examples(OBJECT, n=10, seed=11) == first
    assert sampler.examples(OBJECT, n=10, seed=12) != first


def test_optional_properties_enum_values_and_branches_come_up(sampler: ExampleSampler):
    values = sampler.examples(OBJECT, n=200, seed=0)
    keys = {key for value in values for key in value}
    assert keys == {"id", "colour", "note", "score"}
    assert {"id"} in [set(v) for v in values]  # the minimal instance too
    assert {v["colour"] for v in values if "colour" in v} == {"red", "green", "blue"}
    branches = sampler.examples(SCHEMAS["anyOf branches"], n=60, seed=0)
    assert {type(v) for v in branches} == {str, int, type(None)}


def test_sizes_stay_bounded(sampler: ExampleSampler):
    values = sampler.examples({"type": "array", "items": {"type": "string"}}, n=50, seed=5)
    assert max(len(json.dumps(v)) for v in values) < 2000
    assert sum(len(v) for v in values) / len(values) < 12


def test_runtime_rules_hold(sampler: ExampleSampler):
    for value in sampler.examples(SCHEMAS["unique objects"], n=30, seed=1):
        assert len({json.dumps(item, sort_keys=True) for item in value}) == len(value)
    for value in sampler.examples(SCHEMAS["contains"], n=30, seed=1):
        assert sum(item >= 10 for item in value) >= 2


def test_any_key_order(sampler: ExampleSampler):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"], "additionalProperties": False}
    ordered = ExampleSampler(sampler.tokenizer, property_order="any")
    values = ordered.examples(schema, n=40, seed=2)
    for value in values:
        jsonschema.validate(value, schema)
    assert {tuple(v) for v in values} == {("a", "b"), ("b", "a")}


def test_module_function_uses_a_given_sampler(sampler: ExampleSampler):
    assert examples({"const": 7}, n=3, sampler=sampler) == [7, 7, 7]
    assert examples({"type": "integer"}, n=0, sampler=sampler) == []


def test_unsupported_and_unsatisfiable_schemas_raise(sampler: ExampleSampler):
    with pytest.raises(UnsatisfiableSchemaError):
        sampler.examples({"enum": []}, n=1)
    with pytest.raises(InvalidRequestError):
        sampler.examples({"type": "string", "pattern": "(a)\\1"}, n=1)
    with pytest.raises(ValueError, match="`n`"):
        sampler.examples({"type": "integer"}, n=-1)


def test_maskbench_sample_is_valid(sampler: ExampleSampler):
    rows = read_jsonl_gz("maskbench.jsonl.gz")
    picked = random.Random(18).sample(rows, 25)
    drawn = 0
    for row in picked:
        schema = row["schema"]
        try:
            values = sampler.examples(schema, n=5, seed=0)
        except InvalidRequestError:
            continue  # not a schema compile_constraint accepts
        validator = validator_for(schema, default=Draft202012Validator)(schema)
        for value in values:
            assert validator.is_valid(value), (row["name"], value)
        drawn += 1
    assert drawn >= 18
    assert sampler.dropped == 0
