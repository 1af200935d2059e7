"""Every response_format dialect compiles to the same constraint; anything else is a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import BaseModel

from constrain import compile_constraint
from constrain.compiler import Constraint, load_grammar, parse_response_format, shipped_grammars
from constrain.errors import (
    InvalidGrammarError,
    InvalidRegexError,
    InvalidRequestError,
    InvalidSchemaError,
    UnsatisfiableSchemaError,
    UnsupportedSchemaError,
)
from tests.conftest import on_every_runtime

model = on_every_runtime()

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class City(BaseModel):
    city: str


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json", "value": SCHEMA},
        {"type": "json", "value": json.dumps(SCHEMA)},
        {"type": "json_object", "value": SCHEMA},
        {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}},
        {"type": "json_schema", "value": {"name": "city", "schema": SCHEMA}},
    ],
)
def test_json_dialects_give_one_constraint(response_format):
    constraint = parse_response_format(response_format)
    assert constraint.kind == "json"
    assert constraint.schema == SCHEMA


def test_pydantic_class_is_its_json_schema():
    constraint = parse_response_format(City)
    assert constraint.kind == "json"
    assert constraint.schema == City.model_json_schema()


def test_json_object_without_value_is_any_object(tokenizer):
    compiled = compile_constraint({"type": "json_object"}, tokenizer)
    assert compiled.constraint.schema == {"type": "object"}


def test_text_and_none_are_unconstrained(tokenizer):
    assert compile_constraint({"type": "text"}, tokenizer).is_unconstrained
    assert compile_constraint(None, tokenizer).is_unconstrained


def test_regex_and_grammar(tokenizer):
    assert parse_response_format({"type": "regex", "value": "[a-z]+"}) == Constraint("regex", "[a-z]+")
    compiled = compile_constraint({"type": "grammar", "value": load_grammar("arithmetic")}, tokenizer)
    assert compiled.constraint.kind == "grammar"


@pytest.mark.parametrize("name", shipped_grammars())
def test_every_shipped_grammar_compiles(tokenizer, name):
    compiled = compile_constraint({"type": "grammar", "value": load_grammar(name)}, tokenizer)
    assert compiled.matcher() is not None


@pytest.mark.parametrize(
    ("response_format", "error", "param"),
    [
        ({"type": "xml", "value": "<a/>"}, InvalidRequestError, "response_format.type"),
        ({"type": "json"}, InvalidRequestError, "response_format.value"),
        ({"type": "json", "value": "{not json"}, InvalidSchemaError, "response_format.value"),
        ({"type": "json", "value": {"type": "objec"}}, InvalidSchemaError, "response_format.value.type"),
        ({"type": "json", "value": {"properties": {"a": {"minimum": "3"}}}}, InvalidSchemaError, None),
        ({"type": "json", "value": 42}, InvalidSchemaError, "response_format.value"),
        ({"type": "regex", "value": "(ab"}, InvalidRegexError, "response_format.value"),
        ({"type": "regex", "value": ""}, InvalidRequestError, "response_format.value"),
        ({"type": "grammar", "value": "start: undefined_rule"}, InvalidGrammarError, "response_format"),
        ({"type": "grammar", "value": "start: ("}, InvalidGrammarError, "response_format"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, InvalidRequestError, "response_format.json_schema"),
        ({"type": "text", "value": "x"}, InvalidRequestError, "response_format.value"),
        ({"type": "json", "value": SCHEMA, "extra": 1}, InvalidRequestError, "response_format"),
        ("json", InvalidRequestError, "response_format"),
    ],
)
def test_bad_response_formats_name_the_field(tokenizer, response_format, error, param):
    with pytest.raises(error) as info:
        compile_constraint(response_format, tokenizer)
    if param is not None:
        assert info.value.param == param
    assert info.value.status_code == 400
    assert "response_format" in info.value.message or "regex" in info.value.message or "grammar" in info.value.message


def test_unsupported_keyword_is_named_with_its_location(tokenizer):
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)x"}}}
    with pytest.raises(UnsupportedSchemaError) as info:
        compile_constraint({"type": "json", "value": schema}, tokenizer)
    assert info.value.keyword == "pattern" or "pattern" in info.value.message or "lookaround" in info.value.message


@pytest.mark.parametrize("schema", [False, {"enum": []}, {"allOf": [{"type": "string"}, {"type": "integer"}]},
                                    {"type": "object", "properties": {"a": False}, "required": ["a"]}])
def test_a_schema_that_admits_nothing_is_refused_or_compiled_exactly(tokenizer, schema):
    with pytest.raises(UnsatisfiableSchemaError) as info:
        compile_constraint({"type": "json", "value": schema}, tokenizer)
    assert info.value.status_code == 400 and info.value.param == "response_format.value"
    # On request, the empty language itself: no token is ever allowed, not even EOS.
    empty = compile_constraint({"type": "json", "value": schema}, tokenizer, allow_empty=True)
    matcher = empty.matcher()
    bits = np.full((empty.vocab_size + 31) // 32, -1, dtype=np.int32)
    matcher.fill_bitmask(bits)
    assert not bits.any()
    assert not matcher.consume(tokenizer.encode("{", add_special_tokens=False)[0])
    assert not matcher.is_accepting()
    # ... and asking for it once does not change what the default call does.
    with pytest.raises(UnsatisfiableSchemaError):
        compile_constraint({"type": "json", "value": schema}, tokenizer)


def test_compiled_constraints_are_cached(tokenizer):
    first = compile_constraint({"type": "json", "value": SCHEMA}, tokenizer)
    again = compile_constraint({"type": "json", "value": SCHEMA}, tokenizer)
    assert again.grammar is first.grammar
