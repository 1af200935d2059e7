"""authorization (401), background loading (503 / x-wait-for-model), and `constrain serve` itself."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from tests.server.conftest import wait_until

KEYS = ["k-first-7f3a9c", "k-second-b41e02"]
HELLO = [{"role": "user", "content": "Say hi."}]


@pytest.fixture(scope="module")
def secured(model, start_server):
    return start_server(model, api_keys=KEYS)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", f"Basic {KEYS[0]}", "Bearer", f"Bearer {KEYS[0]}x", f"{KEYS[0]}"],
)
def test_without_a_valid_key_401(secured, authorization):
    headers = {"authorization": authorization} if authorization else {}
    for method, path in (("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
        response = httpx.request(method, f"{secured.base_url}{path}", json={"messages": HELLO}, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"


def test_valid_keys_with_real_clients(secured, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{secured.base_url}/v1", api_key="not-a-key", max_retries=0).models.list()
    with pytest.raises(HfHubHTTPError) as info:
        InferenceClient(base_url=secured.base_url, api_key="not-a-key").chat_completion(messages=HELLO, max_tokens=2)
    assert info.value.response.status_code == 401

    for key in KEYS:
        oai = openai.OpenAI(base_url=f"{secured.base_url}/v1", api_key=key, max_retries=0)
        assert oai.models.list().data[0].id == "SmolLM2-135M-Instruct"
    out = InferenceClient(base_url=secured.base_url, api_key=KEYS[1]).chat_completion(
        messages=HELLO, max_tokens=3, temperature=0
    )
    assert out.choices[0].message.content
    assert httpx.get(f"{secured.base_url}/health").status_code == 200  # health is open
    assert caplog.text  # the server did log (access lines)...
    for key in [*KEYS, "not-a-key"]:
        assert key not in caplog.text  # ...but never a key


def test_loading_503_then_x_wait_for_model(model, start_server):
    gate = threading.Event()

    def slow_load():
        gate.wait()
        return model

    loading = start_server(slow_load, load_estimate_s=30)
    url = f"{loading.base_url}/v1/chat/completions"
    try:
        health = httpx.get(f"{loading.base_url}/health")
        assert health.status_code == 503 and health.json()["status"] == "loading"

        response = httpx.post(url, json={"messages": HELLO, "max_tokens": 2})
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "model_not_ready"
        assert 0 < response.json()["estimated_time"] <= 30
        assert int(response.headers["retry-after"]) >= 1
        with pytest.raises(openai.InternalServerError) as info:
            openai.OpenAI(base_url=f"{loading.base_url}/v1", api_key="x", max_retries=0).models.list()
        assert info.value.status_code == 503
        with pytest.raises(HfHubHTTPError) as hf_info:
            InferenceClient(base_url=loading.base_url).chat_completion(messages=HELLO, max_tokens=2)
        assert hf_info.value.response.status_code == 503

        results: list[httpx.Response] = []
        waiter = threading.Thread(
            target=lambda: results.append(
                httpx.post(
                    url,
                    json={"messages": HELLO, "max_tokens": 3, "temperature": 0},
                    headers={"x-wait-for-model": "true"},
                    timeout=120,
                )
            )
        )
        waiter.start()
        wait_until(lambda: loading.state.holder.waiting == 1, "the request to wait for the model")
        assert not results  # still waiting: the model is not there
    finally:
        gate.set()
    waiter.join(timeout=120)
    assert results and results[0].status_code == 200, results
    assert results[0].json()["choices"][0]["message"]["content"]
    assert httpx.get(f"{loading.base_url}/health").json()["status"] == "ready"


def test_failed_load_is_a_clear_500(start_server):
    def broken():
        raise FileNotFoundError("no weights at /nowhere/model.gguf")

    failed = start_server(broken)
    response = httpx.post(
        f"{failed.base_url}/v1/chat/completions",
        json={"messages": HELLO},
        headers={"x-wait-for-model": "true"},
        timeout=60,
    )
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "model_load_error"
    assert "/nowhere/model.gguf" in response.json()["error"]["message"]
    assert httpx.get(f"{failed.base_url}/health").status_code == 500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_constrain_serve_cli_readme_example(tmp_path: Path):
    """`constrain serve` as a user runs it: listens at once, README's curl request, key never printed."""
    port = _free_port()
    key = "cli-secret-5d0c7e"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "constrain.cli", "serve", "--port", str(port), "--api-key", key],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def listening() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base}/health").status_code in (200, 503)
            except httpx.TransportError:
                return False

        wait_until(listening, "`constrain serve` to listen", timeout=120)
        body = {
            "messages": [{"role": "user", "content": "Name a colour."}],
            "response_format": {
                "type": "json",
                "value": {
                    "type": "object",
                    "properties": {"colour": {"type": "string", "maxLength": 20}},
                    "required": ["colour"],
                },
            },
            "max_tokens": 30,
            "temperature": 0,
        }
        headers = {"authorization": f"Bearer {key}", "x-wait-for-model": "true"}
        response = httpx.post(f"{base}/v1/chat/completions", json=body, headers=headers, timeout=180)
        assert response.status_code == 200, response.text
        content = response.json()["choices"][0]["message"]["content"]
        jsonschema.validate(json.loads(content), body["response_format"]["value"])
        denied = httpx.post(f"{base}/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"})
        assert denied.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    output = log_path.read_text()
    assert "Uvicorn running on" in output
    assert key not in output
