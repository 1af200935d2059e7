"""assert_valid / violations: every violation, with pointer, keyword, value and schema fragment."""

from __future__ import annotations

import pytest
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, Field

from constrain.testing import SchemaAssertionError, assert_valid, violations

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "kind": {"anyOf": [{"type": "integer"}, {"enum": ["a", "b"]}]},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def test_valid_instance_passes():
    assert_valid({"name": "Ann", "tags": ["x"], "kind": "a"}, SCHEMA)
    assert violations({"name": "Ann"}, SCHEMA) == []


def test_every_violation_is_reported_with_its_pointer_and_keyword():
    found = violations({"tags": ["x", "x", 3], "extra": 1}, SCHEMA)
    pairs = {(v.pointer, v.keyword) for v in found}
    assert {("", "required"), ("", "additionalProperties"), ("/tags", "uniqueItems"), ("/tags/2", "type")} <= pairs
    item = next(v for v in found if v.pointer == "/tags/2")
    assert item.value == 3
    assert item.schema == {"type": "string"}
    assert item.schema_pointer == "#/properties/tags/items"


def test_message_lists_all_violations():
    with pytest.raises(SchemaAssertionError) as info:
        assert_valid({"name": "Annabelle", "tags": [1]}, SCHEMA, message="bad person")
    text = str(info.value)
    assert text.startswith("bad person\n")
    assert "(2 violations)" in text
    assert "at /name: maxLength" in text and "at /tags/0: type" in text
    assert '#/properties/name = {"type": "string", "maxLength": 5}' in text
    assert isinstance(info.value, AssertionError) and len(info.value.violations) == 2


def test_branch_errors_are_listed_under_any_of():
    found = violations({"name": "A", "kind": "c"}, SCHEMA)
    keywords = [v.keyword for v in found]
    assert "anyOf" in keywords and "type" in keywords and "enum" in keywords


def test_pydantic_model_class_and_instance():
    class Capital(BaseModel):
        city: str = Field(max_length=5)

    assert_valid(Capital(city="Paris"), Capital)
    with pytest.raises(SchemaAssertionError, match="at /city: maxLength"):
        assert_valid({"city": "Amsterdam"}, Capital)


def test_schema_as_json_text_and_dialect():
    draft4 = '{"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 3, "exclusiveMaximum": true}'
    assert_valid(2, draft4)
    with pytest.raises(SchemaAssertionError, match="maximum"):
        assert_valid(3, draft4)


def test_formats_are_checked():
    with pytest.raises(SchemaAssertionError, match="format"):
        assert_valid("2024-02-30x", {"type": "string", "format": "date"})


def test_invalid_schema_raises_schema_error():
    with pytest.raises(SchemaError):
        assert_valid(1, {"type": "no-such-type"})


def test_pytest_reports_the_message(pytester):
    pytester.makepyfile(
        """
        from constrain.testing import assert_valid

        def test_person():
            assert_valid({"age": -1}, {"properties": {"age": {"minimum": 0}}, "required": ["name"]})
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*SchemaAssertionError: instance does not match the schema (2 violations)*",
                                 "*at /: required: 'name' is a required property*",
                                 "*at /age: minimum: -1 is less than the minimum of 0*"])
