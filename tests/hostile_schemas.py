"""Schemas built to stall or crash a compiler: each must compile in time or get a clear 4xx."""

from __future__ import annotations

import json
from typing import Any


def nested(depth: int, kind: str) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        node = {"type": "array", "items": node} if kind == "array" else \
            {"type": "object", "properties": {"a": node}, "required": ["a"]}
    return node


def _ref_chain(length: int) -> dict[str, Any]:
    defs: dict[str, Any] = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(length)}
    defs[f"d{length}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


def _ref_tree(depth: int) -> dict[str, Any]:
    defs: dict[str, Any] = {
        f"d{i}": {"type": "object", "properties": {"l": {"$ref": f"#/$defs/d{i + 1}"},
                                                   "r": {"$ref": f"#/$defs/d{i + 1}"}}}
        for i in range(depth)
    }
    defs[f"d{depth}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


HOSTILE: dict[str, Any] = {
    "objects nested 1000 deep": nested(1000, "object"),
    "arrays nested 1000 deep": nested(1000, "array"),
    "objects nested 40 deep": nested(40, "object"),
    "10000 properties": {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(10_000)}},
    "100000-value enum": {"enum": [f"value-{i}" for i in range(100_000)]},
    "1000-branch anyOf": {"anyOf": [{"type": "object", "properties": {f"k{i}": {"const": i}}, "required": [f"k{i}"]}
                                    for i in range(1000)]},
    "1000-branch oneOf": {"oneOf": [{"const": f"v{i}"} for i in range(1000)]},
    "500 patternProperties": {"type": "object",
                              "patternProperties": {f"^p{i}[a-z]+$": {"type": "integer"} for i in range(500)}},
    "catastrophic pattern": {"type": "string", "pattern": "^(a+)+$"},
    "nested quantifiers": {"type": "string", "pattern": "^((a|aa)*b(x|y|z){1,50}(a*)*)+$"},
    "huge repetition": {"type": "string", "pattern": "^a{1000000}$"},
    "repetition of repetition": {"type": "string", "pattern": "^(ab{1,1000}){1,1000}$"},
    "$ref cycle": {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    "$ref to the root": {"type": "object", "properties": {"self": {"$ref": "#"}}},
    "$ref chain of 2000": _ref_chain(2000),
    "$ref tree 2^40": _ref_tree(40),
    "integers beyond 64 bits": {"type": "integer", "minimum": -(10**30), "maximum": 10**30},
    "const beyond 64 bits": {"const": 2**64},
    "minLength 10^9": {"type": "string", "minLength": 10**9},
    "maxLength 10^9": {"type": "string", "maxLength": 10**9},
    "minItems 10^9": {"type": "array", "items": {"type": "integer"}, "minItems": 10**9},
    "deep uniqueItems": {"type": "array", "uniqueItems": True, "items": nested(30, "array")},
    "uniqueItems in uniqueItems": {"type": "array", "uniqueItems": True, "minItems": 50, "items": {
        "type": "array", "uniqueItems": True, "items": {"type": "array", "uniqueItems": True,
                                                        "items": {"type": "integer"}}}},
    "tiny multipleOf": {"type": "number", "multipleOf": 1e-300},
    "full 64-bit range with multipleOf": {"type": "integer", "minimum": -(2**63 - 1), "maximum": 2**63 - 1,
                                           "multipleOf": 7},
    "extreme number bounds": {"type": "number", "minimum": 1e-300, "maximum": 1e300},
    "not nested 60 deep": json.loads('{"not":' * 60 + "{}" + "}" * 60),
    "200 dependentRequired": {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(200)},
                              "dependentRequired": {f"p{i}": [f"p{i + 1}"] for i in range(199)}},
    "allOf of 500": {"allOf": [{"type": "object", "properties": {f"k{i}": {"type": "integer"}}} for i in range(500)]},
}
