"""``property_order="any"``: every key order is accepted, and still nothing the schema rejects.

The mask is walked token by token (``fill_bitmask`` then ``consume``) and compared with
``jsonschema`` on the parsed value; texts with a repeated key are built by hand, since a
parsed object cannot hold one.
"""

from __future__ import annotations

import itertools
import json
import random

import jsonschema
import pytest

from constrain import compile_constraint
from constrain.errors import InvalidRequestError
from constrain.schema import normalize_with_rules
from constrain.schema.array_rules import ANY_INDEX, AnyKey
from constrain.schema.order import ObjectRule
from tests.conftest import mask_walk


def walk(tokenizer, schema, text: str, order: str = "any") -> bool:
    return mask_walk(tokenizer, schema, text, property_order=order)


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def shuffled(value, rng: random.Random):
    """``value`` with every object's keys in a random order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                   "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                               "required": ["city", "zip"], "additionalProperties": False}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_every_order_of_a_valid_object_is_accepted(tokenizer):
    value = {"name": "Ada", "age": 36, "address": {"city": "London", "zip": "N1"}}
    for keys in itertools.permutations(value):
        text = compact({k: value[k] for k in keys})
        assert walk(tokenizer, PERSON, text), text
        assert walk(tokenizer, PERSON, text, order="schema") == (list(keys) == list(PERSON["properties"]))
    assert walk(tokenizer, PERSON, '{"address":{"zip":"N1","city":"London"},"age":36,"name":"Ada"}')


@pytest.mark.parametrize("text", [
    '{"age":36}',  # a required key missing
    '{"age":36,"name":"Ada","age":37}',  # a key twice
    '{"name":"Ada","name":"Bob","age":1}',
    '{"age":36,"name":"Ada","address":{"zip":"N1"}}',  # missing inside
    '{"age":36,"name":"Ada","address":{"zip":"N1","zip":"N2","city":"x"}}',
    '{"age":36,"name":"Ada","extra":1}',  # additionalProperties false still holds
    '{"age":"36","name":"Ada"}',
])
def test_repeated_missing_or_wrong_keys_are_refused(tokenizer, text):
    assert not walk(tokenizer, PERSON, text)


def test_a_union_at_the_object_keeps_each_branch_exact(tokenizer):
    # oneOf discriminated by `kind`: the key set a branch requires depends on the branch taken
    schema = {
        "type": "object",
        "properties": {"kind": {"type": "string"}, "r": {"type": "number"}, "w": {"type": "number"},
                       "h": {"type": "number"}},
        "oneOf": [{"properties": {"kind": {"const": "circle"}}, "required": ["kind", "r"]},
                  {"properties": {"kind": {"const": "rect"}}, "required": ["kind", "w", "h"]}],
        "additionalProperties": False,
    }
    for text in ['{"r":1,"kind":"circle"}', '{"h":2,"kind":"rect","w":1}', '{"w":1,"h":2,"kind":"rect"}']:
        assert walk(tokenizer, schema, text), text
    for text in ['{"r":1,"kind":"rect"}', '{"h":2,"kind":"rect"}', '{"kind":"circle"}', '{"w":1,"kind":"circle"}']:
        assert not walk(tokenizer, schema, text), text


def test_dependencies_in_any_order(tokenizer):
    schema = {"type": "object", "properties": {"card": {"type": "string"}, "billing": {"type": "string"}},
              "dependentRequired": {"card": ["billing"]}}
    assert walk(tokenizer, schema, '{"billing":"x","card":"1"}')
    assert walk(tokenizer, schema, '{"billing":"x"}')
    assert not walk(tokenizer, schema, '{"card":"1"}')


def test_objects_in_arrays_and_maps_and_shared_definitions(tokenizer):
    schema = {
        "$defs": {"pt": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                         "required": ["x", "y"], "additionalProperties": False}},
        "type": "object",
        "properties": {"path": {"type": "array", "items": {"$ref": "#/$defs/pt"}},
                       "named": {"type": "object", "additionalProperties": {"$ref": "#/$defs/pt"}}},
    }
    assert walk(tokenizer, schema, '{"named":{"a":{"y":1,"x":2}},"path":[{"x":1,"y":2},{"y":3,"x":4}]}')
    assert not walk(tokenizer, schema, '{"path":[{"x":1,"y":2},{"y":3}]}')
    assert not walk(tokenizer, schema, '{"named":{"a":{"y":1,"y":2}}}')


def union_below(first, second):
    """An anyOf whose branches hold /a to ``first`` or ``second``."""
    return {"anyOf": [{"type": "object", "properties": {"a": branch}, "required": ["a"], "additionalProperties": False}
                      for branch in (first, second)]}


def test_below_a_union_the_keys_decide_or_the_schema_order_stays(tokenizer):
    # Under an anyOf, the object at /a may be either branch's. Closed forms whose names rule each
    # other out: the keys tell which form's required names apply, so any order is exact.
    schema = union_below(
        {"type": "object", "properties": {"p": {}, "q": {}}, "required": ["p", "q"], "additionalProperties": False},
        {"type": "object", "properties": {"q": {}, "r": {}}, "required": ["r"], "additionalProperties": False})
    _, rules = normalize_with_rules(schema, property_order="any")
    assert [path for path, _ in rules] == [("a",), ()]
    assert walk(tokenizer, schema, '{"a":{"p":1,"q":2}}')
    assert walk(tokenizer, schema, '{"a":{"q":2,"p":1}}')
    assert walk(tokenizer, schema, '{"a":{"r":1,"q":2}}')
    assert not walk(tokenizer, schema, '{"a":{"q":2}}')  # neither branch: p missing, r missing
    assert not walk(tokenizer, schema, '{"a":{"q":2,"q":1}}')
    # The same names, one form requiring more: the keys {"q"} fit both, and whether the object may
    # close depends on the branch the grammar follows. That object keeps one order, exactly.
    schema = union_below(
        {"type": "object", "properties": {"p": {}, "q": {}}, "required": ["p", "q"], "additionalProperties": False},
        {"type": "object", "properties": {"p": {}, "q": {}, "z": {"const": 1}}, "required": ["z"],
         "additionalProperties": False})
    _, rules = normalize_with_rules(schema, property_order="any")
    assert [path for path, _ in rules] == [()]
    assert walk(tokenizer, schema, '{"a":{"p":1,"q":2}}')
    assert walk(tokenizer, schema, '{"a":{"q":2,"z":1}}')
    assert not walk(tokenizer, schema, '{"a":{"q":2}}')
    assert not walk(tokenizer, schema, '{"a":{"q":2,"p":1}}')  # valid, but not in the schema's order


META = {"type": "object", "properties": {"priority": {"type": "number"}, "audience": {"type": "array"}},
        "additionalProperties": False}


def content_union(image_meta):
    """Content that is text or an image, both with annotations (MCP's shape)."""
    return {"type": "object", "properties": {"content": {"anyOf": [
        {"type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string"}, "annotations": META},
         "required": ["type", "text"], "additionalProperties": False},
        {"type": "object", "properties": {"type": {"const": "image"}, "data": {"type": "string"},
                                          "annotations": image_meta},
         "required": ["type", "data"], "additionalProperties": False},
    ]}}}


