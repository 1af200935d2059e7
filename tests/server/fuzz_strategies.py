"""Hypothesis strategies for whole chat-completion requests, valid and not, and for raw bodies."""

from __future__ import annotations

import functools
import json
import math
from typing import Any

from hypothesis import strategies as st

from tests.hostile_schemas import HOSTILE

# Values of every JSON type, the awkward ones included: huge and negative numbers, NUL,
# lone surrogates (sent escaped), long strings, nesting.
_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["", "\x00", "\u0000x", "a" * 5000, "{", "\"", "\\", "\u202e", "\U0001F600"])
_numbers = st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.sampled_from([0, -1, 1, 2**63, -(2**63) - 1, 1e308, 5e-324, 0.5])
_scalars = st.none() | st.booleans() | _numbers | _text
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(_text, inner, max_size=4), max_leaves=12)


def _maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a valid value, sometimes any JSON value at all."""
    return st.one_of(valid, valid, valid, _json)


# JSON Schemas: built from real keywords with random values, plus the hostile corpus.
_KEYWORDS = ["type", "properties", "required", "items", "prefixItems", "enum", "const", "anyOf", "oneOf",
             "allOf", "not", "minimum", "maximum", "exclusiveMinimum", "multipleOf", "minLength", "maxLength",
             "pattern", "format", "minItems", "maxItems", "uniqueItems", "additionalProperties",
             "patternProperties", "$ref", "$defs", "if", "then", "else", "contains", "minProperties",
             "dependentRequired", "propertyNames", "$id", "$anchor"]
_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "object", "array", "null", "nothing"])
_PATTERNS = st.sampled_from(["^[a-z]+$", "(a+)+$", "[", "\\d{3}-\\d{4}", "(?=a)b", ".*", "a{99999}", "\\p{L}+"])
_FORMATS = st.sampled_from(["email", "date", "date-time", "uri", "uuid", "ipv4", "nope", "regex"])


def _keyword_value(name: str, schema: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    if name == "type":
        return _TYPES | st.lists(_TYPES, max_size=3)
    if name in ("properties", "patternProperties", "$defs"):
        keys = _PATTERNS if name == "patternProperties" else _text
        return st.dictionaries(keys, schema, max_size=4)
    if name in ("items", "not", "if", "then", "else", "contains", "additionalProperties", "propertyNames"):
        return schema | st.booleans()
    if name in ("anyOf", "oneOf", "allOf", "prefixItems"):
        return st.lists(schema, min_size=0, max_size=4)
    if name in ("enum",):
        return st.lists(_json, max_size=5)
    if name == "required":
        return st.lists(_text, max_size=4)
    if name == "pattern":
        return _PATTERNS
    if name == "format":
        return _FORMATS
    if name == "$ref":
        return st.sampled_from(["#", "#/$defs/a", "#/nowhere", "http://example.com/x.json", "#anchor", "a b"])
    if name == "uniqueItems":
        return st.booleans()
    return _numbers | _scalars


def _schema_node(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(st.sampled_from(_KEYWORDS), max_size=4, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: _keyword_value(name, inner) for name in names}))


# The corpus's schemas nested 1,000 deep are left to tests/test_hostile.py: Python's own JSON
# encoder (and Hypothesis's reporting) cannot write them at the default recursion limit.
_SHALLOW = sorted(name for name in HOSTILE if "1000 deep" not in name)
schemas = st.one_of(
    st.recursive(st.booleans() | st.just({}) | st.builds(dict, type=_TYPES), _schema_node, max_leaves=8),
    st.sampled_from(_SHALLOW).map(HOSTILE.__getitem__),
)

_response_formats = st.none() | st.one_of(
    st.fixed_dictionaries({"type": st.just("json"), "value": schemas}),
    st.fixed_dictionaries({"type": st.just("json_object")}),
    st.fixed_dictionaries({"type": st.just("json_schema"),
                           "json_schema": st.fixed_dictionaries({"name": _text, "schema": schemas})}),
    st.fixed_dictionaries({"type": st.just("regex"), "value": _PATTERNS | _text}),
    st.fixed_dictionaries({"type": _text, "value": _json}),
    _json,
)

_parts = st.lists(st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
    st.fixed_dictionaries({"type": st.just("image_url"),
                           "image_url": st.fixed_dictionaries({"url": st.sampled_from(
                               ["file:///etc/passwd", "http://127.0.0.1:1/x.png", "data:image/png;base64,AAAA",
                                "not a url"])})}),
    _json), max_size=3)
_messages = st.lists(st.fixed_dictionaries(
    {"role": _maybe(st.sampled_from(["system", "user", "assistant", "tool"])), "content": _maybe(_text | _parts)}),
    min_size=0, max_size=3)

_tools = st.lists(st.fixed_dictionaries({
    "type": _maybe(st.just("function")),
    "function": _maybe(st.fixed_dictionaries({
        "name": _maybe(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)),
        "description": _maybe(_text),
        "parameters": _maybe(schemas)})),
}), max_size=3)
_tool_choice = st.sampled_from(["auto", "none", "required"]) | st.fixed_dictionaries(
    {"type": st.just("function"), "function": st.fixed_dictionaries({"name": _text})}) | _json

_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "response_format": _response_formats,
    "tools": _maybe(_tools),
    "tool_choice": _tool_choice,
    "tool_prompt": _maybe(_text),
    "max_tokens": _maybe(st.integers(min_value=-2, max_value=12)),
    "temperature": _maybe(st.floats(min_value=-1, max_value=3, allow_nan=False)),
    "top_p": _maybe(st.floats(min_value=-0.5, max_value=1.5, allow_nan=False)),
    "seed": _maybe(st.integers(min_value=-(2**70), max_value=2**70)),
    "stop": _maybe(st.lists(_text, max_size=5) | _text),
    "logprobs": _maybe(st.booleans()),
    "top_logprobs": _maybe(st.integers(min_value=-1, max_value=30)),
    "frequency_penalty": _maybe(st.floats(min_value=-3, max_value=3, allow_nan=False)),
    "presence_penalty": _maybe(st.floats(min_value=-3, max_value=3, allow_nan=False)),
    "stream": _maybe(st.booleans()),
    "stream_options": _json,
    "n": _maybe(st.integers(min_value=-1, max_value=3)),
    "model": _maybe(_text),
    "unknown_field": _json,
}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request body: messages and any subset of the other fields, each valid or not."""
    body: dict[str, Any] = {"messages": draw(_maybe(_messages))}
    for name in draw(st.lists(st.sampled_from(sorted(_OPTIONAL)), max_size=5, unique=True)):
        body[name] = draw(_OPTIONAL[name])
    if draw(st.booleans()):
        body["max_tokens"] = draw(st.integers(min_value=1, max_value=8))  # most bodies generate little
    return body


