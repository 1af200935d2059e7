"""The structural normaliser: every rewrite admits exactly the instances JSON Schema admits.

Each case lists valid and invalid instances; both ``jsonschema`` (the reference) and the
compiled mask (tokens of the compact serialisation walked through the matcher) must agree.
"""

from __future__ import annotations

import json
import random
import warnings

import jsonschema
import pytest

from constrain import compile_constraint
from constrain.errors import InvalidSchemaError, UnsatisfiableSchemaError, UnsupportedSchemaError
from constrain.schema import normalize
from constrain.schema.dialects import dialect_of, upgrade
from constrain.schema.scalars import not_one_of_strings
from tests.conftest import mask_walk, read_jsonl_gz


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def mask_accepts(tokenizer, schema, value) -> bool:
    matcher = compile_constraint({"type": "json", "value": schema}, tokenizer).matcher()
    for token in tokenizer.encode(compact(value), add_special_tokens=False):
        if not matcher.consume(token):
            return False
    return matcher.is_accepting()


def check(tokenizer, schema, valid=(), invalid=()):
    """Assert the reference and the mask both accept ``valid`` and both reject ``invalid``."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    reference = cls(schema)
    for value in valid:
        assert reference.is_valid(value), f"test data: {value!r} should be valid"
        assert mask_accepts(tokenizer, schema, value), f"mask rejects valid {compact(value)}"
    for value in invalid:
        assert not reference.is_valid(value), f"test data: {value!r} should be invalid"
        assert not mask_accepts(tokenizer, schema, value), f"mask accepts invalid {compact(value)}"


def unsupported(schema) -> UnsupportedSchemaError:
    with pytest.raises(UnsupportedSchemaError) as info:
        normalize(schema, param="response_format.value")
    return info.value


# --------------------------------------------------------------------------- $ref


def test_ref_defs_and_recursion(tokenizer):
    schema = {
        "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}},
                           "additionalProperties": False}},
        "$ref": "#/$defs/node",
    }
    check(tokenizer, schema, valid=[{}, {"next": {"next": {}}}], invalid=[{"next": 1}, {"x": {}}, 3])


def test_ref_root_recursion_and_definitions_draft7(tokenizer):
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}, "n": {"$ref": "#/definitions/n"}},
              "definitions": {"n": {"type": "integer"}}, "additionalProperties": False}
    check(tokenizer, schema, valid=[{"kids": [{"n": 1}, {"kids": []}]}], invalid=[{"kids": [{"n": "x"}]}, {"n": 1.5}])


def test_ref_anchor_and_local_id(tokenizer):
    schema = {"$defs": {"a": {"$anchor": "short", "type": "string", "maxLength": 2},
                        "b": {"$id": "https://example.com/b.json", "type": "boolean"}},
              "type": "array", "prefixItems": [{"$ref": "#short"}, {"$ref": "https://example.com/b.json"}]}
    check(tokenizer, schema, valid=[["ab", True], []], invalid=[["abc", True], ["a", 1]])


def test_ref_siblings_ignored_before_2019():
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"s": {"type": "string"}},
              "properties": {"x": {"$ref": "#/definitions/s", "maxLength": 1}}}
    assert normalize(schema)["properties"]["x"] == {"type": "string"}


def test_ref_siblings_apply_in_2020():
    schema = {"$defs": {"s": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/s", "maxLength": 1}}}
    assert normalize(schema)["properties"]["x"] == {"type": "string", "maxLength": 1}


def test_remote_ref_is_a_clear_error():
    error = unsupported({"properties": {"x": {"$ref": "https://example.com/other.json"}}})
    assert error.keyword == "$ref"
    assert error.pointer == "/properties/x/$ref"
    assert error.param == "response_format.value.properties.x.$ref"


def test_unused_defs_are_dropped():
    assert normalize({"type": "integer", "$defs": {"x": {"not": {"type": "string", "pattern": "a"}}}}) == {
        "type": "integer"}


# --------------------------------------------------------------------------- allOf, anyOf


def test_all_of_merges_objects(tokenizer):
    schema = {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                        {"properties": {"a": {"minimum": 2}, "b": {"type": "string"}}}]}
    check(tokenizer, schema, valid=[{"a": 2}, {"a": 5, "b": "x"}], invalid=[{"a": 1}, {}, {"a": 3, "b": 1}, "x"])


def test_all_of_additional_properties_applies_to_the_other_sides_names(tokenizer):
    schema = {"allOf": [{"properties": {"a": {}}, "additionalProperties": False},
                        {"properties": {"b": {}}}]}
    check(tokenizer, schema, valid=[{"a": 1}, {}], invalid=[{"b": 1}, {"a": 1, "c": 2}])


def test_all_of_numbers_and_strings(tokenizer):
    schema = {"allOf": [{"minimum": 1, "maxLength": 3}, {"maximum": 5, "exclusiveMinimum": 1, "minLength": 1}]}
    check(tokenizer, schema, valid=[2, 5, "abc", None], invalid=[1, 6, "", "abcd"])


def test_all_of_contradiction_removes_the_type(tokenizer):
    schema = {"anyOf": [{"allOf": [{"type": "string"}, {"type": "integer"}]}, {"type": "null"}]}
    assert normalize(schema) == {"type": "null"}
    check(tokenizer, schema, valid=[None], invalid=["a", 1])


def test_unsatisfiable_root_is_an_invalid_schema():
    with pytest.raises(InvalidSchemaError):
        normalize({"allOf": [{"type": "string"}, {"type": "integer"}]})


def test_any_of_with_siblings(tokenizer):
    schema = {"type": "string", "anyOf": [{"minLength": 3}, {"maxLength": 0}]}
    check(tokenizer, schema, valid=["", "abc"], invalid=["a", 1])


# --------------------------------------------------------------------------- enum / const


def test_enum_filtered_by_the_rest_of_the_node(tokenizer):
    schema = {"allOf": [{"enum": [1, 2, "a", None]}, {"not": {"type": "string"}}, {"not": {"const": 2}}]}
    assert normalize(schema) == {"enum": [1, None]}
    check(tokenizer, schema, valid=[1, None], invalid=[2, "a"])


def test_const_object_spelled_structurally(tokenizer):
    # The engine fixes property order to the declared one, so only that order is generated.
    schema = {"const": {"a": 1, "b": [True, None]}}
    check(tokenizer, schema, valid=[{"a": 1, "b": [True, None]}],
          invalid=[{"a": 1}, {"a": 1, "b": [True]}, {"a": 1, "b": [True, None], "c": 1}])


# --------------------------------------------------------------------------- oneOf


def test_one_of_disjoint_types_becomes_any_of(tokenizer):
    schema = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "integer"}}]}
    assert "anyOf" in normalize(schema)
    check(tokenizer, schema, valid=["x", [1]], invalid=[1, None, ["x"]])


def test_one_of_const_discriminator(tokenizer):
    schema = {"type": "object", "oneOf": [
        {"properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]},
        {"properties": {"kind": {"const": "b"}, "y": {"type": "string"}}, "required": ["kind"]},
    ]}
    check(tokenizer, schema, valid=[{"kind": "a", "x": 1}, {"kind": "b", "y": "s"}],
          invalid=[{"kind": "c"}, {"kind": "a", "x": "s"}, {}])


def test_one_of_overlap_subtracts_the_other_branch(tokenizer):
    schema = {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}
    check(tokenizer, schema, valid=[{"a": 1}, {"b": 1}], invalid=[{"a": 1, "b": 2}, {}])


def test_one_of_numbers_overlapping(tokenizer):
    schema = {"oneOf": [{"type": "integer", "minimum": 5}, {"type": "integer", "maximum": 10}]}
    check(tokenizer, schema, valid=[4, 11, -3], invalid=[5, 7, 10, "x"])


def test_one_of_without_exact_complement_is_an_error():
    error = unsupported({"properties": {"x": {"oneOf": [{"type": "string", "pattern": "a"},
                                                        {"type": "string", "pattern": "b"}]}}})
    assert error.keyword == "oneOf"
    assert error.pointer == "/properties/x/oneOf"
    assert error.param == "response_format.value.properties.x.oneOf"


# --------------------------------------------------------------------------- not


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"not": {"type": "string"}}, [1, None, [], {}], ["x"]),
        ({"not": {"type": ["number", "object"]}}, ["x", None, True], [1, 1.5, {}]),
        ({"not": {"const": True}}, [False, 1, "true"], [True]),
        ({"not": {"enum": [1, 2.5]}}, [0, 2, 3, "1"], [1, 2.5]),
        ({"not": {"enum": ["ab", "a"]}}, ["", "b", "abc", "aa", 1], ["a", "ab"]),
        ({"not": {"required": ["a"]}}, [{}, {"b": 1}], [{"a": 1}, 1]),
        ({"not": {"properties": {"a": {"type": "string"}}}}, [{"a": 1}], [{"a": "x"}, {}, "x"]),
        ({"not": {"minimum": 3}}, [2, 2.5], [3, 4, "x", None]),
        ({"not": {"maxLength": 2}}, ["abc"], ["ab", 1]),
        ({"not": {"minItems": 2}}, [[], [1]], [[1, 2], {}]),
        ({"not": {"not": {"type": "integer"}}}, [1, 2], ["x", 1.5]),
        ({"not": {"anyOf": [{"type": "string"}, {"type": "null"}]}}, [1, []], ["x", None]),
    ],
)
def test_not_decidable_forms(tokenizer, schema, valid, invalid):
    check(tokenizer, schema, valid=valid, invalid=invalid)


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"not": {"type": "string", "pattern": "^a"}}, "pattern"),
        ({"not": {"type": "integer"}}, "not"),
        ({"not": {"multipleOf": 3}}, "multipleOf"),
        ({"not": {"items": {"type": "string"}}}, "items"),
    ],
)
def test_not_undecidable_forms_are_errors(schema, keyword):
    assert unsupported(schema).keyword == keyword


def test_complement_pattern_of_strings():
    import re

    regex = re.compile(not_one_of_strings(["a", "ab", "b.c"]))
    for text in ["", "b", "abc", "aa", "b-c", "b.cd", "x"]:
        assert regex.fullmatch(text), text
    for text in ["a", "ab", "b.c"]:
        assert not regex.fullmatch(text), text


# --------------------------------------------------------------------------- if / dependencies


def test_if_then_else(tokenizer):
    schema = {"type": "object", "properties": {"kind": {"enum": ["x", "y"]}},
              "if": {"properties": {"kind": {"const": "x"}}, "required": ["kind"]},
              "then": {"required": ["a"]}, "else": {"required": ["b"]}}
    check(tokenizer, schema, valid=[{"kind": "x", "a": 1}, {"kind": "y", "b": 1}, {"b": 1}],
          invalid=[{"kind": "x"}, {"kind": "x", "b": 1}, {"kind": "y"}, {}])


def test_if_without_then_or_else_is_ignored(tokenizer):
    check(tokenizer, {"if": {"type": "string", "pattern": "a"}, "type": "integer"}, valid=[1], invalid=["a"])


def test_if_numeric(tokenizer):
    schema = {"if": {"exclusiveMaximum": 0}, "then": {"minimum": -10}, "else": {"multipleOf": 2}}
    check(tokenizer, schema, valid=[-10, -1, 0, 4, "x"], invalid=[-11, 3])


def test_dependent_required(tokenizer):
    schema = {"dependentRequired": {"bar": ["foo"]}}
    check(tokenizer, schema, valid=[{}, {"foo": 1}, {"bar": 2, "foo": 1}, "x"], invalid=[{"bar": 2}])


def test_dependent_schemas(tokenizer):
    schema = {"type": "object", "dependentSchemas": {"bar": {"properties": {"foo": {"type": "integer"}},
                                                             "required": ["foo"]}}}
    check(tokenizer, schema, valid=[{}, {"foo": "x"}, {"foo": 1, "bar": 1}], invalid=[{"bar": 1}, {"bar": 1, "foo": "x"}])


def test_draft4_dependencies(tokenizer):
    schema = {"$schema": "http://json-schema.org/draft-04/schema#",
              "dependencies": {"a": ["b"], "c": {"required": ["d"]}}}
    check(tokenizer, schema, valid=[{}, {"b": 1}, {"a": 1, "b": 1}, {"c": 2, "d": 1}], invalid=[{"a": 1}, {"c": 1}])


# --------------------------------------------------------------------------- arrays


def test_unique_items_from_an_enum(tokenizer):
    schema = {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True}
    check(tokenizer, schema, valid=[[], ["a"], ["c", "a"], ["b", "c", "a"]], invalid=[["a", "a"], ["a", "b", "a"], ["d"]])


def test_unique_booleans_and_short_arrays(tokenizer):
    check(tokenizer, {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True},
          valid=[[True, False], []], invalid=[[True, True], [False, True, False]])
    check(tokenizer, {"type": "array", "uniqueItems": True, "maxItems": 1}, valid=[[], [{"x": 1}]], invalid=[[1, 2]])


def test_unique_items_of_strings_has_no_grammar_form():
    """The grammar alone cannot say it (plain ``normalize`` refuses); the matcher enforces it (below)."""
    assert unsupported({"type": "array", "items": {"type": "string"}, "uniqueItems": True}).keyword == "uniqueItems"


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True},
         [[], ["a"], ["ab", "a"], ['x"y', "x"]], [["a", "a"], ["a", "ab", "a"], ['x"y', 'x"y']]),
        # JSON Schema equality: 1 == 1.0 == 10e-1
        ({"type": "array", "items": {"type": "number"}, "uniqueItems": True},
         [[1, 2], [10, 1], [1.5, 15]], [[1, 1], [1, 1.0], [1.5, 15e-1], [1, 10, 1]]),
        # objects equal whatever their key order; arrays item by item
        ({"type": "array", "items": {"type": "object"}, "uniqueItems": True},
         [[{"a": 1}, {"a": 2}], [{"a": 1}, {"a": [1]}]], [[{"a": 1}, {"a": 1}], [{"a": 1, "b": 2}, {"b": 2, "a": 1}], [{}, {}]]),
        ({"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
          "uniqueItems": True},
         [[[1, 2], [2, 1]], [[1], [1, 2]]], [[[1, 2], [1, 2]], [[1, 1]]]),
        # only the array at that path: a sibling array may repeat
        ({"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                                           "other": {"type": "array", "items": {"type": "string"}}}},
         [{"tags": ["a", "b"], "other": ["a", "a"]}, {"other": ["x", "x"]}], [{"tags": ["a", "a"]}]),
    ],
)
def test_unique_items_over_unbounded_items_is_kept_by_the_matcher(tokenizer, schema, valid, invalid):
    check(tokenizer, schema, valid, invalid)


@pytest.mark.parametrize(
    "schema",
    [
        # the same place may hold an array that need not be unique: the path cannot tell them apart
        {"anyOf": [{"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                   {"type": "array", "items": {"type": "integer"}}]},
        # recursion: unbounded paths
        {"$defs": {"n": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/n"},
                                                                   "uniqueItems": True}}}},
         "$ref": "#/$defs/n"},
    ],
)
def test_unique_items_the_matcher_cannot_place_is_an_error(tokenizer, schema):
    with pytest.raises(UnsupportedSchemaError) as info:
        compile_constraint({"type": "json", "value": schema}, tokenizer)
    assert info.value.keyword == "uniqueItems" or "uniqueItems" in str(info.value)


def test_contains_every_item_matches(tokenizer):
    schema = {"type": "array", "items": {"type": "integer"}, "contains": {"type": "number"}, "minContains": 2}
    check(tokenizer, schema, valid=[[1, 2], [1, 2, 3]], invalid=[[], [1], ["a", 1]])


def test_contains_without_grammar_form():
    """The grammar alone cannot count matches (plain ``normalize`` refuses); the matcher does (below)."""
    assert unsupported({"type": "array", "contains": {"const": 1}}).keyword == "contains"


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        # no type: non-arrays are valid, and `minimum` says nothing of strings
        ({"contains": {"minimum": 5}}, [[3, 4, 5], [6], ["a"], {"a": 1}, 5], [[], [1, 2], [4.5]]),
        ({"contains": {"const": 1}, "minContains": 2}, [[1, 1], [1, 2, 1.0]], [[1], [1, 2], []]),
        ({"contains": {"const": 1}, "maxContains": 1}, [[1], [2, 1, 3]], [[1, 1], [], [2]]),
        ({"contains": {"const": 1}, "minContains": 0, "maxContains": 1}, [[], [2], [1]], [[1, 1], [1, 2, 1]]),
        ({"contains": {"const": 1}, "minContains": 3, "maxContains": 2}, [1, "x"], [[1, 1, 1], []]),
        # nested, and with uniqueItems on the same array
        ({"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                                                  "contains": {"pattern": "^\\d"}, "maxContains": 2}}},
         [{"xs": ["1", "a"]}, {"xs": ["1", "2", "b"]}, {}], [{"xs": ["a"]}, {"xs": ["1", "1"]}, {"xs": ["1", "2", "3"]}]),
        # the subschema refers to the root's definitions (which refer on)
        ({"type": "array", "contains": {"$ref": "#/$defs/one"},
          "$defs": {"one": {"$ref": "#/definitions/x"}}, "definitions": {"x": {"const": 1}}},
         [[1], [2, 1]], [[], [2]]),
        # items that are objects: counted when they close
        ({"type": "array", "items": {"type": "object"}, "contains": {"required": ["id"]}},
         [[{"id": 1}], [{}, {"id": {"x": [1]}}]], [[{}], [{"x": {"id": 1}}]]),
    ],
)
def test_contains_is_counted_by_the_matcher(tokenizer, schema, valid, invalid):
    check(tokenizer, schema, valid, invalid)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("[1,1]", True), ("[1]", False), ("[1,2,3]", False), ("[2,1,3,1]", True), ("[1,1,1]", False), ('["1",1,1]', True)],
)
def test_contains_masks_closing_and_extra_matches(tokenizer, text, ok):
    schema = {"type": "array", "contains": {"type": "integer", "const": 1}, "minContains": 2, "maxContains": 2}
    assert mask_walk(tokenizer, schema, text) is ok


@pytest.mark.parametrize(
    ("text", "ok"),
    [('["b","a","b"]', True), ('["a","b","a"]', False), ('["a","a"]', False), ('["b","b"]', False),
     ('["a"]', True), ('["ab","a"]', True)],
)
def test_contains_masks_on_string_items(tokenizer, text, ok):
    schema = {"type": "array", "items": {"type": "string"}, "contains": {"const": "a"}, "maxContains": 1}
    assert mask_walk(tokenizer, schema, text) is ok


@pytest.mark.parametrize(
    "schema",
    [
        # a reference the matcher's validator could not follow on its own
        {"type": "array", "contains": {"$ref": "#/properties/x"}, "properties": {"x": {"const": 1}}},
        # the matcher cannot look ahead: three slots could all be filled before a match
        {"type": "array", "contains": {"const": 1}, "maxItems": 3},
    ],
)
def test_contains_the_matcher_cannot_keep_is_an_error(tokenizer, schema):
    with pytest.raises(UnsupportedSchemaError) as info:
        compile_constraint({"type": "json", "value": schema}, tokenizer)
    assert info.value.keyword == "contains"


def test_unique_items_the_matcher_keeps_across_branches_and_large_enums(tokenizer):
    # the same rule in every branch of a union; an at-most-one-item branch cannot break it
    schema = {"anyOf": [{"properties": {"x": {"minItems": 1}}}, {"properties": {"x": {"maxItems": 0}}}],
              "properties": {"x": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}}
    check(tokenizer, schema, valid=[{"x": ["a", "b"]}, {"x": []}], invalid=[{"x": ["a", "a"]}])
    # 19 values: too many orderings to spell out, so the matcher keeps them distinct
    values = [f"v{i}" for i in range(19)]
    schema = {"type": "array", "items": {"enum": values}, "uniqueItems": True, "minItems": 1}
    check(tokenizer, schema, valid=[["v3", "v18", "v0"]], invalid=[["v3", "v3"], [], ["v19"]])


def test_merged_properties_follow_the_document_order():
    """Conjuncts merge in the order their keywords are written: what comes first is generated first."""
    a, b = {"properties": {"a": {"type": "integer"}}}, {"properties": {"b": {"type": "integer"}}}
    assert list(normalize({"allOf": [b], **a})["properties"]) == ["b", "a"]
    assert list(normalize({**a, "allOf": [b]})["properties"]) == ["a", "b"]
    first = normalize({"oneOf": [{**b, "type": "object"}, {"type": "string"}], **a, "type": ["object", "string"]})
    assert [list(f.get("properties", {})) for f in first["anyOf"]] == [["b", "a"], ["a"]]


def test_lone_min_contains_is_ignored(tokenizer):
    check(tokenizer, {"maxContains": 1, "type": "array"}, valid=[[1, 2]], invalid=[{}])


def test_draft2019_items_array_and_additional_items(tokenizer):
    schema = {"$schema": "https://json-schema.org/draft/2019-09/schema",
              "items": [{"type": "integer"}, {"type": "string"}], "additionalItems": False}
    check(tokenizer, schema, valid=[[1, "a"], [1]], invalid=[[1, "a", 2], ["a"]])


# --------------------------------------------------------------------------- objects


def test_property_names_length(tokenizer):
    schema = {"type": "object", "propertyNames": {"maxLength": 2}, "properties": {"long": {}}}
    check(tokenizer, schema, valid=[{}, {"ab": 1}], invalid=[{"abc": 1}, {"long": 1}])


def test_property_names_enum(tokenizer):
    schema = {"type": "object", "propertyNames": {"enum": ["a", "b"]}, "additionalProperties": {"type": "integer"}}
    check(tokenizer, schema, valid=[{}, {"a": 1, "b": 2}], invalid=[{"c": 1}, {"a": "x"}])


def test_close_objects():
    assert normalize({"type": "object", "properties": {"a": {}}}, close_objects=True) == {
        "type": "object", "properties": {"a": {}}, "additionalProperties": False}


# --------------------------------------------------------------------------- dialects


def test_dialect_detection():
    assert dialect_of({"$schema": "http://json-schema.org/draft-04/schema#"}) == "draft4"
    assert dialect_of({"$schema": "http://json-schema.org/draft-07/schema"}) == "draft7"
    assert dialect_of({}) == "2020-12"


def test_draft4_boolean_exclusive_bounds(tokenizer):
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 1,
              "exclusiveMinimum": True, "maximum": 3, "exclusiveMaximum": False}
    check(tokenizer, schema, valid=[1.5, 3], invalid=[1, 4])


def test_draft4_ignores_later_keywords():
    assert upgrade({"const": 1, "type": "integer"}, "draft4") == {"type": "integer"}


def test_integral_float_counts(tokenizer):
    check(tokenizer, {"type": "string", "maxLength": 2.0}, valid=["ab"], invalid=["abc"])


# --------------------------------------------------------------------------- the suite, soundness


def test_suite_never_accepts_an_invalid_instance(tokenizer):
    """Structural categories of the JSON-Schema-Test-Suite: a compiled schema never admits an invalid instance."""
    records = read_jsonl_gz("json-schema-test-suite.jsonl.gz")
    wanted = ("/allOf", "/anyOf", "/oneOf", "/not", "/if-then-else", "/dependentRequired", "/dependentSchemas",
              "/dependencies", "/ref", "/defs", "/anchor", "/uniqueItems", "/contains", "/propertyNames",
              "/enum", "/const", "/items", "/prefixItems", "/additionalProperties", "/properties")
    checked = 0
    for record in records:
        if not record["category"].endswith(wanted) or not isinstance(record["schema"], dict):
            continue
        schema = record["schema"]
        if "$schema" not in schema:
            schema = {"$schema": "http://json-schema.org/draft-07/schema#" if record["category"].startswith(
                "draft7") else "https://json-schema.org/draft/2020-12/schema", **schema}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile_constraint({"type": "json", "value": schema}, tokenizer)
        except (UnsupportedSchemaError, InvalidSchemaError):
            continue
        for test in record["tests"]:
            if not test["valid"]:
                checked += 1
                assert not mask_accepts(tokenizer, schema, test["data"]), (record["name"], test["description"])
    assert checked > 150


# --------------------------------------------------------------------------- min/maxProperties


@pytest.mark.parametrize(
    ("schema", "valid", "invalid"),
    [
        # "at least one of": a branch per set of present optional properties
        ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "minProperties": 1},
         [{"a": 1}, {"b": 2}, {"a": 1, "b": 2}, {"x": "s"}, {"a": 1, "x": "s"}], [{}, {"a": "s"}]),
        # exactly one, closed
        ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
          "minProperties": 1, "maxProperties": 1, "additionalProperties": False},
         [{"a": 1}, {"b": 2}], [{}, {"a": 1, "b": 2}, {"x": 1}]),
        # a bound the declared names already meet is dropped
        ({"type": "object", "properties": {"op": {"type": "string"}, "expr": {"type": "string"}},
          "maxProperties": 2, "additionalProperties": False},
         [{}, {"op": "a"}, {"op": "a", "expr": "b"}], [{"x": 1}]),
        # required names count, additional ones too
        ({"type": "object", "properties": {"a": {"type": "integer"}, "c": {}}, "required": ["c"],
          "maxProperties": 2, "additionalProperties": {"type": "string"}},
         [{"c": 1}, {"a": 1, "c": 1}, {"c": 1, "x": "y"}], [{"a": 1, "c": 1, "x": "y"}, {"c": 1, "x": "y", "z": "w"}]),
    ],
)
def test_min_max_properties_next_to_optional_properties(tokenizer, schema, valid, invalid):
    check(tokenizer, schema, valid, invalid)


@pytest.mark.parametrize(
    ("text", "ok"),
    [('["a","b"]', True), ('["a","a"]', False), ('["a","\\u0061"]', False), ('["a\\/b","a/b"]', False),
     ('["é","\\u00e9"]', False), ('[1,2,1.0]', False), ('[{"x":[1]},{"x":[1.0]}]', False), ('["ab","abc"]', True)],
)
def test_unique_items_masks_see_through_escapes_and_spellings(tokenizer, text, ok):
    schema = {"type": "array", "uniqueItems": True}
    assert mask_walk(tokenizer, schema, text) is ok


def test_integer_multiple_of_a_fraction_is_a_multiple_of_its_numerator(tokenizer):
    # k * 3/2 is an integer exactly when k is even: the integers that are multiples of 1.5 are those of 3
    check(tokenizer, {"type": "integer", "multipleOf": 1.5}, valid=[0, 3, -9, 300], invalid=[1, 2, 4.5, 10])
    # 1e-8 divides every integer
    check(tokenizer, {"type": "integer", "multipleOf": 1e-08}, valid=[12391239123, 7], invalid=[0.5])


def test_a_fractional_step_takes_every_spelling_up_to_its_decimals(tokenizer):
    # The engine spells a multiple of 0.25 with exactly two decimals; 0.5 and 2.0 are multiples too.
    check(tokenizer, {"type": "number", "multipleOf": 0.25, "minimum": 0.25},
          valid=[0.5, 2.0, 2.5, 0.25, 7.75, 3], invalid=[0.3, 2.1, 0.0, -0.5, 2.05])
    check(tokenizer, {"type": "number", "multipleOf": 0.125}, valid=[0.5, 0.25, 0.375, 1.0, 4], invalid=[0.1, 0.2, 0.35])
    assert mask_walk(tokenizer, {"type": "number", "multipleOf": 0.25}, "2.50")


def test_bounds_with_no_integer_between_them_are_a_set_of_numbers(tokenizer):
    # No integer lies in [2.5, 2.6]: `number` there is the non-integer numbers, which the engine
    # spells (these were refused as unsatisfiable, or lost their numbers without a type).
    check(tokenizer, {"type": "number", "minimum": 2.5, "maximum": 2.6}, valid=[2.5, 2.55, 2.6], invalid=[2, 3, 2.7, "x"])
    check(tokenizer, {"minimum": 2.5, "maximum": 2.6}, valid=[2.55, "x", None], invalid=[2, 2.7])
    check(tokenizer, {"type": "number", "exclusiveMinimum": 2, "exclusiveMaximum": 3}, valid=[2.5], invalid=[2, 3])
    with pytest.raises(UnsatisfiableSchemaError):
        normalize({"type": "integer", "minimum": 2.5, "maximum": 2.6})


def test_a_whole_number_step_the_engine_cannot_build_in_time_is_refused():
    # llguidance's divisibility automaton for 10^8 does not finish: an error, never a hang
    assert unsupported({"type": "integer", "multipleOf": 123456789}).keyword == "multipleOf"
    assert unsupported({"type": "integer", "multipleOf": 0.123456789}).keyword == "multipleOf"
    assert normalize({"type": "integer", "multipleOf": 100000}) == {"type": "integer", "multipleOf": 100000}


def test_contains_and_unique_items_agree_with_the_reference_on_random_arrays(tokenizer):
    """Seeded random `contains`/`minContains`/`maxContains`/`uniqueItems` schemas and arrays: the
    mask accepts exactly what jsonschema accepts (or the schema is refused as unsatisfiable)."""
    rng = random.Random(7)
    values = [0, 1, 2, 1.5, "a", "b", "ab", {"x": 1}, {"x": 2}, [1], [], True, None]
    subschemas = [{"const": 1}, {"type": "string"}, {"minimum": 2}, {"pattern": "^a"},
                  {"type": "object", "required": ["x"]}, {"enum": [1, "a"]}, {"properties": {"x": {"const": 2}}}]
    checked = 0
    for _ in range(60):
        schema = {"type": "array", "contains": rng.choice(subschemas)}
        if rng.random() < 0.5:
            schema["minContains"] = rng.randint(0, 2)
        if rng.random() < 0.4:
            schema["maxContains"] = rng.randint(0, 2)
        if rng.random() < 0.3:
            schema["uniqueItems"] = True
        if rng.random() < 0.3:
            schema["items"] = rng.choice([{"type": "integer"}, {"type": ["integer", "string"]}, {"not": {"type": "null"}}])
        reference = jsonschema.Draft202012Validator(schema)
        arrays = [[rng.choice(values) for _ in range(rng.randint(0, 5))] for _ in range(10)]
        try:
            compile_constraint({"type": "json", "value": schema}, tokenizer)
        except UnsatisfiableSchemaError:
            assert not any(reference.is_valid(v) for v in arrays)
            continue
        for value in arrays:
            assert mask_accepts(tokenizer, schema, value) == reference.is_valid(value), (schema, value)
            checked += 1
    assert checked > 300


def test_a_pattern_every_name_matches_is_folded_into_the_others(tokenizer):
    # `a*` finds an (empty) match in every name: its schema applies to every property
    schema = {"patternProperties": {"a*": {"type": "integer"}, "aaa*": {"maximum": 20}}}
    check(tokenizer, schema, valid=[{"a": 1}, {"aa": 20}, {"b": 99}, {}],
          invalid=[{"a": "x"}, {"aaa": 21}, {"b": 1.5}, {"aa": "y"}])
    schema = {"properties": {"x": {"type": "string"}}, "additionalProperties": False,
              "patternProperties": {".*": {"type": ["string", "integer"]}, "^y": {"minLength": 2}}}
    check(tokenizer, schema, valid=[{"x": "s", "y1": "ab", "z": 3}, {"y": 5}],
          invalid=[{"x": 1}, {"y": "a"}, {"z": None}])
