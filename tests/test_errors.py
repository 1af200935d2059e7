"""Where an error is: a request field and a place inside its schema, rendered into ``param`` once."""

from __future__ import annotations

import pickle

import pytest

from constrain.errors import (
    ConstrainError,
    InvalidRequestError,
    InvalidSchemaError,
    SchemaLimitError,
    UnsupportedSchemaError,
    render_param,
)
from constrain.schema import normalize
from constrain.schema.check import check_schema


def test_param_renders_field_and_pointer():
    assert render_param(None, "/a") is None
    assert render_param("response_format.value") == "response_format.value"
    assert render_param("response_format.value", "/properties/a~1b/minimum") == \
        "response_format.value.properties.a~1b.minimum"
    error = InvalidSchemaError("bad", param="response_format.value", at="/properties/age")
    assert error.param == "response_format.value.properties.age"
    assert error.to_dict()["error"]["param"] == "response_format.value.properties.age"


def test_a_named_field_is_kept_by_outer_layers():
    error = InvalidRequestError("bad", param="tool_choice")
    assert error.locate("response_format").param == "tool_choice"
    unnamed = ConstrainError("bad")
    assert unnamed.param is None
    assert unnamed.locate("response_format", "/x").param == "response_format.x"
    assert unnamed.locate("tools").param == "response_format.x"


def test_the_normaliser_locates_its_errors_in_the_field_it_checked():
    with pytest.raises(UnsupportedSchemaError) as caught:
        normalize({"properties": {"x": {"$dynamicRef": "#a"}}}, param="response_format.value")
    error = caught.value
    assert (error.field, error.at) == ("response_format.value", error.pointer)
    assert error.param == "response_format.value" + error.pointer.replace("/", ".")


def test_a_schema_checked_apart_keeps_its_pointer():
    with pytest.raises(InvalidSchemaError) as caught:
        check_schema({"type": "objec"}, param="response_format.value", at="/$defs/a")
    error = caught.value
    assert (error.field, error.at) == ("response_format.value", "/$defs/a/type")
    assert error.param == "response_format.value.$defs.a.type"
    assert "`response_format.value.$defs.a`" in error.message
    with pytest.raises(SchemaLimitError) as limit:
        check_schema({"enum": [2**70]}, param="schema", at="/p")
    assert limit.value.param == "schema.p.enum.0" and "`schema.p`" in limit.value.message


def test_reroot_moves_the_field_and_keeps_the_place():
    error = InvalidSchemaError("`response_format.value` has a bad `type`", param="response_format.value",
                               at="/properties/x/type")
    error.reroot("tools.1.function.parameters", was="response_format.value")
    assert error.param == "tools.1.function.parameters.properties.x.type"
    assert error.message == "`tools.1.function.parameters` has a bad `type`" == str(error)
    refused = ConstrainError("the engine refused it").locate("response_format")
    assert refused.reroot("tools.0.function.parameters", was="response_format.value").param == \
        "tools.0.function.parameters"


def test_an_error_keeps_its_place_through_pickling():
    """Ray carries errors between processes by pickling them."""
    error = pickle.loads(pickle.dumps(InvalidSchemaError("bad", param="response_format.value", at="/type")))
    assert (error.field, error.at, error.param) == ("response_format.value", "/type", "response_format.value.type")


def test_every_error_survives_pickling_with_its_location():
    import pickle

    from constrain.errors import CompileTimeoutError, SchemaLimitError

    for error in (CompileTimeoutError("too slow", seconds=2.0), SchemaLimitError("too deep", limit="depth")):
        error.locate("response_format", "/properties/a")
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and back.param == "response_format.properties.a"
        assert back.message == error.message and back.code == error.code and str(back) == str(error)