def test_below_a_union_objects_whose_forms_need_the_same_keys_take_any_order(tokenizer):
    # Every form of /content/annotations requires the same names (none): the grammar holds each
    # form's names and values, the matcher the required ones, whichever branch is taken.
    schema = content_union({**META, "properties": {**META["properties"], "extra": {}}})
    _, rules = normalize_with_rules(schema, property_order="any")
    assert ("content", "annotations") in {path for path, _ in rules}
    assert walk(tokenizer, schema, '{"content":{"annotations":{"audience":[],"priority":1},"text":"t","type":"text"}}')
    assert walk(tokenizer, schema, '{"content":{"data":"d","annotations":{"extra":0,"priority":1},"type":"image"}}')
    assert not walk(tokenizer, schema, '{"content":{"type":"text","text":"t","annotations":{"extra":0}}}')
    assert not walk(tokenizer, schema, '{"content":{"type":"text","text":"t","annotations":{"priority":1,"priority":2}}}')
    # Forms that require different names: the path does not say which applies, the order stays.
    schema = content_union({**META, "required": ["priority"]})
    _, rules = normalize_with_rules(schema, property_order="any")
    assert ("content", "annotations") not in {path for path, _ in rules}
    assert walk(tokenizer, schema, '{"content":{"type":"image","data":"d","annotations":{"priority":1,"audience":[]}}}')
    assert not walk(tokenizer, schema, '{"content":{"type":"image","data":"d","annotations":{"audience":[]}}}')
    assert not walk(tokenizer, schema, '{"content":{"type":"image","data":"d","annotations":{"audience":[],"priority":1}}}')


