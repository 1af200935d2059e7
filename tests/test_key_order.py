"""benchmarks/key_order.py: the serialisation the MaskBench figures use (keys in the order the
schema document declares them) is what constrain generates, and it is engine-neutral."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from constrain import compile_constraint

_SPEC = importlib.util.spec_from_file_location(
    "key_order", Path(__file__).resolve().parents[1] / "benchmarks" / "key_order.py")
key_order = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(key_order)


def _accepts(tokenizer, schema, value) -> bool:
    matcher = compile_constraint({"type": "json", "value": schema}, tokenizer).matcher()
    for token in tokenizer.encode(json.dumps(value, separators=(",", ":")), add_special_tokens=False):
        if not matcher.consume(token):
            return False
    return matcher.is_accepting()


CASES = [
    # plain properties; undeclared keys keep their place after the declared ones
    ({"properties": {"b": {}, "a": {}}}, {"z": 1, "a": 2, "b": 3}, ["b", "a", "z"]),
    # an allOf written before `properties` declares its names first, and after it, after
    ({"allOf": [{"properties": {"x": {}}}], "properties": {"y": {}}}, {"y": 1, "x": 2}, ["x", "y"]),
    ({"properties": {"y": {}}, "allOf": [{"properties": {"x": {}}}]}, {"x": 2, "y": 1}, ["y", "x"]),
    # names only `required` or a dependency mentions: in document order, the trigger first
    ({"dependentRequired": {"bar": ["foo"]}}, {"foo": 1, "bar": 2}, ["bar", "foo"]),
    ({"required": ["q", "p"]}, {"p": 1, "q": 2}, ["q", "p"]),
    # an object equal to a const is written as the const is
    ({"const": {"foo": 1, "baz": 2}}, {"baz": 2, "foo": 1}, ["foo", "baz"]),
]


@pytest.mark.parametrize(("schema", "instance", "keys"), CASES)
def test_declared_order_and_what_constrain_generates_agree(tokenizer, schema, instance, keys):
    ordered = key_order.declared_order(schema, instance)
    assert list(ordered) == keys and ordered == instance
    assert _accepts(tokenizer, schema, ordered)


def test_values_are_reordered_recursively():
    schema = {"type": "array", "items": {"properties": {"b": {}, "a": {}}}}
    assert [list(o) for o in key_order.declared_order(schema, [{"a": 1, "b": 2}, {"a": 3}])] == [["b", "a"], ["a"]]
