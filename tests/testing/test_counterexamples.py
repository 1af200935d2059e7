"""counterexamples(): every one rejected by jsonschema, labelled with the keyword it breaks."""

from __future__ import annotations

import random

import pytest
from jsonschema.validators import Draft202012Validator, validator_for

from constrain.errors import InvalidRequestError
from constrain.testing import Counterexample, ExampleSampler, counterexamples
from tests.conftest import read_jsonl_gz

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 99},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "name": {"type": "string", "minLength": 2, "maxLength": 8},
        "kind": {"enum": ["a", "b"]},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 1, "maxItems": 3},
        "ratio": {"type": "number", "exclusiveMaximum": 1, "multipleOf": 0.25},
    },
    "required": ["id", "code", "name", "kind", "tags", "ratio"],
    "additionalProperties": False,
}


def _rejected(schema, instance) -> bool:
    return not validator_for(schema, default=Draft202012Validator)(schema).is_valid(instance)


def test_all_rejected_and_labelled(sampler: ExampleSampler):
    found = counterexamples(SCHEMA, n=40, sampler=sampler)
    assert len(found) == 40
    for bad in found:
        assert isinstance(bad, Counterexample)
        assert _rejected(SCHEMA, bad.instance), bad
    keywords = {bad.keyword for bad in found}
    assert {"required", "type", "minimum", "maximum", "pattern", "minLength", "maxLength", "enum",
            "uniqueItems", "minItems", "maxItems", "additionalProperties", "exclusiveMaximum"} <= keywords


def test_each_is_one_edit_from_valid(sampler: ExampleSampler):
    for bad in counterexamples(SCHEMA, n=30, sampler=sampler):
        if bad.keyword == "required":
            assert len(bad.instance) == len(SCHEMA["required"]) - 1
        elif bad.keyword == "additionalProperties":
            assert len(bad.instance) == len(SCHEMA["required"]) + 1
        elif bad.pointer:
            key = bad.pointer.split("/")[1]
            assert set(bad.instance) == set(SCHEMA["required"])
            assert SCHEMA["properties"][key]  # the edit sits under a declared property


def test_round_robin_and_seed(sampler: ExampleSampler):
    few = counterexamples(SCHEMA, n=6, seed=4, sampler=sampler)
    assert len({bad.keyword for bad in few}) == 6
    assert counterexamples(SCHEMA, n=6, seed=4, sampler=sampler) == few


def test_nested_refs_branches_and_drafts(sampler: ExampleSampler):
    schemas = [
        {"$defs": {"pos": {"type": "integer", "minimum": 0}},
         "type": "array", "items": {"$ref": "#/$defs/pos"}, "minItems": 1},
        {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "object", "properties": {"n": {"const": 1}},
                                                         "required": ["n"]}]},
        {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
         "properties": {"x": {"type": "number", "maximum": 3, "exclusiveMaximum": True}}, "required": ["x"]},
        {"type": "array", "items": [{"type": "integer"}, {"type": "boolean"}], "additionalItems": False,
         "$schema": "http://json-schema.org/draft-07/schema#"},
        {"type": "array", "items": {"type": "integer"}, "contains": {"const": 3}},
    ]
    for schema in schemas:
        found = counterexamples(schema, n=8, sampler=sampler)
        assert found, schema
        for bad in found:
            assert _rejected(schema, bad.instance), (schema, bad)


def test_schema_accepting_everything_has_none(sampler: ExampleSampler):
    assert counterexamples({}, n=5, sampler=sampler) == []


def test_unsupported_schema_raises(sampler: ExampleSampler):
    with pytest.raises(InvalidRequestError):
        counterexamples({"type": "string", "pattern": "(a)\\1"}, sampler=sampler)


def test_maskbench_sample_all_rejected(sampler: ExampleSampler):
    rows = random.Random(81).sample(read_jsonl_gz("maskbench.jsonl.gz"), 30)
    total = 0
    for row in rows:
        try:
            found = counterexamples(row["schema"], n=5, sampler=sampler)
        except InvalidRequestError:
            continue
        total += len(found)
        for bad in found:
            assert _rejected(row["schema"], bad.instance), (row["name"], bad)
    assert total >= 50