def test_below_a_union_a_name_only_one_branch_declares_is_an_exact_place(tokenizer):
    # Only the resource branch declares /content/resource; its own union (text or blob, which
    # require different names) is then checked against that subschema, as at the root.
    resource = {"anyOf": [
        {"type": "object", "properties": {"uri": {"type": "string"}, "text": {"type": "string"}},
         "required": ["uri", "text"], "additionalProperties": False},
        {"type": "object", "properties": {"uri": {"type": "string"}, "blob": {"type": "string"}},
         "required": ["uri", "blob"], "additionalProperties": False}]}
    schema = {"type": "object", "properties": {"content": {"anyOf": [
        {"type": "object", "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
         "required": ["type", "text"]},
        {"type": "object", "properties": {"type": {"const": "resource"}, "resource": resource},
         "required": ["type", "resource"]},
    ]}}}
    _, rules = normalize_with_rules(schema, property_order="any")
    rule = dict(rules)[("content", "resource")]
    assert rule.schema is not None  # validated against the subschema: the forms need different names
    assert walk(tokenizer, schema, '{"content":{"resource":{"text":"t","uri":"u"},"type":"resource"}}')
    assert walk(tokenizer, schema, '{"content":{"type":"resource","resource":{"blob":"b","uri":"u"}}}')
    assert not walk(tokenizer, schema, '{"content":{"type":"resource","resource":{"uri":"u"}}}')
    assert not walk(tokenizer, schema, '{"content":{"type":"resource","resource":{"text":"t"}}}')
    # The text branch is open: another of its keys may be called resource and hold anything,
    # so the name is no longer governed by one declaration, and that object keeps one order.
    schema["properties"]["content"]["anyOf"][0]["additionalProperties"] = {"type": "object"}
    _, rules = normalize_with_rules(schema, property_order="any")
    assert ("content", "resource") not in dict(rules)
    assert not walk(tokenizer, schema, '{"content":{"type":"resource","resource":{"text":"t","uri":"u"}}}')


def test_all_of_members_and_a_lone_pattern_govern_their_places_together(tokenizer):
    schema = {
        "$defs": {"base": {"type": "object", "properties": {"meta": {"type": "object", "properties": {
            "id": {"type": "integer"}, "tag": {"type": "string"}}, "required": ["id"]}}}},
        "allOf": [{"$ref": "#/$defs/base"},
                  {"properties": {"meta": {"required": ["tag"]},
                                  "items": {"type": "object", "additionalProperties": False,
                                            "patternProperties": {"^[a-z]+$": {"type": "object", "properties": {
                                                "x": {}, "y": {}}, "required": ["x", "y"]}}}}}],
    }
    out, rules = normalize_with_rules(schema, property_order="any")
    assert {("meta",), ("items", AnyKey(frozenset()))} <= {path for path, _ in rules}
    assert walk(tokenizer, schema, '{"meta":{"tag":"t","id":1},"items":{"a":{"y":1,"x":2}}}')
    assert not walk(tokenizer, schema, '{"meta":{"id":1}}')  # the second member's required
    assert not walk(tokenizer, schema, '{"items":{"a":{"y":1}}}')


