"""Tool calling end to end on the embedded model: every tool_choice, streams, history, errors.

Generations are few, short and greedy (or seeded), so the file runs in a few minutes on a CPU.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from constrain.errors import InvalidRequestError, InvalidSchemaError, ToolChoiceError, UnsupportedSchemaError
from constrain.requests import parse_request
from constrain.tools import build_grammar, format_calls, parse_tool_choice, resolve
from tests.conftest import on_every_runtime

model = on_every_runtime()

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers",
        # HF's spelling of the schema key.
        "arguments": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, ADD]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL_ID = re.compile(r"^call_[0-9a-f]{24}$")


def _ask(model, **fields):
    fields.setdefault("messages", ASK)
    fields.setdefault("max_tokens", 64)
    fields.setdefault("temperature", 0)
    return model.chat_completion(**fields)


def _calls(message) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def _stream(model, **fields):
    """Our chunks, reassembled by the openai SDK's own accumulator (it concatenates strings)."""
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state = ChatCompletionStreamState()
    chunks = list(_ask(model, stream=True, **fields))
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk.model_dump()))
    if chunks[-1].choices and chunks[-1].choices[0].finish_reason == "length":
        return chunks, state.current_completion_snapshot  # the SDK's final view raises on "length"
    return chunks, state.get_final_completion()


def _check_stream_shape(chunks) -> None:
    """role once; per index id/type/name once; never two entries of one index in a chunk."""
    roles = [c for c in chunks if c.choices and c.choices[0].delta.role]
    assert len(roles) == 1 and roles[0] is chunks[0]
    seen_ids: dict[int, int] = {}
    for chunk in chunks:
        entries = chunk.choices[0].delta.tool_calls or [] if chunk.choices else []
        indexes = [e.index for e in entries]
        assert len(indexes) == len(set(indexes))
        for entry in entries:
            if entry.id is not None:
                seen_ids[entry.index] = seen_ids.get(entry.index, 0) + 1
                assert entry.type == "function" and entry.function and entry.function.name
            else:
                assert entry.type is None and (entry.function is None or entry.function.name is None)
    assert all(n == 1 for n in seen_ids.values())


# --------------------------------------------------------------------------- request -> setup


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, ("auto", None)),
        ("auto", ("auto", None)),
        ("none", ("none", None)),
        ("required", ("required", None)),
        ("add", ("named", "add")),
        ({"type": "function", "function": {"name": "add"}}, ("named", "add")),
        ({"function": {"name": "get_weather"}}, ("named", "get_weather")),
    ],
)
def test_tool_choice_dialects(choice, expected):
    assert parse_tool_choice(choice, ["get_weather", "add"]) == expected


