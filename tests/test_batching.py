"""The batched decoding core, through the library: many requests in one forward pass.

Real model, real threads and asyncio tasks. What must hold: every answer is its own (each row
has its own constraint, sampler and stop rules) and valid; a request joins a running batch
and leaves it the step it ends; a caller that stops reading frees its row; greedy answers do
not depend on their neighbours beyond floating-point ties.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from constrain.errors import ConstrainError, InvalidRequestError
from tests.conftest import on_every_runtime

model = on_every_runtime()

pytestmark = pytest.mark.model

ENDLESS = {"type": "regex", "value": "[ab]{2000}"}
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}]


def _person(i: int) -> dict:
    """A schema of its own per request: a const that an answer given to another request would fail."""
    return {"type": "object", "properties": {
        "id": {"const": i}, "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["id", "name", "age"], "additionalProperties": False}


def mixed_request(i: int, *, max_tokens: int = 40) -> dict:
    """Request ``i`` of a fixed mix: JSON, regex, tool call, plain text; stream or not; some logprobs."""
    kind = i % 4
    fields: dict = {"max_tokens": max_tokens, "temperature": 0 if i % 3 else 0.8, "seed": i,
                    "stream": i % 2 == 1}
    if fields["stream"]:
        fields["stream_options"] = {"include_usage": True}
    if kind == 0:
        fields.update(messages=[{"role": "user", "content": f"Describe person number {i}."}],
                      response_format={"type": "json", "value": _person(i)})
    elif kind == 1:
        fields.update(messages=[{"role": "user", "content": f"Give a code for item {i}."}],
                      response_format={"type": "regex", "value": f"item-{i}-[0-9]{{3}}"})
    elif kind == 2:
        fields.update(messages=[{"role": "user", "content": "Weather in Paris?"}], tools=TOOLS,
                      tool_choice="required")
    else:
        fields.update(messages=[{"role": "user", "content": f"Say the number {i}."}], logprobs=True, top_logprobs=2)
    return fields


def collect(result) -> dict:
    """A ChatCompletion or a chunk stream -> content, tool calls, finish reason, usage, logprobs."""
    if hasattr(result, "choices"):
        choice = result.choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        entries = choice.logprobs.content if choice.logprobs else []
        return {"content": choice.message.content or "", "calls": calls, "finish": choice.finish_reason,
                "tokens": result.usage.completion_tokens, "logprobs": len(entries)}
    content, calls, finish, tokens, logprobs = "", {}, None, None, 0
    for chunk in result:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                name, args = calls.get(call.index, ("", ""))
                calls[call.index] = (name + (call.function.name or ""), args + (call.function.arguments or ""))
            if choice.logprobs and choice.logprobs.content:
                logprobs += len(choice.logprobs.content)
            finish = choice.finish_reason or finish
    return {"content": content, "calls": [calls[k] for k in sorted(calls)], "finish": finish, "tokens": tokens,
            "logprobs": logprobs}


def check(i: int, answer: dict) -> None:
    """Answer ``i`` is its own and valid."""
    kind = i % 4
    if kind == 0:
        if answer["finish"] == "stop":
            jsonschema.validate(json.loads(answer["content"]), _person(i))
        else:  # a budget cut: the closer still ended it as JSON, or it is a prefix of its own
            assert answer["content"].startswith(f'{{"id":{i},'), answer
    elif kind == 1:
        assert re.fullmatch(f"item-{i}-[0-9]{{0,3}}", answer["content"]), answer
        if answer["finish"] == "stop":
            assert re.fullmatch(f"item-{i}-[0-9]{{3}}", answer["content"])
    elif kind == 2:
        assert answer["finish"] in ("tool_calls", "length")
        if answer["finish"] == "tool_calls":
            name, arguments = answer["calls"][0]
            assert name == "get_weather"
            jsonschema.validate(json.loads(arguments), TOOLS[0]["function"]["parameters"])
    else:
        assert answer["finish"] in ("stop", "length")
        assert answer["logprobs"] == answer["tokens"]  # logprobs stay per request


def test_sixteen_concurrent_mixed_requests_from_threads(model):
    stats = model.core.stats
    steps_before, seen_together = stats.steps, []

    def watch() -> None:
        while not done.is_set():
            seen_together.append(model.core.snapshot()["running"])
            time.sleep(0.05)

    done = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def one(i: int) -> dict:
        return collect(model.chat_completion(**mixed_request(i)))

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(one, range(16)))
    done.set()
    watcher.join()
    for i, answer in enumerate(answers):
        check(i, answer)
    assert max(seen_together) >= 8  # they really ran side by side
    # Far fewer forward passes than tokens: one pass served many requests.
    tokens = sum(a["tokens"] for a in answers)
    assert stats.steps - steps_before < tokens / 3


def test_concurrent_asyncio_tasks_share_the_batch(model):
    async def main() -> list[dict]:
        async def one(i: int) -> dict:
            fields = mixed_request(i, max_tokens=24)
            result = await model.chat_completion_async(**fields)
            if fields["stream"]:
                chunks = [chunk async for chunk in result]
                return collect(chunks)
            return collect(result)

        return await asyncio.gather(*(one(i) for i in range(8)))

    for i, answer in enumerate(asyncio.run(main())):
        check(i, answer)


def test_a_request_joins_a_running_batch_and_leaves_when_done(model):
    long = model.prepare({"messages": [{"role": "user", "content": "Write a and b."}], "response_format": ENDLESS,
                          "max_tokens": 120, "temperature": 0})
    steps = iter(model.submit(long))
    next(steps), next(steps)  # the long one is generating
    short = model.chat_completion([{"role": "user", "content": "A date?"}],
                                  response_format={"type": "regex", "value": r"20\d\d-\d\d-\d\d"},
                                  max_tokens=12, temperature=0)
    # The short one finished while the long one still runs: it joined mid-batch, and left.
    assert not long.handle.finished
    assert re.fullmatch(r"20\d\d-\d\d-\d\d", short.choices[0].message.content)
    rest = list(steps)
    assert rest[-1].finish_reason == "length" and long.handle.stats.completion_tokens == 120


def test_a_caller_that_stops_reading_frees_its_row(model):
    stream = model.chat_completion([{"role": "user", "content": "Write a and b."}], response_format=ENDLESS,
                                   max_tokens=1000, temperature=0, stream=True)
    for n, _ in enumerate(stream):
        if n == 3:
            break
    stream.close()  # what a dropped iterator does when collected
    deadline = time.monotonic() + 60
    while model.core.snapshot()["running"]:
        assert time.monotonic() < deadline, "the row was not freed"
        time.sleep(0.05)
    assert model.core.snapshot() == {"waiting": 0, "running": 0, "max_batch": model.max_batch, "max_queue": None}


def test_greedy_answers_do_not_depend_on_their_neighbours(model):
    """50 mixed greedy requests, one at a time and then all in one batch: the share that is
    byte-identical (target >= 95%), and every one valid."""
    requests = []
    for i in range(50):
        fields = mixed_request(i, max_tokens=24)
        fields.update(temperature=0, stream=False)
        fields.pop("stream_options", None)
        requests.append(fields)
    alone = [collect(model.chat_completion(**fields)) for fields in requests]
    together = [collect(result) for result in model.batch(requests)]
    same = sum(a == b for a, b in zip(alone, together, strict=True))
    print(f"\n{same}/50 byte-identical alone vs batched")
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        check(i, a)
        check(i, b)
    assert same >= 48  # 95%


def test_batch_keeps_order_and_puts_errors_in_place(model):
    good = {"messages": [{"role": "user", "content": "A date?"}],
            "response_format": {"type": "regex", "value": r"20\d\d-\d\d-\d\d"}, "max_tokens": 12, "temperature": 0}
    bad_field = {**good, "temperature": 7}
    bad_schema = {**good, "response_format": {"type": "json", "value": {"type": "object", "minProperties": "x"}}}
    results = model.batch([good, bad_field, good, bad_schema, {**good, "stream": True}])
    assert [type(r).__name__ for r in results] == [
        "ChatCompletion", "InvalidRequestError", "ChatCompletion", "InvalidSchemaError", "InvalidRequestError"]
    assert results[1].param == "temperature" and results[4].param == "stream"
    assert results[0].choices[0].message.content == results[2].choices[0].message.content
    assert all(isinstance(r, ConstrainError) or re.fullmatch(r"20\d\d-\d\d-\d\d", r.choices[0].message.content)
               for r in results)


def test_max_queue_refuses_beyond_the_waiting_line(transformers_model):
    from constrain import Model

    model = transformers_model  # the queue is the core's: one runtime is enough
    single = Model(model.name, model.hf_model, model.tokenizer, max_batch=1)
    try:
        ask = {"messages": [{"role": "user", "content": "Write a and b."}], "response_format": ENDLESS,
               "max_tokens": 500}
        running = single.submit(single.prepare(ask), max_queue=1)
        waiting = single.submit(single.prepare(ask), max_queue=1)
        from constrain.errors import OverloadedError

        with pytest.raises(OverloadedError, match="max_queue=1"):
            single.submit(single.prepare(ask), max_queue=1)
        waiting.cancel()
        assert list(waiting)[-1].finish_reason == "length" and waiting.stats.completion_tokens == 0
        running.cancel()
        assert list(running)[-1].finish_reason == "length"
    finally:
        single.close()
    with pytest.raises(InvalidRequestError):
        model.chat_completion(messages="hi")
