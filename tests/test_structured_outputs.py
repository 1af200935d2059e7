"""Structured outputs end to end on the embedded model: real schemas, regexes, grammars."""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict

import jsonschema
import pytest
from pydantic import BaseModel, Field

from constrain.errors import GenerationError, UnsupportedSchemaError
from constrain.schema.refs import find_keyword
from tests.conftest import read_jsonl_gz

# Keywords (or keyword forms) that no exact rewrite covers; a compile error must name one.
ENFORCEABLE_ELSEWHERE = {"type", "properties", "required", "items", "enum", "const"}


def split_of(name: str) -> str:
    if "---" in name:
        return name.split("---")[0]
    return re.sub(r"_\d+$", "", name)


def sample_schemas(count: int, seed: int = 20261124) -> list[dict]:
    rows = read_jsonl_gz("maskbench.jsonl.gz")
    by_split: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_split[split_of(row["name"])].append(row)
    rng = random.Random(seed)
    picked: list[dict] = []
    splits = sorted(by_split)
    # Every split at least once, then round-robin until `count`.
    while len(picked) < count:
        for split in splits:
            if len(picked) < count and by_split[split]:
                picked.append(by_split[split].pop(rng.randrange(len(by_split[split]))))
    return picked


MASKBENCH = sample_schemas(50)


def prompt_for(schema: dict) -> str:
    return (
        "Reply with one JSON value that matches this JSON Schema, nothing else.\n"
        + json.dumps(schema)[:1500]
    )


@pytest.mark.parametrize("row", MASKBENCH, ids=[r["name"] for r in MASKBENCH])
def test_maskbench_schema_outputs_validate(model, row):
    schema = row["schema"]
    try:
        out = model.chat_completion(
            [{"role": "user", "content": prompt_for(schema)}],
            response_format={"type": "json", "value": schema},
            max_tokens=96,
            temperature=0,
        )
    except UnsupportedSchemaError as exc:
        assert exc.keyword, f"compile error names no keyword: {exc.message}"
        assert exc.keyword not in ENFORCEABLE_ELSEWHERE, exc.message
        assert find_keyword(schema, exc.keyword) is not None, f"{exc.keyword} is not in the schema"
        return
    except GenerationError as exc:
        # A keyword with no grammar form is checked when its value ends: greedy decoding may write
        # a value no valid ending exists for. A clear error naming the keyword, never invalid output.
        assert "checked when the value ends" in exc.message, exc.message
        return
    choice = out.choices[0]
    assert choice.finish_reason in ("stop", "length")
    if choice.finish_reason == "stop":
        jsonschema.validate(json.loads(choice.message.content), schema)


REGEXES = [
    r"\d{4}-\d{2}-\d{2}",
    r"(19|20)\d{2}/(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])",
    r"[a-z]{3,10}@[a-z]{3,8}\.(com|org|net)",
    r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9-]{1,15}\.[a-z]{2,4}",
    r"\+1 \(\d{3}\) \d{3}-\d{4}",
    r"\d{3}-\d{3}-\d{4}",
    r"[a-z_][a-z0-9_]{0,15}",
    r"[A-Z][a-zA-Z]{2,12}",
    r"(yes|no|maybe)",
    r"(red|green|blue|yellow)( and (red|green|blue|yellow))?",
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun)day?",
    r"\d{1,3}(\.\d{1,3}){3}",
    r"#[0-9a-fA-F]{6}",
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    r"v\d{1,2}\.\d{1,2}\.\d{1,3}",
    r"\$\d{1,5}\.\d{2}",
    r"(true|false)",
    r"[A-Z]{2}\d{2} ?\d{4}",
    r"\w{2,8} \w{2,8}",
    r"(The answer is )?-?\d{1,6}",
]


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_outputs_fullmatch(model, pattern):
    out = model.chat_completion(
        [{"role": "user", "content": f"Give an example matching {pattern}"}],
        response_format={"type": "regex", "value": pattern},
        max_tokens=64,
        temperature=0.7,
        seed=7,
    )
    choice = out.choices[0]
    assert choice.finish_reason == "stop"
    assert re.fullmatch(pattern, choice.message.content), choice.message.content


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int = Field(ge=0, le=120)


