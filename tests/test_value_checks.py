"""Values checked while generating: a ``oneOf`` whose branches may overlap, a ``not`` or an ``if``
with no exact grammar form is written in the grammar as a superset, and the matcher validates
the value at that place when it ends.

Every text is walked through the masks token by token and the verdict compared with
``jsonschema`` on the parsed value: the language must be exactly the schema's.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from constrain import compile_constraint, export_constraint
from constrain.errors import UnsupportedSchemaError
from constrain.schema import normalize, normalize_with_rules
from constrain.schema.array_rules import ANY_INDEX, ValueRule
from constrain.schema.check import is_valid_instance
from tests.conftest import mask_walk

OVERLAPPING_STRINGS = {  # "x..." matches both branches
    "type": "object",
    "properties": {"code": {"oneOf": [{"type": "string", "maxLength": 4}, {"type": "string", "pattern": "^x"}]}},
    "required": ["code"],
    "additionalProperties": False,
}
OVERLAPPING_OBJECTS = {  # an object with "a" and only integer values matches both branches
    "type": "array",
    "items": {"oneOf": [{"type": "object", "required": ["a"]},
                        {"type": "object", "additionalProperties": {"type": "integer"}}]},
}
ROOT_NUMBERS = {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]}
NOT_A_PATTERN = {"type": "string", "not": {"pattern": "^a"}}
IF_A_PATTERN = {"type": "string", "if": {"pattern": "^a"}, "then": {"maxLength": 3}, "else": {"minLength": 2}}

CASES = [
    (OVERLAPPING_STRINGS, ['{"code":"ab"}', '{"code":"xyzzy"}', '{"code":"x"}', '{"code":"xabc"}',
                           '{"code":"abcde"}', '{"code":""}']),
    (OVERLAPPING_OBJECTS, ['[]', '[{"a":1}]', '[{"b":2},{"a":[]}]', '[{"a":"s","b":2}]', '[{}]',
                           '[{"a":"s"},{"b":1,"a":0}]', '[{"c":"x"}]', '[{"b":2},{"a":{}},{"c":3}]']),
    (ROOT_NUMBERS, ["1", "-7", "2.5", "3", "2", "1.5", "40"]),
    (NOT_A_PATTERN, ['"b"', '""', '"a"', '"abc"', '"ba"']),
    (IF_A_PATTERN, ['"abc"', '"abcd"', '"a"', '"bc"', '"b"', '""']),
]


@pytest.mark.parametrize(("schema", "texts"), CASES, ids=["strings", "objects", "root-numbers", "not", "if"])
def test_the_language_is_exactly_the_schemas(tokenizer, schema, texts):
    verdicts = {text: jsonschema.Draft202012Validator(schema).is_valid(json.loads(text)) for text in texts}
    assert any(verdicts.values()) and not all(verdicts.values())  # both kinds in every case
    for text, valid in verdicts.items():
        assert mask_walk(tokenizer, schema, text) == valid, text


def test_a_top_level_number_that_fails_its_check_cannot_end_the_output(tokenizer):
    compiled = compile_constraint({"type": "json", "value": ROOT_NUMBERS}, tokenizer)
    bits = np.zeros((compiled.vocab_size + 31) // 32, dtype=np.int32)
    eos = compiled.engine.eos_token_id
    for text, can_end in (("3", False), ("1", True)):
        matcher = compiled.matcher()
        for token in tokenizer.encode(text, add_special_tokens=False):
            assert matcher.consume(token)
        matcher.fill_bitmask(bits)
        assert bool((int(bits.view(np.uint32)[eos >> 5]) >> (eos & 31)) & 1) == can_end, text
        assert matcher.is_accepting() == can_end


def test_the_check_stands_where_the_keyword_is_written():
    engine_schema, rules = normalize_with_rules(OVERLAPPING_OBJECTS)
    assert "_checked_at_runtime" not in json.dumps(engine_schema)
    [(path, rule)] = rules
    assert path == (ANY_INDEX,) and isinstance(rule, ValueRule) and rule.keyword == "oneOf"


def test_without_the_matcher_the_reason_is_the_error():
    with pytest.raises(UnsupportedSchemaError) as info:
        normalize(OVERLAPPING_OBJECTS)
    assert info.value.keyword == "oneOf" and "no exact complement" in info.value.message


@pytest.mark.parametrize("schema", [
    # a pattern property may govern the same name unchecked: the path would not tell which applies
    {"type": "object", "properties": {"v": OVERLAPPING_STRINGS["properties"]["code"]},
     "patternProperties": {"^v": {"type": "string"}}},
    # under a recursive $ref: places without end
    {"$defs": {"node": {"type": "object", "properties": {
        "kind": {"oneOf": [{"type": "string"}, {"type": "string", "pattern": "^x"}]},
        "next": {"$ref": "#/$defs/node"}}}}, "$ref": "#/$defs/node"},
])
def test_ambiguous_or_recursive_places_are_refused_with_the_keyword(tokenizer, schema):
    with pytest.raises(UnsupportedSchemaError) as info:
        compile_constraint({"type": "json", "value": schema}, tokenizer)
    assert info.value.keyword == "oneOf" and "oneOf" in info.value.param


def test_listed_values_are_checked_at_compile_time(tokenizer):
    schema = {"enum": ["ab", "xy", "xyzzy", 7], "oneOf": [{"type": "string", "maxLength": 4},
                                                          {"type": "string", "pattern": "^x"}]}
    engine_schema, rules = normalize_with_rules(schema)
    assert rules == () and json.dumps(engine_schema).count("ab") == 1
    assert [t for t in ('"ab"', '"xy"', '"xyzzy"', "7") if mask_walk(tokenizer, schema, t)] == ['"ab"', '"xyzzy"']


def test_export_refuses_a_checked_value_naming_the_keyword():
    with pytest.raises(UnsupportedSchemaError) as info:
        export_constraint({"type": "json", "value": OVERLAPPING_OBJECTS})
    assert info.value.keyword == "oneOf" and "runtime matcher" in info.value.message


def test_generation_keeps_the_check(model):
    schema = {"type": "object", "properties": {"tags": {"type": "array", "minItems": 2, "maxItems": 4,
                                                        "items": OVERLAPPING_STRINGS["properties"]["code"]}},
              "required": ["tags"], "additionalProperties": False}
    for seed in range(3):
        out = model.chat_completion(
            [{"role": "user", "content": "Give a few short codes, some starting with x."}],
            response_format={"type": "json", "value": schema}, max_tokens=80, seed=seed, temperature=1.0)
        value = json.loads(out.choices[0].message.content)
        jsonschema.validate(value, schema)


def test_a_check_on_any_value_is_kept(tokenizer):
    schema = {"not": {"type": "integer"}}  # the grammar is any value; the check, "not an integer"
    assert [t for t in ('"a"', "1", "1.5", "[1]", "true") if mask_walk(tokenizer, schema, t)] == ['"a"', "1.5", "[1]",
                                                                                               "true"]


def test_a_dead_end_is_an_error_naming_the_check(tokenizer):
    schema = {"type": "string", "maxLength": 2, "not": {"pattern": "^a"}}  # '"ab' can only close, and fails
    compiled = compile_constraint({"type": "json", "value": schema}, tokenizer)
    matcher = compiled.matcher()
    for token in tokenizer.encode('"ab', add_special_tokens=False):
        assert matcher.consume(token)
    bits = np.zeros((compiled.vocab_size + 31) // 32, dtype=np.int32)
    matcher.fill_bitmask(bits)
    assert not bits.any()
    assert "`not` (at /not)" in (matcher.error() or "") and "checked when the value ends" in matcher.error()
    matcher.rollback(1)  # exploring elsewhere (the budget closer does) forgets it
    assert matcher.error() is None


def test_patterns_a_name_may_match_together_are_checked(tokenizer):
    schema = {"patternProperties": {"[0-9]{2,}": {"type": "boolean"}, "X_": {"type": "string"}}}  # "X_12" both
    texts = ['{"answer 1":"42"}', '{"a31b":null}', '{"a31b":true}', '{"X_1":"s"}', '{"X_12":"s"}', '{"X_12":true}',
             '{"a_X_3":3}', '{}']
    for text in texts:
        valid = jsonschema.Draft202012Validator(schema).is_valid(json.loads(text))
        assert mask_walk(tokenizer, schema, text) == valid, text


def test_alternatives_that_differ_in_checks_are_checked_as_a_whole(tokenizer):
    # "kind" absent: nothing to check; present: exactly one branch. One place, two rules: the
    # whole node becomes the check there.
    schema = {"type": "object", "properties": {"kind": {"type": "string"}, "n": {"type": "integer"}},
              "dependencies": {"kind": {"oneOf": [{"properties": {"kind": {"maxLength": 3}}},
                                                  {"properties": {"kind": {"pattern": "^x"}}}]}}}
    [(path, rule)] = normalize_with_rules(schema)[1]
    assert path == () and rule.keyword == "oneOf"
    texts = ['{"n":1}', '{"kind":"ab"}', '{"kind":"xyzzy"}', '{"kind":"xy"}', '{"kind":"abcd"}', '{}']
    for text in texts:
        valid = jsonschema.Draft7Validator(schema).is_valid(json.loads(text))
        assert mask_walk(tokenizer, schema, text) == valid, text


def test_a_check_enforces_formats_as_the_grammar_does():
    # jsonschema alone skips `duration` without its optional package; a check must agree with the
    # grammar, or a union's other branch could let an invalid value through (MaskBench's
    # component_spec did, before)
    text = json.dumps({"type": "object", "properties": {"d": {"type": "string", "format": "duration"}}})
    assert is_valid_instance(text, {"d": "P1D"}) and not is_valid_instance(text, {"d": "abc"})
