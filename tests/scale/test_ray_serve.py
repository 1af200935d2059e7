"""``constrain serve --ray`` in Python: two replicas on a local Ray cluster, behind Ray Serve's proxy.

The real clients (``openai``, ``huggingface_hub``) run unchanged against the proxy: JSON, tools,
streaming; requests spread over both replicas (``x-constrain-replica`` says which served what);
then one replica is killed while requests run, and the deployment recovers.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from huggingface_hub import InferenceClient

from tests.scale.conftest import RUNTIME, free_port
from tests.server.test_clients import CITY, QUESTION, WEATHER_TOOL  # the same requests as against one server

pytestmark = [
    pytest.mark.model,
    # Ray Serve 2.60's own config models use a pydantic 1 idiom; not ours to fix.
    pytest.mark.filterwarnings("ignore:Using extra keyword arguments on `Field`:DeprecationWarning"),
]

KEY = "scale-test-key"
APP = "constrain-test"
# At least 200 sampled words in up to LONG_TOKENS tokens: long enough to be cut off by the kill on a
# fast machine, whatever the model would say.
LONG = {"type": "regex", "value": "[a-z]{1,8}( [a-z]{1,8}){200,240}"}
LONG_TOKENS = 480
TIMEOUT = 300.0  # a bound for a hung request on a busy 2-core machine, not a timing check


class Deployment:
    """The application as clients see it: base URL, key, and who served what."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.headers = {"authorization": f"Bearer {KEY}"}
        self.served: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def note(self, response: httpx.Response | Any) -> str:
        replica = str(response.headers.get("x-constrain-replica"))
        with self.lock:
            self.served[replica] += 1
        return replica

    def replicas(self) -> dict[str, int]:
        from ray import serve

        status = serve.status().applications[APP].deployments["ConstrainServer"]
        return {str(state): count for state, count in status.replica_states.items()}

    def wait_running(self, count: int, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = self.replicas()
            if states.get("RUNNING") == count and sum(states.values()) == count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the deployment did not get back to {count} running replicas: {states}")
            time.sleep(0.5)


@pytest.fixture(scope="module")
def app(ray_cluster: None) -> Iterator[Deployment]:
    from ray import serve

    from constrain.scale import ray_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    # max_batch 2: each replica takes two requests at once, so that a burst queues in Ray's router.
    serve.run(ray_app(None, replicas=2, runtime=RUNTIME, max_batch=2, api_keys=[KEY], max_tokens_limit=LONG_TOKENS,
                      cache_size=64, shutdown_grace_s=5),
              name=APP, route_prefix="/")
    deployment = Deployment(port)
    try:
        yield deployment
    finally:
        print(f"\nrequests served per replica: {dict(deployment.served)}")
        serve.delete(APP)
        serve.shutdown()


@pytest.fixture(scope="module")
def oai(app: Deployment) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{app.base_url}/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def hf(app: Deployment) -> InferenceClient:
    return InferenceClient(base_url=app.base_url, api_key=KEY, timeout=TIMEOUT)


# --------------------------------------------------------------------------- the same routes


def test_routes_through_the_proxy(app: Deployment) -> None:
    health = httpx.get(f"{app.base_url}/health", timeout=TIMEOUT)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    assert health.json()["queue"]["max_batch"] == 2
    assert app.note(health)
    models = httpx.get(f"{app.base_url}/v1/models", headers=app.headers, timeout=TIMEOUT)
    assert models.status_code == 200 and models.json()["data"][0]["id"] == "SmolLM2-135M-Instruct"
    page = httpx.get(f"{app.base_url}/", timeout=TIMEOUT)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert "content-security-policy" in page.headers


def test_options_reach_every_replica(app: Deployment) -> None:
    """Keys and limits are the replicas' own (the app ``serve`` builds), whichever answers."""
    for _ in range(4):
        refused = httpx.post(f"{app.base_url}/v1/chat/completions", json={"messages": QUESTION}, timeout=TIMEOUT)
        assert refused.status_code == 401 and app.note(refused)
        too_long = httpx.post(f"{app.base_url}/v1/chat/completions", headers=app.headers, timeout=TIMEOUT,
                              json={"messages": QUESTION, "max_tokens": LONG_TOKENS + 1})
        assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "max_tokens"


def test_openai_json_and_stream(app: Deployment, oai: openai.OpenAI) -> None:
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
    raw = oai.chat.completions.with_raw_response.create(model="any", messages=QUESTION, response_format=fmt,
                                                        max_tokens=24, temperature=0)
    app.note(raw)
    whole = raw.parse()
    jsonschema.validate(json.loads(whole.choices[0].message.content or ""), CITY)

    raw_stream = oai.chat.completions.with_raw_response.create(
        model="any", messages=QUESTION, response_format=fmt, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-use-cache": "false"})
    app.note(raw_stream)
    chunks = list(raw_stream.parse())
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content  # the same greedy answer, whichever replica
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_openai_tools_streamed(app: Deployment, oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="any", messages=[{"role": "user", "content": "What is the weather in Paris right now?"}],
        tools=[WEATHER_TOOL], tool_choice="required", max_tokens=40, temperature=0, stream=True)  # type: ignore[list-item]
    app.note(raw)
    arguments, name, finish = "", None, None
    for chunk in raw.parse():
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            name = name or (delta.function.name if delta.function else None)
            arguments += (delta.function.arguments or "") if delta.function else ""
    assert finish == "tool_calls" and name == "get_weather"
    jsonschema.validate(json.loads(arguments), WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]


def test_inference_client_json_tools_stream(hf: InferenceClient) -> None:
    out = hf.chat_completion(messages=QUESTION, response_format={"type": "json", "value": CITY},  # type: ignore[arg-type]
                             max_tokens=24, temperature=0)
    jsonschema.validate(json.loads(out.choices[0].message.content or ""), CITY)
    called = hf.chat_completion(messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                tool_choice="required", max_tokens=40, temperature=0)
    assert called.choices[0].finish_reason == "tool_calls"
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(str(call.function.arguments)), WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]
    pieces = [m.choices[0].delta.content or "" for m in hf.chat_completion(
        messages=QUESTION, max_tokens=12, temperature=0, stream=True)]
    whole = hf.chat_completion(messages=QUESTION, max_tokens=12, temperature=0)
    assert "".join(pieces) == whole.choices[0].message.content


def test_requests_spread_over_both_replicas(app: Deployment, oai: openai.OpenAI) -> None:
    """Eight requests at once, two places per replica: both replicas answer."""

    def ask(i: int) -> str:
        raw = oai.chat.completions.with_raw_response.create(
            model="any", messages=[{"role": "user", "content": f"Name a colour, number {i}."}],
            max_tokens=8, temperature=0, extra_headers={"x-use-cache": "false"})
        assert raw.parse().choices[0].message.content
        return app.note(raw)

    with ThreadPoolExecutor(8) as pool:
        served = collections.Counter(pool.map(ask, range(8)))
    print(f"\n8 concurrent requests, per replica: {dict(served)}")
    assert len(served) == 2, served


# --------------------------------------------------------------------------- a replica dies


def _stream(app: Deployment, prompt: str, started: threading.Event, seen: dict[str, str]) -> dict[str, Any]:
    """One streamed request; what came back: status, replica, events, and how it ended."""
    body = {"messages": [{"role": "user", "content": prompt}], "response_format": LONG, "max_tokens": LONG_TOKENS,
            "temperature": 0.8, "seed": 1, "stream": True}
    result: dict[str, Any] = {"events": []}
    try:
        with httpx.stream("POST", f"{app.base_url}/v1/chat/completions", json=body, headers=app.headers,
                          timeout=TIMEOUT) as response:
            result["status"] = response.status_code
            result["replica"] = seen[prompt] = app.note(response)
            for line in response.iter_lines():
                if line.startswith("data: "):
                    result["events"].append(line[6:])
                    started.set()
    except httpx.HTTPError as exc:
        result["broken"] = repr(exc)
    finally:
        started.set()  # also when it failed at once: the test then sees why instead of waiting
    return result


def test_a_killed_replica_fails_its_requests_cleanly_and_is_replaced(app: Deployment) -> None:
    """Four long streams fill both replicas (two places each); four short requests then wait in
    Ray's router. One replica is killed: its two streams end at once with an error event, the
    waiting requests are answered by the other replica, and the deployment gets back to two
    replicas, which both serve again."""
    import ray

    app.wait_running(2)
    seen: dict[str, str] = {}
    started = [threading.Event() for _ in range(4)]
    prompts = [f"Tell story number {i}." for i in range(4)]
    with ThreadPoolExecutor(8) as pool:
        long_runs = [pool.submit(_stream, app, prompts[i], started[i], seen) for i in range(4)]
        for event in started:
            assert event.wait(TIMEOUT), "the long streams did not start"
        assert not any(run.done() for run in long_runs), [run.result() for run in long_runs if run.done()]
        assert sorted(collections.Counter(seen.values()).values()) == [2, 2], f"two streams per replica: {seen}"

        def short(i: int) -> tuple[int, str, str]:
            response = httpx.post(f"{app.base_url}/v1/chat/completions", headers=app.headers, timeout=TIMEOUT,
                                  json={"messages": [{"role": "user", "content": f"A fruit, number {i}?"}],
                                        "max_tokens": 6, "temperature": 0, "stream": i % 2 == 1})
            return response.status_code, app.note(response), response.text

        waiting = [pool.submit(short, i) for i in range(4)]  # no room anywhere: they wait in the router
        time.sleep(0.5)
        victim = seen[prompts[0]]
        actor = next(a for a in ray.util.list_named_actors(all_namespaces=True)
                     if a["name"].startswith("SERVE_REPLICA::") and a["name"].endswith(f"#{victim}"))
        killed_at = time.monotonic()
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)

        for prompt, run in zip(prompts, long_runs, strict=True):
            result = run.result(timeout=TIMEOUT)
            assert result["status"] == 200 and "broken" not in result, result
            if seen[prompt] == victim:  # cut off: one error event (constrain.scale.proxy), no [DONE], no hang
                print(f"\nkilled replica {victim}; its stream ended {time.monotonic() - killed_at:.1f} s after "
                      f"the kill with: {result['events'][-1][:120]}...")
                assert "[DONE]" not in result["events"]
                assert json.loads(result["events"][-1])["error"]["type"] == "replica_unavailable"
            else:
                assert result["events"][-1] == "[DONE]"
        answers = [future.result(timeout=TIMEOUT) for future in waiting]
    print(f"waiting requests answered by: {[replica for _, replica, _ in answers]}")
    for status, replica, text in answers:
        assert status == 200 and replica != victim and '"error"' not in text, (status, replica, text[-300:])

    app.wait_running(2)

    def tree(i: int) -> str:
        response = httpx.post(f"{app.base_url}/v1/chat/completions", headers={**app.headers, "x-use-cache": "false"},
                              json={"messages": [{"role": "user", "content": f"A tree, number {i}?"}],
                                    "max_tokens": 6, "temperature": 0}, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        return app.note(response)

    # The proxies learn of the new replica shortly after Ray reports it running: ask until both answer.
    after: collections.Counter[str] = collections.Counter()
    deadline = time.monotonic() + 120
    with ThreadPoolExecutor(6) as pool:
        while len(after) < 2 and time.monotonic() < deadline:
            after.update(pool.map(tree, range(6)))
    print(f"after recovery, per replica: {dict(after)}")
    assert victim not in after and len(after) == 2, after