def test_pydantic_model_as_response_format(model):
    out = model.chat_completion(
        [{"role": "user", "content": "A person as JSON."}], response_format=Person, temperature=0, max_tokens=60
    )
    assert out.choices[0].finish_reason == "stop"
    person = Person.model_validate_json(out.choices[0].message.content)
    assert 0 <= person.age <= 120


def test_shipped_grammar_constrains_output(model):
    from constrain.compiler import load_grammar

    out = model.chat_completion(
        [{"role": "user", "content": "Write an arithmetic expression."}],
        response_format={"type": "grammar", "value": load_grammar("arithmetic")},
        temperature=0,
        max_tokens=40,
    )
    text = out.choices[0].message.content
    if out.choices[0].finish_reason == "stop":
        assert re.fullmatch(r"[-0-9+*/() ]+", text), text


STORY = {"type": "object", "properties": {"story": {"type": "string"}, "stars": {"type": "integer"}},
         "required": ["story", "stars"], "additionalProperties": False}


def _story(model, max_tokens, **fields):
    return model.chat_completion(
        [{"role": "user", "content": "Tell a long story in JSON."}],
        response_format={"type": "json", "value": STORY}, max_tokens=max_tokens, temperature=0, **fields,
    )


def test_max_tokens_closes_the_json_it_would_cut(model):
    """Near the budget the closer ends the string and the object: "length", yet valid JSON."""
    out = _story(model, 24)
    choice = out.choices[0]
    assert choice.finish_reason == "length" and out.usage.completion_tokens <= 24
    value = json.loads(choice.message.content)
    jsonschema.validate(value, STORY)
    assert value["story"]  # the model wrote some of its story before closing
    chunks = list(_story(model, 24, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_max_tokens_too_small_to_close_gives_partial_text(model):
    out = _story(model, 3)
    choice = out.choices[0]
    assert choice.finish_reason == "length" and out.usage.completion_tokens == 3
    assert choice.message.content.startswith('{"')
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice.message.content)


def test_unique_items_of_strings_in_generation(model):
    """The model wants to repeat itself; the matcher keeps the items distinct (engines/rules_matcher.py)."""
    schema = {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 4, "maxItems": 4,
              "uniqueItems": True}
    messages = [{"role": "user", "content": "Repeat the word cat four times as a JSON list."}]
    out = model.chat_completion(messages, response_format={"type": "json", "value": schema}, max_tokens=60,
                                temperature=0)
    value = json.loads(out.choices[0].message.content)
    assert out.choices[0].finish_reason == "stop" and len(value) == len(set(value)) == 4
    jsonschema.validate(value, schema)


def test_contains_in_generation(model):
    """The model counts on past 9: the matcher keeps the array open until 7 has appeared twice,
    never lets a third 7 complete (engines/rules_matcher.py), and the budget closer ends it in time."""
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99},
              "contains": {"const": 7}, "minContains": 2, "maxContains": 2}
    messages = [{"role": "user", "content": "List the numbers 1 to 9 as a JSON array."}]
    out = model.chat_completion(messages, response_format={"type": "json", "value": schema}, max_tokens=80,
                                temperature=0)
    value = json.loads(out.choices[0].message.content)
    assert value.count(7) == 2 and len(value) > 9
    jsonschema.validate(value, schema)


def test_compact_json_by_default_and_pretty_on_request(model):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "integer"}, "maxItems": 3}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    out = model.chat_completion(
        [{"role": "user", "content": "JSON please"}],
        response_format={"type": "json", "value": schema},
        temperature=0,
        max_tokens=60,
    )
    text = out.choices[0].message.content
    assert " " not in text and "\n" not in text
    compiled = model.compile({"type": "json", "value": schema}, whitespace="pretty")
    assert "whitespace_pattern" in str(compiled)


def test_close_objects_option_forbids_undeclared_properties(model):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    compiled = model.compile({"type": "json", "value": schema}, close_objects=True)
    matcher = compiled.matcher()
    tokens = model.tokenizer.encode('{"a":1,"b":2}', add_special_tokens=False)
    assert not all(matcher.consume(t) for t in tokens)
    open_matcher = model.compile({"type": "json", "value": schema}).matcher()
    assert all(open_matcher.consume(t) for t in tokens)
