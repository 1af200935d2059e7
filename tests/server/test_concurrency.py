"""Many clients at once, clients that leave, and the limits: queue (429), body size (413), max_tokens."""

from __future__ import annotations

import json
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from constrain import Model
from tests.server.conftest import wait_until

# Never finishes within max_tokens: a generation that runs until stopped.
ENDLESS = {"type": "regex", "value": "[ab]{2000}"}


def _client_schema(i: int) -> dict:
    """Each client's own schema: its number is a const, so an answer sent to the wrong client fails."""
    return {
        "type": "object",
        "properties": {"client": {"const": i}, "value": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["client", "value"],
        "additionalProperties": False,
    }


def test_twenty_concurrent_streaming_clients(server):
    oai = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    core = server.state.holder.model.core
    starts_before = len(core.stats.start_order)

    def one(i: int) -> tuple[int, list]:
        stream = oai.chat.completions.create(
            model=f"client-{i}",
            messages=[{"role": "user", "content": f"Client {i}: give a digit."}],
            response_format={"type": "json_schema", "json_schema": {"name": f"c{i}", "schema": _client_schema(i)}},
            max_tokens=20,
            temperature=0,
            stream=True,
            extra_headers={"x-use-cache": "false"},
        )
        return i, list(stream)

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))

    ids = set()
    for i, chunks in results:
        assert {c.id for c in chunks} == {chunks[0].id}  # one completion per stream
        assert {c.model for c in chunks} == {f"client-{i}"}
        ids.add(chunks[0].id)
        assert chunks[-1].choices[0].finish_reason == "stop"
        content = "".join(c.choices[0].delta.content or "" for c in chunks)
        answer = json.loads(content)
        jsonschema.validate(answer, _client_schema(i))
        assert answer["client"] == i
    assert len(ids) == 20
    started = list(core.stats.start_order)[starts_before:]
    assert len(started) == 20 and started == sorted(started)  # first admitted, first served


def test_stream_disconnect_stops_generation(server):
    server.wait_idle()
    before = len(server.state.generations.records)
    body = {
        "messages": [{"role": "user", "content": "Write a and b."}],
        "response_format": ENDLESS,
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
    }
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        seen = 0
        for line in lines:
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                seen += 1
                if seen == 2:
                    break
    # The connection is closed here, mid-generation.
    wait_until(lambda: len(server.state.generations.records) > before, "the generation to end")
    record = server.state.generations.records[-1]
    assert record.stream and record.outcome == "stopped"
    assert record.events < 100  # it would have sent ~400 chunks had it run to max_tokens
    core = server.state.holder.model.core
    wait_until(lambda: core.snapshot()["running"] == 0, "the row to be freed")  # its place is free again


MIXED_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}]


def test_sixteen_mixed_clients_at_once_share_the_batch(server):
    """JSON, regex, tool calls and plain text, streamed and not, from both SDKs, all at once."""
    server.wait_idle()
    core = server.state.holder.model.core
    oai = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    hf = InferenceClient(base_url=server.base_url)
    peak: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak.append(core.snapshot()["running"])
            done.wait(0.05)

    def one(i: int) -> None:
        kind, stream = i % 4, i % 2 == 1
        common = {"max_tokens": 40, "temperature": 0, "seed": i}
        ask = [{"role": "user", "content": f"Request {i}."}]
        if kind == 0:
            out = oai.chat.completions.create(model="m", messages=ask, stream=stream, **common,
                                              response_format={"type": "json_schema", "json_schema": {
                                                  "name": "c", "schema": _client_schema(i)}},
                                              extra_headers={"x-use-cache": "false"})
            text = "".join(c.choices[0].delta.content or "" for c in out if c.choices) if stream \
                else out.choices[0].message.content
            jsonschema.validate(json.loads(text), _client_schema(i))
        elif kind == 1:
            pattern = f"item-{i}-[0-9]{{3}}"
            fmt = {"type": "regex", "value": pattern}
            if stream:
                text = "".join(c.choices[0].delta.content or "" for c in hf.chat_completion(
                    messages=ask, response_format=fmt, stream=True, **common))
            else:
                text = hf.chat_completion(messages=ask, response_format=fmt, **common).choices[0].message.content
            assert re.fullmatch(pattern, text), text
        elif kind == 2:
            out = oai.chat.completions.create(model="m", messages=ask, tools=MIXED_TOOLS, tool_choice="required",
                                              **common)
            call = out.choices[0].message.tool_calls[0]
            assert call.function.name == "get_weather"
            jsonschema.validate(json.loads(call.function.arguments), MIXED_TOOLS[0]["function"]["parameters"])
        else:
            out = oai.chat.completions.create(model="m", messages=ask, stream=stream, **common)
            text = "".join(c.choices[0].delta.content or "" for c in out if c.choices) if stream \
                else out.choices[0].message.content
            assert text

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(one, range(16)))
    finally:
        done.set()
        watcher.join()
    assert max(peak) >= 8  # they generated side by side
    server.wait_idle()


