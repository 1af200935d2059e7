"""Several models in one server: listed with what they can do, picked by a request's `model`,
each in its own batch; an unknown name is a 404 listing what is served; loading on first use."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import openai
import pytest

import constrain
from constrain.errors import InvalidRequestError
from constrain.server import served_models
from tests.server.conftest import wait_until

SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}}, "required": ["colour"]}


def _body(model: str | None, i: int = 0) -> dict:
    body = {"messages": [{"role": "user", "content": f"A colour ({i})?"}], "max_tokens": 16, "temperature": 0,
            "response_format": {"type": "json", "value": SCHEMA}}
    if model is not None:
        body["model"] = model
    return body


@pytest.fixture(scope="module")
def second_model():
    return constrain.load(max_batch=4)  # the same weights, loaded again: a model with a batch of its own


@pytest.fixture(scope="module")
def two(model, second_model, start_server):
    return start_server({"smol": model, "smol-b": second_model}, cache_size=0)


def _admitted(server, name: str) -> int:
    return server.state.models.holders[name].model.core.stats.admitted


def test_models_are_listed_with_what_they_can_do(two):
    listed = httpx.get(f"{two.base_url}/v1/models").json()["data"]
    assert [card["id"] for card in listed] == ["smol", "smol-b"]
    for card in listed:
        assert card["object"] == "model" and card["status"] == "ready"
        assert card["context_length"] == 8192 and card["images"] is False and card["chat_template"] is True
    assert listed[1]["max_batch"] == 4
    oai = openai.OpenAI(base_url=f"{two.base_url}/v1", api_key="x", max_retries=0)
    assert [m.id for m in oai.models.list().data] == ["smol", "smol-b"]
    assert httpx.get(f"{two.base_url}/health").json()["models"] == {"smol": "ready", "smol-b": "ready"}


def test_a_request_goes_to_the_model_it_names(two):
    for name, other in (("smol-b", "smol"), ("smol", "smol-b")):
        before, before_other = _admitted(two, name), _admitted(two, other)
        reply = httpx.post(f"{two.base_url}/v1/chat/completions", json=_body(name), timeout=120)
        assert reply.status_code == 200, reply.text
        jsonschema.validate(json.loads(reply.json()["choices"][0]["message"]["content"]), SCHEMA)
        assert _admitted(two, name) == before + 1 and _admitted(two, other) == before_other
    before = _admitted(two, "smol")
    assert httpx.post(f"{two.base_url}/v1/chat/completions", json=_body(None), timeout=120).status_code == 200
    assert _admitted(two, "smol") == before + 1  # no `model`: the first one listed


def test_an_unknown_model_is_a_404_listing_the_served_ones(two):
    reply = httpx.post(f"{two.base_url}/v1/chat/completions", json=_body("gpt-4o"), timeout=30)
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "smol, smol-b" in error["message"]
    oai = openai.OpenAI(base_url=f"{two.base_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    reply = httpx.post(f"{two.base_url}/v1/chat/completions", json={**_body(None), "model": 3}, timeout=30)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"


def test_both_models_generate_at_once(two):
    names = ["smol", "smol-b"] * 4
    before = {name: _admitted(two, name) for name in ("smol", "smol-b")}
    with ThreadPoolExecutor(len(names)) as pool:
        replies = list(pool.map(lambda pair: httpx.post(f"{two.base_url}/v1/chat/completions",
                                                        json=_body(pair[1], pair[0]), timeout=180),
                                enumerate(names)))
    for reply in replies:
        assert reply.status_code == 200, reply.text
        jsonschema.validate(json.loads(reply.json()["choices"][0]["message"]["content"]), SCHEMA)
    assert {name: _admitted(two, name) - before[name] for name in before} == {"smol": 4, "smol-b": 4}


def test_a_model_loads_on_its_first_request(model, start_server):
    lazy = start_server({"ready": model, "lazy": lambda: constrain.load(max_batch=2)}, load_models_at_start=False)
    health = httpx.get(f"{lazy.base_url}/health").json()
    assert health["models"] == {"ready": "ready", "lazy": "not_loaded"}
    waiting = httpx.post(f"{lazy.base_url}/v1/chat/completions", json=_body("lazy"), timeout=30)
    assert waiting.status_code == 503 and waiting.json()["error"]["type"] == "model_not_ready"
    reply = httpx.post(f"{lazy.base_url}/v1/chat/completions", json=_body("lazy"), timeout=300,
                       headers={"x-wait-for-model": "true"})
    assert reply.status_code == 200, reply.text
    wait_until(lambda: httpx.get(f"{lazy.base_url}/health").json()["models"]["lazy"] == "ready", "the lazy model")


def test_model_options_of_serve():
    assert served_models(None) is None
    assert served_models(["/m/a.gguf"]) == "/m/a.gguf"
    assert served_models(["a=/m/a.gguf", "b=gemma-3-270m"]) == {"a": "/m/a.gguf", "b": "gemma-3-270m"}
    with pytest.raises(InvalidRequestError, match="NAME=PATH"):
        served_models(["a=/m/a.gguf", "/m/b.gguf"])
    with pytest.raises(InvalidRequestError, match="twice"):
        served_models(["a=/x", "a=/y"])
