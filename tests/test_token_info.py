"""The ``token_info`` extension: per output token, what chose it; absent unless asked for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from constrain.errors import InvalidRequestError
from constrain.server import create_app
from tests.server.conftest import ServerThread

pytestmark = pytest.mark.model

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
ASK = [{"role": "user", "content": "Describe a person."}]


def test_off_by_default_and_byte_identical(model: Any) -> None:
    out = model.chat_completion(ASK, max_tokens=6, temperature=0)
    assert out.choices[0].token_info is None
    assert "token_info" not in out.model_dump_json()
    for chunk in model.chat_completion(ASK, max_tokens=6, temperature=0, stream=True):
        assert "token_info" not in chunk.model_dump_json()


def test_marks_forced_and_sampled_tokens(model: Any) -> None:
    out = model.chat_completion(ASK, response_format={"type": "json", "value": PERSON}, max_tokens=40,
                                temperature=0, token_info=True)
    choice = out.choices[0]
    infos = choice.token_info
    assert infos is not None and len(infos) == out.usage.completion_tokens
    assert "".join(t.text for t in infos) == choice.message.content
    assert infos[0].how == "forced" and infos[0].text == '{"'
    assert {"forced", "sampled"} <= {t.how for t in infos}
    for t in infos:
        if t.how == "forced":
            assert t.logprob == 0.0  # the only token allowed: probability 1 in the distribution sampled from
        else:
            # Up to 5: fewer where the constraint allows fewer tokens.
            assert 1 <= len(t.top) <= 5 and t.top[0].logprob >= t.top[-1].logprob
        assert all(a.logprob > float("-inf") for a in t.top)  # forbidden tokens are no alternatives
    # logprobs were computed for the view, but the response only carries them when asked.
    assert choice.logprobs is None


def test_budget_closer_steered_tokens(model: Any) -> None:
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    out = model.chat_completion([{"role": "user", "content": "Tell a long story."}],
                                response_format={"type": "json", "value": schema}, max_tokens=16, temperature=0,
                                token_info=True)
    infos = out.choices[0].token_info
    assert infos is not None and any(t.how == "closer" for t in infos)
    assert out.choices[0].finish_reason == "length"
    json.loads(out.choices[0].message.content or "")


def test_streamed_token_info_matches_the_answer(model: Any) -> None:
    kwargs: dict[str, Any] = dict(response_format={"type": "json", "value": PERSON}, max_tokens=16, temperature=0,
                                  token_info=True)
    whole = model.chat_completion(ASK, **kwargs).choices[0].token_info
    chunks = list(model.chat_completion(ASK, stream=True, **kwargs))
    streamed = [t for c in chunks for choice in c.choices for t in (choice.token_info or [])]
    assert [t.model_dump() for t in streamed] == [t.model_dump() for t in whole]
    # With the request's own logprobs, both are there and agree.
    out = model.chat_completion(ASK, logprobs=True, top_logprobs=2, **kwargs).choices[0]
    assert out.logprobs is not None and out.token_info is not None
    assert [e.logprob for e in out.logprobs.content or []] == [t.logprob for t in out.token_info]
    assert all(len(t.top) <= 2 for t in out.token_info)


def test_must_be_a_boolean(model: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        model.chat_completion(ASK, max_tokens=2, token_info="yes please")
    assert info.value.param == "token_info"


@pytest.fixture(scope="module")
def server(model: Any) -> Iterator[ServerThread]:
    thread = ServerThread(create_app(model)).start()
    yield thread
    thread.stop()


def test_over_http(server: ServerThread) -> None:
    url = server.base_url + "/v1/chat/completions"
    body = {"messages": ASK, "response_format": {"type": "json", "value": PERSON}, "max_tokens": 12, "temperature": 0}
    plain = httpx.post(url, json=body, timeout=120)
    assert "token_info" not in plain.text
    viewed = httpx.post(url, json={**body, "token_info": True}, timeout=120)
    assert viewed.headers["x-cache"] == "miss"  # another request than the plain one
    choice = viewed.json()["choices"][0]
    assert choice["message"]["content"] == plain.json()["choices"][0]["message"]["content"]
    assert [t["how"] for t in choice["token_info"]][:2] == ["forced", "forced"]
    assert set(choice["token_info"][0]) == {"id", "text", "logprob", "how", "top"}
    events = []
    with httpx.stream("POST", url, json={**body, "token_info": True, "stream": True}, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    streamed = [t for e in events for c in e["choices"] for t in c.get("token_info", [])]
    assert streamed == choice["token_info"]
    assert all("token_info" not in c or c["token_info"] for e in events for c in e["choices"])