def _raw_post(port: int, body: dict) -> socket.socket:
    """Send a request on a raw socket and return it unread, so that the test can hang up."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


def test_non_streamed_disconnect_stops_generation(server):
    server.wait_idle()
    before = len(server.state.generations.records)
    body = {"messages": [{"role": "user", "content": "Write a and b."}], "response_format": ENDLESS, "max_tokens": 400}
    sock = _raw_post(server.port, body)
    wait_until(lambda: server.state.holder.model.core.snapshot()["running"] == 1, "the generation to start")
    sock.close()
    wait_until(lambda: len(server.state.generations.records) > before, "the generation to end")
    record = server.state.generations.records[-1]
    assert not record.stream and record.outcome == "stopped"
    assert record.completion_tokens < 100


@pytest.fixture(scope="module")
def single(model):
    """The embedded model's weights with a batch of one row: one generation at a time."""
    one = Model(model.name, model.hf_model, model.tokenizer, max_batch=1)
    yield one
    one.close()


@pytest.fixture(scope="module")
def limited(single, start_server):
    return start_server(single, max_queue=1, max_tokens_limit=32, max_request_bytes=2000)


def test_queue_overflow_is_429_and_waiting_clients_can_leave(limited, single):
    # A generation that holds the one row until it is cancelled.
    blocker = single.submit(single.prepare({"messages": [{"role": "user", "content": "Write a and b."}],
                                            "response_format": ENDLESS, "max_tokens": 1500}))
    wait_until(lambda: single.core.snapshot()["running"] == 1, "the blocker to start")
    try:
        body = {
            "messages": [{"role": "user", "content": "Write a and b."}],
            "response_format": ENDLESS,
            "max_tokens": 30,
            "stream": True,
        }
        url = f"{limited.base_url}/v1/chat/completions"
        with httpx.stream("POST", url, json=body, timeout=60) as waiting:
            assert waiting.status_code == 200  # admitted: waits for the row
            assert single.core.snapshot()["waiting"] == 1
            assert httpx.get(f"{limited.base_url}/health").json()["queue"] == {
                "waiting": 1, "running": 1, "max_queue": 1, "max_batch": 1}

            plain = httpx.post(url, json={**body, "stream": False}, timeout=60)
            assert plain.status_code == 429
            assert plain.json()["error"]["type"] == "overloaded"
            assert plain.json()["error_type"] == "overloaded"
            assert "max_queue=1" in plain.json()["error"]["message"]
            with pytest.raises(openai.RateLimitError):
                openai.OpenAI(base_url=f"{limited.base_url}/v1", api_key="x", max_retries=0).chat.completions.create(
                    model="m", messages=body["messages"], max_tokens=5
                )
            with pytest.raises(HfHubHTTPError) as info:
                InferenceClient(base_url=limited.base_url).chat_completion(messages=body["messages"], max_tokens=5)
            assert info.value.response.status_code == 429
        # The waiting client hung up: its sequence is dropped before it ever runs.
        wait_until(lambda: single.core.stats.cancelled_waiting >= 1, "the waiting sequence to be dropped")
        wait_until(lambda: limited.state.generations.counts["skipped"] >= 1, "the skipped request to be logged")
    finally:
        blocker.cancel()
    assert list(blocker)[-1].finish_reason == "length"
    limited.wait_idle()
    assert single.core.snapshot() == {"waiting": 0, "running": 0, "max_batch": 1, "max_queue": None}


def test_request_too_large_is_413(limited):
    url = f"{limited.base_url}/v1/chat/completions"
    big = {"messages": [{"role": "user", "content": "x" * 5000}], "max_tokens": 5}
    response = httpx.post(url, json=big)
    assert response.status_code == 413
    assert "--max-request-bytes" in response.json()["error"]["message"]
    with pytest.raises(openai.APIStatusError) as info:
        openai.OpenAI(base_url=f"{limited.base_url}/v1", api_key="x", max_retries=0).chat.completions.create(
            model="m", messages=big["messages"], max_tokens=5
        )
    assert info.value.status_code == 413


def test_max_tokens_limit_rejects_and_defaults(limited):
    url = f"{limited.base_url}/v1/chat/completions"
    messages = [{"role": "user", "content": "Write a and b."}]
    response = httpx.post(url, json={"messages": messages, "max_completion_tokens": 33})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "max_completion_tokens"
    # Without max_tokens, the server's limit is the default: an endless answer stops there.
    response = httpx.post(url, json={"messages": messages, "response_format": ENDLESS}, timeout=120)
    assert response.status_code == 200
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert response.json()["usage"]["completion_tokens"] == 32
