"""The real clients, unchanged, against a real server: huggingface_hub.InferenceClient and openai.OpenAI."""

from __future__ import annotations

import json
from typing import Literal

import jsonschema
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from pydantic import BaseModel, Field

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 16}, "country": {"enum": ["France", "Italy", "Spain"]}},
    "required": ["city", "country"],
    "additionalProperties": False,
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris right now?"}]


class CityAnswer(BaseModel):
    city: str = Field(max_length=16)
    country: Literal["France", "Italy", "Spain"]


@pytest.fixture(scope="module")
def hf(server) -> InferenceClient:
    return InferenceClient(base_url=server.base_url)


@pytest.fixture(scope="module")
def oai(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


# --------------------------------------------------------------------------- huggingface_hub


def test_inference_client_spec_snippet_stream_matches_non_stream(hf):
    pieces, finish = [], None
    # The spec's snippet, with base_url instead of a hub model (the `model` name is just echoed).
    for message in hf.chat_completion(
        model="google/gemma-2-2b-it", messages=QUESTION, max_tokens=12, stream=True, temperature=0
    ):
        pieces.append(message.choices[0].delta.content or "")
        finish = message.choices[0].finish_reason or finish
    streamed = "".join(pieces)
    whole = hf.chat_completion(model="google/gemma-2-2b-it", messages=QUESTION, max_tokens=12, temperature=0)
    assert whole.model == "google/gemma-2-2b-it"
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].message.content == streamed
    assert whole.choices[0].finish_reason == finish
    assert "Paris" in streamed
    assert whole.usage.completion_tokens > 0


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json", "value": CITY},  # the HF spec's own dialect
        {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}},  # rewritten by the client
    ],
)
def test_inference_client_response_format(hf, response_format):
    out = hf.chat_completion(messages=QUESTION, response_format=response_format, max_tokens=24, temperature=0)
    assert out.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(out.choices[0].message.content), CITY)


def test_inference_client_tools(hf):
    out = hf.chat_completion(
        messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice="required", max_tokens=40, temperature=0
    )
    message = out.choices[0].message
    assert out.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls[0].function.name == "get_weather"
    assert isinstance(message.tool_calls[0].function.arguments, str)
    jsonschema.validate(json.loads(message.tool_calls[0].function.arguments), WEATHER_TOOL["function"]["parameters"])


# --------------------------------------------------------------------------- openai


def test_openai_create_and_stream(oai):
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
    whole = oai.chat.completions.create(
        model="whatever", messages=QUESTION, response_format=fmt, max_tokens=24, temperature=0
    )
    assert whole.object == "chat.completion"
    jsonschema.validate(json.loads(whole.choices[0].message.content), CITY)

    stream = oai.chat.completions.create(
        model="whatever",
        messages=QUESTION,
        response_format=fmt,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-use-cache": "false"},
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_openai_stream_helper(oai):
    deltas = []
    with oai.chat.completions.stream(
        model="whatever", messages=QUESTION, response_format=CityAnswer, max_tokens=24, temperature=0
    ) as stream:
        for event in stream:
            if event.type == "content.delta":
                deltas.append(event.delta)
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant"  # not "assistantassistant...": role is sent once
    assert message.content == "".join(deltas)
    assert isinstance(message.parsed, CityAnswer)


def test_openai_parse_with_pydantic_model(oai):
    out = oai.chat.completions.parse(
        model="whatever", messages=QUESTION, response_format=CityAnswer, max_tokens=24, temperature=0
    )
    parsed = out.choices[0].message.parsed
    assert isinstance(parsed, CityAnswer)
    assert parsed.country in ("France", "Italy", "Spain")


def test_openai_tools_streamed(oai):
    stream = oai.chat.completions.create(
        model="whatever",
        messages=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=40,
        temperature=0,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            if delta.index not in calls:  # the first delta of a call names it, once
                assert delta.id and delta.function.name
                calls[delta.index] = {"name": delta.function.name, "arguments": ""}
            else:
                assert delta.id is None and (delta.function is None or delta.function.name is None)
            calls[delta.index]["arguments"] += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls"
    assert sorted(calls) == list(range(len(calls))) and calls
    assert calls[0]["name"] == "get_weather"
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER_TOOL["function"]["parameters"])


def test_errors_are_typed_in_both_clients(oai, hf):
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="m", messages=QUESTION, temperature=3)
    assert info.value.param == "temperature"
    assert info.value.status_code == 400
    with pytest.raises(HfHubHTTPError, match="temperature") as hf_info:
        hf.chat_completion(messages=QUESTION, temperature=3)
    assert hf_info.value.response.status_code == 400
