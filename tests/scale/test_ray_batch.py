"""``constrain batch --ray``: the batch job on a pool of Ray Data model actors equals the local job.

A few hundred greedy requests (JSON Schema, regex, tools, plain text) plus lines the job must
refuse; the Ray output matches the local output line for line (same answers, same errors), comes
in input order, and a job cut short resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.scale.conftest import RUNTIME, THREADS

pytestmark = [
    pytest.mark.model,
    # Ray Data 2.60 reads its own deprecated settings when it copies its context; not ours to fix.
    pytest.mark.filterwarnings("ignore:`use_:DeprecationWarning"),
]

N = int(os.environ.get("CONSTRAIN_RAY_BATCH_N", "240"))  # "a few hundred"; greedy, a few tokens each
SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12},
                                           "size": {"type": "integer", "minimum": 1, "maximum": 9}},
          "required": ["colour", "size"], "additionalProperties": False}
TOOL = {"type": "function", "function": {"name": "lookup", "description": "Look a word up",
                                         "parameters": {"type": "object", "properties": {
                                             "word": {"type": "string", "maxLength": 12}}, "required": ["word"]}}}


def _body(i: int) -> dict[str, Any]:
    kind = i % 4
    body: dict[str, Any] = {"messages": [{"role": "user", "content": f"Item {i}: a colour and a size?"}],
                            "max_tokens": 12, "temperature": 0}
    if kind == 0:
        body["response_format"] = {"type": "json", "value": SCHEMA}
    elif kind == 1:
        body["response_format"] = {"type": "regex", "value": r"(red|green|blue) [1-9]"}
    elif kind == 2:
        body.update(tools=[TOOL], tool_choice="required", max_tokens=32)
    else:
        body["max_tokens"] = 8
    return body


def _write_input(path: Path) -> int:
    lines = [json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": _body(i)})
             for i in range(N)]
    lines.insert(7, "{not json")
    lines.insert(20, json.dumps({"custom_id": "bad-temperature", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {**_body(3), "temperature": 9}}))
    lines.insert(33, json.dumps({"custom_id": "r5", "body": _body(5)}))  # a repeated custom_id
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def _comparable(record: dict[str, Any]) -> Any:
    """What must be equal: the answer (not its fresh ids and timestamps) or the error."""
    response = record["response"]
    if response is None:
        return {"custom_id": record["custom_id"], "line": record.get("line"), "error": record["error"]}
    body = response["body"]
    if response["status_code"] == 200:
        choices = json.loads(json.dumps(body["choices"]))
        for choice in choices:
            for call in choice["message"].get("tool_calls") or []:
                call.pop("id")  # a fresh call_... id per answer
        body = {"choices": choices, "usage": body["usage"], "model": body["model"]}
    return {"custom_id": record["custom_id"], "status": response["status_code"], "body": body}


def _input_order(path: Path) -> list[str | int]:
    """Each input line's custom_id, or its line number where it has none (or repeats one)."""
    order: list[str | int] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        try:
            custom_id = json.loads(raw).get("custom_id")
        except json.JSONDecodeError:
            custom_id = None
        order.append(number if custom_id is None or custom_id in order else custom_id)
    return order


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def requests_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("ray-batch") / "requests.jsonl"
    return path, _write_input(path)


@pytest.fixture(scope="module")
def local_output(requests_file: tuple[Path, int]) -> list[dict[str, Any]]:
    import constrain
    from constrain.batch import run_file

    path, _ = requests_file
    out = path.with_name("local.jsonl")
    model = constrain.load(runtime=RUNTIME, max_batch=16, threads=THREADS)  # as each actor loads it
    try:
        started = time.perf_counter()
        summary = run_file(model, path, out, progress=False)
        print(f"\nlocal batch job: {summary.succeeded + summary.failed} lines in {time.perf_counter() - started:.1f} s")
    finally:
        model.close()
    return _read(out)


def test_ray_batch_equals_local_batch(ray_cluster: None, requests_file: tuple[Path, int],
                                      local_output: list[dict[str, Any]]) -> None:
    from constrain.scale import run_file_ray

    path, total = requests_file
    out = path.with_name("ray.jsonl")
    started = time.perf_counter()
    summary = run_file_ray(path, out, actors=2, runtime=RUNTIME, max_batch=16, progress=False)
    print(f"\nray batch job (2 actors): {summary.succeeded + summary.failed} lines in "
          f"{time.perf_counter() - started:.1f} s")
    records = _read(out)
    assert summary.total == total and summary.skipped == 0
    assert len(records) == total == len(local_output)
    # Input order: the answers in the order of the file, bad lines in their places.
    assert [r["custom_id"] or r["line"] for r in records] == _input_order(path)
    local = sorted(json.dumps(_comparable(r), sort_keys=True) for r in local_output)
    ours = sorted(json.dumps(_comparable(r), sort_keys=True) for r in records)
    differ = [a for a, b in zip(ours, local, strict=True) if a != b]
    assert not differ, f"{len(differ)} of {total} lines differ from the local job, e.g. {differ[:2]}"
    assert summary.failed == sum(1 for r in records if r["response"] is None or r["response"]["status_code"] != 200)
    errors = {r["custom_id"]: r for r in records if r["response"] is None or r["response"]["status_code"] != 200}
    assert errors["bad-temperature"]["response"]["body"]["error"]["param"] == "temperature"
    assert sum(1 for r in records if r["error"] and r["error"]["code"] == "invalid_line") == 2


def test_ray_batch_resumes(ray_cluster: None, requests_file: tuple[Path, int],
                           local_output: list[dict[str, Any]]) -> None:
    """An output holding a prefix of the answers and a half-written line: the rest is done, once."""
    from constrain.scale import run_file_ray

    path, total = requests_file
    out = path.with_name("resumed.jsonl")
    done = local_output[: total - 30]
    out.write_text("".join(json.dumps(r) + "\n" for r in done) + json.dumps(local_output[total - 30])[:40])
    summary = run_file_ray(path, out, actors=2, runtime=RUNTIME, max_batch=16, progress=False)
    records = _read(out)
    assert summary.skipped == total - 30 and summary.succeeded + summary.failed == 30
    assert len(records) == total
    assert sorted(json.dumps(_comparable(r), sort_keys=True) for r in records) == \
        sorted(json.dumps(_comparable(r), sort_keys=True) for r in local_output)