def test_places_and_rewrites():
    schema = {
        "$defs": {"pt": {"type": "object", "properties": {"x": {}, "y": {}}, "required": ["x"]}},
        "type": "object",
        "properties": {"one": {"$ref": "#/$defs/pt"},
                       "many": {"type": "array", "items": {"$ref": "#/$defs/pt"}},
                       "map": {"additionalProperties": {"$ref": "#/$defs/pt"}},
                       "either": {"anyOf": [{"$ref": "#/$defs/pt"}, {"type": "null"}]},
                       "counted": {"type": "object", "properties": {"a": {}}, "minProperties": 1}},
    }
    out, rules = normalize_with_rules(schema, property_order="any")
    paths = {path for path, rule in rules}
    assert isinstance(rules[0][1], ObjectRule)
    # an anyOf *at* a place is fine (below it x and y hold no objects); minProperties keeps its order
    assert paths == {(), ("one",), ("many", ANY_INDEX), ("map", AnyKey(frozenset())), ("either",)}
    props = out["patternProperties"] if "patternProperties" in out else out["anyOf"][0]["patternProperties"]
    assert set(props) == {"^one$", "^many$", "^map$", "^either$", "^counted$"}
    assert "patternProperties" not in json.dumps(props["^counted$"])
    assert normalize_with_rules(schema)[1] == ()  # the default: the schema's order, no rules


def test_agrees_with_the_reference_on_random_orders_and_mutations(tokenizer):
    """Seeded: valid instances of a few schemas, keys shuffled, some mutated (a key dropped,
    a value changed): the mask accepts exactly what jsonschema accepts."""
    rng = random.Random(11)
    cases = [
        (PERSON, {"name": "A", "age": 1, "address": {"city": "c", "zip": "z"}}),
        ({"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {
            "type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "integer"}}, "required": ["k"]}}},
          "required": ["id"], "dependentRequired": {"tags": ["id"]}},
         {"id": 3, "tags": [{"k": "a", "v": 1}, {"v": 2, "k": "b"}], "extra": True}),
        ({"type": "object", "properties": {"t": {"enum": ["a", "b"]}, "x": {}, "y": {}},
          "required": ["t"], "if": {"properties": {"t": {"const": "a"}}}, "then": {"required": ["x"]},
          "else": {"required": ["y"]}}, {"t": "a", "x": 1, "y": 2}),
        (content_union({**META, "properties": {**META["properties"], "extra": {}}}),
         {"content": {"type": "image", "data": "d", "annotations": {"priority": 1, "audience": [], "extra": 0}}}),
    ]
    checked = 0
    for schema, value in cases:
        reference = jsonschema.Draft202012Validator(schema)
        assert reference.is_valid(value)
        for _ in range(15):
            candidate = shuffled(value, rng)
            if rng.random() < 0.5:
                key = rng.choice(list(candidate))
                if rng.random() < 0.5:
                    candidate = {k: v for k, v in candidate.items() if k != key}
                else:
                    candidate = {**candidate, key: rng.choice(["s", 7, None, [1]])}
            assert walk(tokenizer, schema, compact(candidate)) == reference.is_valid(candidate), (schema, candidate)
            checked += 1
    assert checked == 60


def test_a_union_is_checked_with_the_normaliser_s_reading_of_the_schema(tokenizer):
    # 2020-12 dropped `dependencies` from the vocabulary, but constrain still enforces it; the
    # closing check under a union must read it the same way, or it would let an object close.
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "dependencies": {"foo\nbar": ["foo\rbar"]}}
    assert walk(tokenizer, schema, compact({"foo\rbar": 2, "foo\nbar": 1}))
    assert not walk(tokenizer, schema, compact({"foo\nbar": 1, "foo": 2}))


def test_property_order_must_be_known(tokenizer):
    with pytest.raises(InvalidRequestError) as info:
        compile_constraint({"type": "json", "value": PERSON}, tokenizer, property_order="sorted")
    assert info.value.param == "property_order"


