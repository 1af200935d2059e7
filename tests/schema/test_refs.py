"""``$ref`` resolution: where identifiers live, and a walk that visits each subschema once."""

from __future__ import annotations

import pytest

from constrain.schema.dialects import DRAFT2020
from constrain.schema.refs import RefIndex
from tests.conftest import mask_walk

ID = "https://localhost:1234/draft2020-12/unknownKeyword/my_identifier.json"
# The JSON-Schema-Test-Suite's optional "unknownKeyword" group (draft 2020-12).
UNKNOWN_KEYWORD = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "id_in_unknown0": {"not": {"array_of_schemas": [{"$id": ID, "type": "null"}]}},
        "real_id_in_schema": {"$id": ID, "type": "string"},
        "id_in_unknown1": {"not": {"object_of_schemas": {"foo": {"$id": ID, "type": "integer"}}}},
    },
    "anyOf": [{"$ref": "#/$defs/id_in_unknown0"}, {"$ref": "#/$defs/id_in_unknown1"}, {"$ref": ID}],
}


def test_an_id_inside_an_unknown_keyword_is_not_an_identifier():
    index = RefIndex(UNKNOWN_KEYWORD, DRAFT2020)
    assert index.resolve(ID, index.root_base, "/anyOf/2").node == {"$id": ID, "type": "string"}


@pytest.mark.model
@pytest.mark.parametrize(("text", "valid"), [('"a string"', True), ("null", False), ("1", False)])
def test_unknown_keyword_group_masks(tokenizer, text, valid):
    assert mask_walk(tokenizer, UNKNOWN_KEYWORD, text) is valid


def test_the_walk_visits_each_subschema_once(monkeypatch):
    schema: dict = {"type": "string"}
    for _ in range(200):  # visiting each `properties` map twice made this 2^200 visits
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"],
                  "x-note": {"properties": {"b": {"$id": "https://x.invalid/not-an-id"}}}}
    visits = []
    original = RefIndex._walk

    def counting(self, node, base, pointer):
        visits.append(pointer)
        return original(self, node, base, pointer)

    monkeypatch.setattr(RefIndex, "_walk", counting)
    index = RefIndex(schema, DRAFT2020)
    assert len(visits) == 201 and len(set(visits)) == 201
    assert "https://x.invalid/not-an-id" not in index.resources


def test_a_ref_under_an_unknown_keyword_gets_the_meta_schema_check():
    """A `$ref` may name a node the meta-schema check never saw (under a keyword that is not a
    schema keyword): that node is checked when the reference is followed, in the document's
    dialect, and a bad value there is the usual 400 naming its place (found by the mutated
    MaskBench fuzzer: `minLength: null` gave a 500)."""
    from constrain.errors import InvalidSchemaError
    from constrain.schema import normalize

    schema = {"$schema": "http://json-schema.org/draft-04/schema#",
              "resourceDefinitions": {"partner": {"type": "object", "required": ["name"],
                                                  "properties": {"name": {"type": "string", "minLength": None}}}},
              "properties": {"p": {"$ref": "#/resourceDefinitions/partner"}}, "required": ["p"]}
    with pytest.raises(InvalidSchemaError) as caught:
        normalize(schema, param="response_format.value")
    assert caught.value.param == "response_format.value.resourceDefinitions.partner.properties.name.minLength"
    schema["resourceDefinitions"]["partner"]["properties"]["name"]["minLength"] = 2
    assert normalize(schema)["properties"]["p"]["properties"]["name"] == {"type": "string", "minLength": 2}
    # draft-04's boolean exclusiveMinimum there is read in draft-04, not refused as 2020-12 would
    schema["resourceDefinitions"]["partner"]["properties"]["n"] = {"minimum": 1, "exclusiveMinimum": True}
    normalize(schema)
