"""Hostile schemas end in a clear error naming the limit and where it was hit, never a crash."""

from __future__ import annotations

import pytest

from constrain import compile_constraint
from constrain.errors import SchemaLimitError
from constrain.schema.limits import MAX_DEPTH, MAX_ENUM, check_limits


def _nested(depth: int, kind: str) -> dict:
    node: dict = {"type": "string"}
    for _ in range(depth):
        node = {"type": "array", "items": node} if kind == "array" else \
            {"type": "object", "properties": {"a": node}, "required": ["a"]}
    return node


@pytest.mark.parametrize(
    ("schema", "limit", "param"),
    [
        (_nested(1000, "object"), "depth", "response_format.value" + ".properties.a" * (MAX_DEPTH // 2)),
        (_nested(1000, "array"), "depth", "response_format.value" + ".items" * MAX_DEPTH),
        ({"enum": [f"v{i}" for i in range(100_000)]}, "enum", "response_format.value.enum"),
        ({"type": "integer", "minimum": -(10**30), "maximum": 10**30}, "integer", None),
        ({"type": "number", "maximum": float("nan")}, "number", "response_format.value.maximum"),
        ({"const": 2**64}, "integer", "response_format.value.const"),
    ],
)
def test_hostile_schemas_get_a_limit_error(tokenizer, schema, limit, param):
    with pytest.raises(SchemaLimitError) as info:
        compile_constraint({"type": "json", "value": schema}, tokenizer)
    assert info.value.limit == limit and info.value.status_code == 400
    assert info.value.param.startswith("response_format.value")
    if param is not None:
        assert info.value.param == param


def test_limits_are_where_a_real_schema_is_not():
    check_limits(_nested(MAX_DEPTH // 2 - 1, "object"), param="schema")
    check_limits({"enum": list(range(MAX_ENUM))}, param="schema")
    check_limits({"type": "integer", "maximum": 2**64 - 1, "minimum": -(2**63)}, param="schema")


def test_a_deep_schema_as_json_text_is_an_error_too(tokenizer):
    text = '{"not":' * 5000 + "{}" + "}" * 5000
    with pytest.raises(SchemaLimitError):
        compile_constraint({"type": "json", "value": text}, tokenizer)
