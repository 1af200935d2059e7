"""The meta-schema check: our single-document 2020-12 meta-schema agrees with jsonschema's own."""

from __future__ import annotations

import jsonschema
import pytest

from constrain.errors import InvalidSchemaError
from constrain.schema import check_schema
from constrain.schema.check import _format_checker, _meta_validator, _validator_class
from tests.conftest import read_jsonl_gz


def _verdicts(schemas):
    for schema in schemas:
        cls = _validator_class(schema)
        ours = jsonschema.exceptions.best_match(_meta_validator(cls).iter_errors(schema)) is None
        try:
            cls.check_schema(schema, format_checker=_format_checker(cls))
            theirs = True
        except jsonschema.SchemaError:
            theirs = False
        yield schema, ours, theirs


def test_flat_meta_schema_agrees_with_jsonschema_on_real_schemas():
    rows = read_jsonl_gz("json-schema-test-suite.jsonl.gz") + read_jsonl_gz("maskbench.jsonl.gz")[:1500]
    broken = [{"type": "objekt"}, {"$id": "#frag"}, {"items": [{"minItems": -1}], "$schema": "http://json-schema.org/draft-07/schema#"},
              {"properties": {"a": {"dependencies": {"b": 3}}}}, {"$defs": {"x": {"enum": 1}}}]
    schemas = broken + [r["schema"] for r in rows if isinstance(r["schema"], dict)]
    verdicts = list(_verdicts(schemas))
    disagreements = [s for s, ours, theirs in verdicts if ours != theirs]
    assert not disagreements, disagreements[:3]
    assert [ours for _, ours, _ in verdicts[: len(broken)]] == [False] * len(broken)


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "objekt"}, "schema.type"),
        ({"properties": {"a": {"minLength": -1}}}, "schema.properties.a.minLength"),
        ({"$id": "#frag"}, "schema.$id"),
        ({"required": "name"}, "schema.required"),
    ],
)
def test_meta_schema_errors_name_the_place(schema, where):
    with pytest.raises(InvalidSchemaError) as info:
        check_schema(schema)
    assert info.value.param == where