def _encode(body: Any) -> bytes:
    return json.dumps(body).encode("utf-8")


malformed_bodies = lambda: st.one_of(  # noqa: E731 - a strategy factory, like requests()
    st.binary(max_size=200),
    requests().map(_encode).flatmap(lambda raw: st.integers(0, max(len(raw) - 1, 0)).map(lambda cut: raw[:cut])),
    requests().map(_encode).map(lambda raw: raw.replace(b'"', b"'", 1)),
    st.sampled_from([
        b"", b"null", b"[]", b"123", b'"text"', b"{", b"{}",
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',  # invalid UTF-8
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',  # a lone surrogate, escaped
        b'{"messages": [{"role": "user", "content": "a\\u0000b"}], "max_tokens": 2}',  # NUL
        b'{"messages": [], "max_tokens": NaN}', b'{"messages": [], "temperature": Infinity}',
        b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + b"0" * 400 + b"}",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,  # nested past the JSON reader's recursion limit
        b"[" * 100_000,
        b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json", "value": '
        + b'{"items":' * 3000 + b"{}" + b"}" * 3000 + b"}}",
    ]),
)


# Real schemas from MaskBench, mutated: keywords swapped between places, values enlarged,
# nesting added. Read once per process, from the shared data (skipped where it is absent).
@functools.cache
def maskbench_schemas() -> list[Any]:
    from tests.conftest import read_jsonl_gz

    return [row["schema"] for row in read_jsonl_gz("maskbench.jsonl.gz")]


def _places(schema: Any) -> list[dict[str, Any]]:
    """Every JSON object inside ``schema`` (schemas and maps of them alike), outermost first."""
    found, stack = [], [schema]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            found.append(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


def _enlarge(value: Any, factor: int) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        grown = value * factor if value else factor
        return grown if math.isfinite(grown) else 1e308  # JSON has no infinity: the largest double
    if isinstance(value, str):
        return value * min(factor, 200)
    if isinstance(value, list):
        return (value * min(factor, 50))[:5000]
    return value


@st.composite
def mutated_maskbench(draw: st.DrawFn) -> Any:
    """A MaskBench schema with a few random mutations applied (a deep copy: the data stays intact)."""
    pool = maskbench_schemas()
    schema = json.loads(json.dumps(pool[draw(st.integers(0, len(pool) - 1))]))
    for _ in range(draw(st.integers(1, 4))):
        places = _places(schema)
        place = places[draw(st.integers(0, len(places) - 1))] if places else None
        how = draw(st.sampled_from(["swap", "enlarge", "nest", "replace", "drop", "graft"]))
        if how == "nest":
            wrap = draw(st.sampled_from(["object", "array", "anyOf", "allOf", "ref"]))
            depth = draw(st.integers(1, 40))
            for _ in range(depth):
                if wrap == "object":
                    schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
                elif wrap == "array":
                    schema = {"type": "array", "items": schema, "minItems": 1}
                elif wrap == "ref":
                    schema = {"$defs": {"inner": schema}, "$ref": "#/$defs/inner"}
                else:
                    schema = {wrap: [schema, {"type": "null"}]}
            continue
        if not place:
            continue
        keys = sorted(place)
        key = keys[draw(st.integers(0, len(keys) - 1))]
        if how == "swap" and len(keys) > 1:
            other = keys[draw(st.integers(0, len(keys) - 1))]
            place[key], place[other] = place[other], place[key]
        elif how == "enlarge":
            place[key] = _enlarge(place[key], draw(st.sampled_from([2, 10, 1000, 10**9, -1, 10**20])))
        elif how == "replace":
            place[key] = draw(_json)
        elif how == "drop":
            del place[key]
        elif how == "graft":  # a keyword from elsewhere in the same schema, or a random one
            name = draw(st.sampled_from(_KEYWORDS))
            place[name] = draw(_keyword_value(name, st.just({})))
    return schema