@pytest.mark.model
def test_the_model_writes_valid_json_with_any_order(model):
    from constrain.model import Model

    anyorder = Model(model.name, model.hf_model, model.tokenizer, property_order="any")
    for seed in range(3):
        out = anyorder.chat_completion(
            messages=[{"role": "user", "content": "Describe a person who lives in a city, as JSON."}],
            response_format={"type": "json", "value": PERSON}, max_tokens=120, seed=seed, temperature=1.0,
        )
        choice = out.choices[0]
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), PERSON)


def test_a_pattern_only_a_few_names_match_takes_any_order(tokenizer):
    # The names of a finite pattern are exact names: required ones in any order, each once.
    schema = {"type": "object", "required": ["name:en", "key"],
              "patternProperties": {"^name:(en|nl)$": {"type": "string"}, "^(key|secret)$": {"type": "integer"},
                                    "^x-": {"type": "boolean"}},
              "additionalProperties": False}
    _, rules = normalize_with_rules(schema, property_order="any")
    assert [path for path, _ in rules] == [()]
    assert walk(tokenizer, schema, '{"key":1,"x-a":true,"name:en":"a","name:nl":"b"}')
    assert walk(tokenizer, schema, '{"name:nl":"b","secret":2,"name:en":"a","key":1}')
    assert not walk(tokenizer, schema, '{"name:nl":"b","key":1}')  # name:en is required
    assert not walk(tokenizer, schema, '{"key":1,"name:en":"a","key":2}')
    assert not walk(tokenizer, schema, '{"key":"1","name:en":"a"}')
    assert not walk(tokenizer, schema, '{"key":1,"name:en":"a","name:fr":"c"}')


def test_a_pattern_every_name_matches_governs_the_objects_below_it(tokenizer):
    # `^[a-z]*` finds a match in every name: each value is held to it, objects below in any order.
    schema = {"type": "object", "patternProperties": {"^[a-z]*": {
        "type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}, "required": ["x", "y"],
        "additionalProperties": False}}}
    _, rules = normalize_with_rules(schema, property_order="any")
    assert ((AnyKey(frozenset()),)) in {path for path, _ in rules}
    assert walk(tokenizer, schema, '{"Any key":{"y":1,"x":2},"b":{"x":1,"y":2}}')
    assert not walk(tokenizer, schema, '{"a":{"y":1}}')
    assert not walk(tokenizer, schema, '{"a":{"y":1,"y":2}}')


def test_finite_languages_of_engine_patterns():
    from constrain.schema.patterns import finite_language

    assert finite_language("^name:(?:en|nl)$", 64) == ["name:en", "name:nl"]
    assert finite_language("^c[0-2]x?$", 64) == ["c0", "c0x", "c1", "c1x", "c2", "c2x"]
    assert finite_language("^\\.\\x20[ab]{2}$", 64) == [". aa", ". ab", ". ba", ". bb"]
    for infinite in ("^a+$", "^a.$", "^[^a]$", "^\\d$", "^a{2,}$", "name", "^a|b$", "", "^(?i)a$"):
        assert finite_language(infinite, 64) is None, infinite
    assert finite_language("^[a-z]{2}$", 64) is None  # 676 names: past the limit


def test_a_declared_name_a_pattern_also_matches_takes_any_order(tokenizer):
    # `headers.x` is declared and matched by the pattern too (both schemas apply: here the same):
    # the pattern spells it, so the engine's patterns stay disjoint and the keys take any order.
    schema = {"type": "object", "required": ["status", "headers.x"], "additionalProperties": False,
              "properties": {"status": {"type": "integer"}, "headers.x": {"type": "string"}},
              "patternProperties": {"^headers\\.": {"type": "string"}}}
    _, rules = normalize_with_rules(schema, property_order="any")
    assert [path for path, _ in rules] == [()]
    assert walk(tokenizer, schema, '{"headers.y":"b","headers.x":"a","status":1}')
    assert walk(tokenizer, schema, '{"status":1,"headers.x":"a"}')
    assert not walk(tokenizer, schema, '{"headers.y":"b","status":1}')  # headers.x is required
    assert not walk(tokenizer, schema, '{"headers.x":"a","status":1,"headers.x":"c"}')
    assert not walk(tokenizer, schema, '{"headers.x":1,"status":1}')
