"""The wire format, seen by a plain HTTP client: routes, SSE framing, errors, x-use-cache."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import GenerationError as HFGenerationError

from constrain import Model
from constrain.errors import GenerationError

COLOUR = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["colour"],
    "additionalProperties": False,
}


def _request(**extra):
    body = {"model": "anything-goes", "messages": [{"role": "user", "content": "Pick a colour."}]}
    body.update(extra)
    return body


def sse_events(response: httpx.Response) -> list[str]:
    """The raw ``data:`` payloads, checking the framing both SDKs rely on."""
    text = response.read().decode("utf-8")
    assert text.endswith("data: [DONE]\n\n")
    payloads = []
    for block in text.split("\n\n")[:-1]:
        lines = [line for line in block.split("\n") if not line.startswith(":")]
        if not lines:
            continue
        assert len(lines) == 1 and lines[0].startswith("data: "), block  # one single-line data field
        payloads.append(lines[0].removeprefix("data: "))
    assert payloads[-1] == "[DONE]"
    return payloads[:-1]


def test_health_and_models(server):
    health = httpx.get(f"{server.base_url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ready"
    models = httpx.get(f"{server.base_url}/v1/models").json()
    assert models["object"] == "list"
    assert models["data"][0]["id"] == "SmolLM2-135M-Instruct"


def test_both_routes_accept_any_model_name_and_constrain(server):
    for path in ("/v1/chat/completions", "/chat/completions"):
        response = httpx.post(
            f"{server.base_url}{path}",
            json=_request(response_format={"type": "json", "value": COLOUR}, max_tokens=12, temperature=0),
            timeout=120,
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert body["object"] == "chat.completion"
        assert body["id"].startswith("chatcmpl-")
        assert body["model"] == "anything-goes"
        assert body["choices"][0]["finish_reason"] == "stop"
        assert json.loads(body["choices"][0]["message"]["content"])["colour"] in ("red", "green", "blue")


def test_stream_framing_role_once_and_usage_chunk(server):
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        json=_request(
            response_format={"type": "json", "value": COLOUR},
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        ),
        timeout=120,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = [json.loads(p) for p in sse_events(response)]
    assert len({c["id"] for c in chunks}) == 1
    assert [c["choices"][0]["delta"].get("role") for c in chunks[:-1]].count("assistant") == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["usage"] is None for c in chunks[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert json.loads(content)["colour"] in ("red", "green", "blue")


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        (_request(temperature=7), "temperature", "less than or equal to 2"),
        (_request(response_format={"type": "json", "value": {"type": "strnig"}}), "response_format", "strnig"),
        (_request(response_format={"type": "regex", "value": "("}), "response_format", "regex"),
        ({"messages": "hello"}, "messages", "list"),
        (_request(should_stop=True), "should_stop", "unknown field"),
        (_request(max_tokens=5000), "max_tokens", "at most 4096"),
        (_request(response_format={"type": "json", "value": False}), "response_format.value", "schema `false`"),
        (_request(response_format={"type": "json", "value": {"enum": []}}), "response_format.value", "admits no value"),
    ],
)
def test_bad_requests_are_400_naming_the_field(server, body, param, fragment):
    response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param)
    assert fragment in error["message"]
    assert response.json()["error_type"] == "validation"
    assert response.headers["x-error-message"]


def test_body_that_is_not_json_or_not_an_object(server):
    url = f"{server.base_url}/v1/chat/completions"
    response = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]
    response = httpx.post(url, json=[1, 2])
    assert response.status_code == 400
    assert "JSON object" in response.json()["error"]["message"]


def test_unknown_route_and_method_are_json_errors(server):
    response = httpx.get(f"{server.base_url}/v1/nothing")
    assert response.status_code == 404
    assert "/v1/nothing" in response.json()["error"]["message"]
    response = httpx.get(f"{server.base_url}/v1/chat/completions")
    assert response.status_code == 405
    assert response.json()["error"]["message"]


def test_bad_header_value_names_the_header(server):
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions", json=_request(max_tokens=2), headers={"x-use-cache": "maybe"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "x-use-cache"


def test_x_use_cache_hit_miss_and_bypass(server):
    url = f"{server.base_url}/v1/chat/completions"
    body = _request(response_format={"type": "json", "value": COLOUR}, max_tokens=12, temperature=0, seed=123)
    admitted = server.state.holder.model.core.stats.admitted

    first = httpx.post(url, json=body, timeout=120)
    assert first.status_code == 200 and first.headers["x-cache"] == "miss"
    second = httpx.post(url, json=body, timeout=120)
    assert second.headers["x-cache"] == "hit"
    assert second.content == first.content
    assert server.state.holder.model.core.stats.admitted == admitted + 1  # the hit did not generate

    # Same request, other spelling (key order, default written out): the same entry.
    respelled = dict(reversed(list(body.items())), stream=False)
    assert httpx.post(url, json=respelled, timeout=120).headers["x-cache"] == "hit"

    bypass = httpx.post(url, json=body, headers={"x-use-cache": "false"}, timeout=120)
    assert bypass.headers["x-cache"] == "miss"
    assert bypass.json()["id"] != first.json()["id"]
    assert bypass.json()["choices"] == first.json()["choices"]  # deterministic anyway
    assert server.state.holder.model.core.stats.admitted == admitted + 2

    # Sampling without a seed is not deterministic: never cached.
    sampled = _request(response_format={"type": "json", "value": COLOUR}, max_tokens=12, temperature=1.0)
    for _ in range(2):
        assert httpx.post(url, json=sampled, timeout=120).headers["x-cache"] == "miss"


def test_x_use_cache_replays_streams(server):
    url = f"{server.base_url}/v1/chat/completions"
    body = _request(response_format={"type": "json", "value": COLOUR}, max_tokens=12, temperature=0, stream=True)
    replies = []
    for _ in range(2):
        with httpx.stream("POST", url, json=body, timeout=120) as response:
            replies.append((response.headers["x-cache"], sse_events(response)))
    assert [hit for hit, _ in replies] == ["miss", "hit"]
    assert replies[0][1] == replies[1][1]


class _FailsMidStream(Model):
    """The embedded model's weights, with a generation that breaks after its first chunk."""

    async def complete_async(self, prepared):
        await super().complete_async(prepared)
        raise GenerationError("engine rejected token 42 (simulated)")

    async def stream_async(self, prepared):
        chunks = super().stream_async(prepared)
        yield await chunks.__anext__()
        await chunks.aclose()
        raise GenerationError("engine rejected token 42 (simulated)")


@pytest.fixture(scope="module")
def failing(model, start_server):
    return start_server(_FailsMidStream("broken", model.hf_model, model.tokenizer))


def test_error_after_stream_started_is_an_sse_error_event(failing):
    body = _request(max_tokens=3, stream=True)
    with httpx.stream("POST", f"{failing.base_url}/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        text = response.read().decode()
    events = [json.loads(block.removeprefix("data: ")) for block in text.strip().split("\n\n")]
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-1]["error"]["type"] == "generation_error"
    assert events[-1]["error_type"] == "generation"
    assert "[DONE]" not in text

    oai = openai.OpenAI(base_url=f"{failing.base_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match="token 42"):
        list(oai.chat.completions.create(model="m", messages=body["messages"], max_tokens=3, stream=True))
    hf = InferenceClient(base_url=failing.base_url)  # keep a reference: the client closes its streams when freed
    with pytest.raises(HFGenerationError, match="token 42"):
        list(hf.chat_completion(messages=body["messages"], max_tokens=3, stream=True))
    # Before streaming, the same failure is a plain 500 (a bug, not the user's fault).
    response = httpx.post(f"{failing.base_url}/v1/chat/completions", json=_request(max_tokens=3), timeout=60)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == "engine rejected token 42 (simulated)"