@pytest.mark.parametrize(
    ("fields", "error", "param"),
    [
        ({"tools": TOOLS, "tool_choice": "multiply"}, ToolChoiceError, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "x"}}}, ToolChoiceError,
         "tool_choice.function.name"),
        ({"tools": TOOLS, "tool_choice": {"type": "custom", "custom": {}}}, ToolChoiceError, "tool_choice.type"),
        ({"tools": TOOLS, "tool_choice": {"function": "add"}}, ToolChoiceError, "tool_choice.function"),
        ({"tool_choice": "required"}, ToolChoiceError, "tool_choice"),
        ({"tools": []}, ToolChoiceError, "tools"),
        ({"tools": [WEATHER, ADD, WEATHER]}, ToolChoiceError, "tools.2.function.name"),
        ({"tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {"x": {"type": "strin"}}}}}]},
         InvalidSchemaError, "tools.0.function.parameters.properties.x.type"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
         InvalidSchemaError, "tools.0.function.parameters.type"),
        ({"tools": [{"type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
         InvalidSchemaError, "tools.0.function.arguments"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": False}}]},
         InvalidSchemaError, "tools.0.function.parameters"),
        ({"tools": [{"type": "function", "function": {
            "name": "f", "parameters": {"type": "object", "properties": {"x": {"$dynamicRef": "#a"}}}}}]},
         UnsupportedSchemaError, "tools.0.function.parameters.properties.x"),
        ({"tools": TOOLS, "tool_call_bias": 50}, InvalidRequestError, "tool_call_bias"),
    ],
)
def test_bad_tool_requests_name_the_field(model, fields, error, param):
    with pytest.raises(error) as info:
        _ask(model, **fields)
    assert info.value.param is not None and info.value.param.startswith(param), info.value.param
    assert info.value.status_code == 400


def test_tool_choice_none_without_tools_is_plain_chat(model):
    assert resolve(parse_request({"messages": ASK, "tool_choice": "none"})) is None


# --------------------------------------------------------------------------- grammar, mask level


def _accepts(model, grammar: str, text: str) -> bool:
    compiled = model.compile({"type": "grammar", "value": grammar})
    matcher = compiled.matcher()
    ok = all(matcher.consume(t) for t in model.tokenizer.encode(text, add_special_tokens=False))
    return ok and matcher.is_accepting()


def _grammar(model, **fields) -> str:
    setup = resolve(parse_request({"messages": ASK, "tools": TOOLS, **fields}))
    return build_grammar(setup, model.compile(fields.get("response_format")).constraint)


def test_grammar_enforces_names_schemas_and_call_count(model):
    required = _grammar(model, tool_choice="required")
    one = format_calls([("get_weather", '{"city":"Paris"}')])
    two = format_calls([("get_weather", '{"city":"Paris"}'), ("add", '{"a":1,"b":2}')])
    assert _accepts(model, required, one) and _accepts(model, required, two)
    assert not _accepts(model, required, format_calls([("multiply", '{"a":1}')]))  # unknown tool
    assert not _accepts(model, required, format_calls([("add", '{"a":"1","b":2}')]))  # wrong type
    assert not _accepts(model, required, format_calls([("add", '{"a":1}')]))  # missing required
    assert not _accepts(model, required, "Sunny.")  # no text under "required"
    single = _grammar(model, tool_choice="required", parallel_tool_calls=False)
    assert _accepts(model, single, one) and not _accepts(model, single, two)
    named = _grammar(model, tool_choice="add")
    assert not _accepts(model, named, one) and _accepts(model, named, format_calls([("add", '{"a":1,"b":2}')]))
    auto = _grammar(model, tool_choice="auto")
    assert _accepts(model, auto, "Sunny.") and _accepts(model, auto, two)
    assert not _accepts(model, auto, "<tool_call>oops")  # text cannot pose as calls


def test_auto_text_branch_follows_response_format(model):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    auto = _grammar(model, tool_choice="auto", response_format={"type": "json", "value": schema})
    assert _accepts(model, auto, '{"answer":"sunny"}')
    assert not _accepts(model, auto, "Sunny.") and not _accepts(model, auto, '{"other":1}')
    assert _accepts(model, auto, format_calls([("add", '{"a":1,"b":2}')]))
    regex = _grammar(model, tool_choice="auto", response_format={"type": "regex", "value": r"(yes|no)/maybe"})
    assert _accepts(model, regex, "no/maybe") and not _accepts(model, regex, "Sunny.")


# --------------------------------------------------------------------------- prompts


def test_prompt_shows_tools_and_format_without_template_support(model):
    plan = model.plan(parse_request({"messages": ASK, "tools": TOOLS, "tool_choice": "required"}))
    assert '"name": "get_weather"' in plan.prompt and '"name": "add"' in plan.prompt
    assert '<tool_call>[{"name":"<tool name>","arguments":' in plan.prompt
    named = model.plan(parse_request({"messages": ASK, "tools": TOOLS, "tool_choice": "add", "tool_prompt": "Be brief."}))
    assert "Be brief." in named.prompt and '"name": "get_weather"' not in named.prompt
    none = model.plan(parse_request({"messages": ASK, "tools": TOOLS, "tool_choice": "none"}))
    assert "get_weather" not in none.prompt and "<tool_call>" not in none.prompt


HISTORY = [
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "5"},
]


def test_history_renders_in_the_enforced_format(model):
    plan = model.plan(parse_request({"messages": HISTORY, "tools": TOOLS}))
    assert format_calls([("add", '{"a":2,"b":3}')]) in plan.prompt
    assert "<tool_response>\n5\n</tool_response>" in plan.prompt
    # Tool history without tools in this request still renders.
    plain = model.plan(parse_request({"messages": HISTORY}))
    assert format_calls([("add", '{"a":2,"b":3}')]) in plain.prompt


def test_history_and_tools_go_through_a_template_that_renders_tools(tokenizer):
    from constrain.tools import render_with_tools

    tok = copy.copy(tokenizer)
    tok.chat_template = (
        "{% for t in tools or [] %}TOOL {{ t.function.name }}\n{% endfor %}"
        "{% for m in messages %}<{{ m.role }}>{{ m.content or '' }}"
        "{% for c in m.tool_calls or [] %}CALL {{ c.function.name }} {{ c.function.arguments.a }}{% endfor %}"
        "{% if m.tool_call_id %} for {{ m.tool_call_id }}{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    request = parse_request({"messages": HISTORY, "tools": TOOLS, "tool_choice": "required"})
    prompt = render_with_tools(tok, request.messages, resolve(request))
    assert "TOOL get_weather\nTOOL add\n" in prompt
    assert "CALL add 2" in prompt  # arguments reach the template as an object
    assert "<tool>5 for call_1" in prompt
    assert '<tool_call>[{"name":"<tool name>"' in prompt  # our format is still spelled out


# --------------------------------------------------------------------------- generation


def test_required_stream_equals_non_stream_and_sdk_accumulator(model):
    fields = {"tools": TOOLS, "tool_choice": "required", "seed": 11, "temperature": 0.7}
    out = _ask(model, **fields)
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = _calls(choice.message)
    assert calls and all(name in ("get_weather", "add") for name, _ in calls)
    assert all(CALL_ID.match(c.id) for c in choice.message.tool_calls)
    assert len({c.id for c in choice.message.tool_calls}) == len(calls)
    chunks, final = _stream(model, **fields)
    _check_stream_shape(chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    message = final.choices[0].message
    assert message.role == "assistant" and not message.content
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == calls
    assert all(CALL_ID.match(c.id) for c in message.tool_calls)


def test_required_without_parallel_makes_exactly_one_call(model):
    out = _ask(model, tools=TOOLS, tool_choice="required", parallel_tool_calls=False)
    assert out.choices[0].finish_reason == "tool_calls"
    assert len(out.choices[0].message.tool_calls) == 1


@pytest.mark.parametrize("choice", ["add", {"type": "function", "function": {"name": "add"}}])
def test_named_choice_calls_that_tool(model, choice):
    messages = [{"role": "user", "content": "Add 2 and 40."}]
    chunks, final = _stream(model, messages=messages, tools=TOOLS, tool_choice=choice)
    _check_stream_shape(chunks)
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in final.choices[0].message.tool_calls]
    assert len(calls) == 1 and calls[0][0] == "add" and set(calls[0][1]) == {"a", "b"}
    assert all(isinstance(v, int) for v in calls[0][1].values())


def test_auto_answers_in_text_in_one_pass(model):
    messages = [{"role": "user", "content": "Tell me a joke about cats."}]
    out = _ask(model, messages=messages, tools=TOOLS, tool_choice="auto", max_tokens=24)
    message = out.choices[0].message
    # Greedy SmolLM2 answers this one in text; either way the message is one or the other.
    assert message.tool_calls is None and message.content and not message.content.startswith("<tool_call>")
    assert out.choices[0].finish_reason in ("stop", "length")
    chunks, final = _stream(model, messages=messages, tools=TOOLS, max_tokens=24)  # auto is the default
    _check_stream_shape(chunks)
    assert final.choices[0].message.content == message.content


def test_none_is_plain_text(model):
    out = _ask(model, tools=TOOLS, tool_choice="none", max_tokens=12)
    assert out.choices[0].message.tool_calls is None and out.choices[0].message.content
    assert out.choices[0].finish_reason in ("stop", "length")


def test_multi_turn_with_a_tool_result(model):
    out = _ask(model, messages=HISTORY, tools=TOOLS, max_tokens=24)
    message = out.choices[0].message
    assert (message.content is None) != (message.tool_calls is None)
    if message.tool_calls:  # whichever the model picks, it is well formed
        assert out.choices[0].finish_reason == "tool_calls" and _calls(message)


def test_truncated_call_reports_length(model):
    """A budget too small even to close the call: cut, with the partial call and "length"."""
    head = format_calls([("get_weather", "{")]).removesuffix("}]</tool_call>")
    limit = len(model.tokenizer.encode(head, add_special_tokens=False)) + 2  # the head, then 2 tokens
    out = _ask(model, tools=TOOLS, tool_choice="get_weather", max_tokens=limit)
    choice = out.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.tool_calls and choice.message.tool_calls[0].function.name == "get_weather"
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice.message.tool_calls[0].function.arguments)


WRITE = {
    "type": "function",
    "function": {
        "name": "write_poem",
        "description": "Store a poem",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}


@pytest.mark.parametrize("stream", [False, True])
def test_budget_closes_a_call_that_would_be_cut(model, stream):
    """Out of tokens inside the arguments: the closer ends the string and the call, so it parses."""
    fields = {"messages": [{"role": "user", "content": "Write a very long poem about the sea."}],
              "tools": [WRITE], "tool_choice": "required", "max_tokens": 40}
    if stream:
        chunks, final = _stream(model, **fields)
        _check_stream_shape(chunks)
        choice = final.choices[0]
    else:
        choice = _ask(model, **fields).choices[0]
    assert choice.finish_reason == "length"  # the budget ended it ...
    calls = _calls(choice.message)  # ... but every call is complete and valid
    assert calls and all(name == "write_poem" and isinstance(args["text"], str) for name, args in calls)


@pytest.mark.parametrize(("bias", "calls"), [(20.0, True), (-20.0, False)])
def test_tool_call_bias_decides_auto(model, bias, calls):
    out = _ask(model, tools=TOOLS, tool_choice="auto", tool_call_bias=bias, max_tokens=40)
    message = out.choices[0].message
    assert bool(message.tool_calls) is calls and (message.content is None) is calls


def test_embedded_model_calls_under_auto_by_default(model):
    """Without the embedded model's default bias (+3) SmolLM2-135M answers this in text."""
    assert model.tool_call_bias == 3.0
    messages = [{"role": "user", "content": "Add 2 and 40."}]
    assert _ask(model, messages=messages, tools=TOOLS, max_tokens=40).choices[0].message.tool_calls
    assert not _ask(model, messages=messages, tools=TOOLS, max_tokens=40,
                    tool_call_bias=0.0).choices[0].message.tool_calls
