"""``constrain batch``: an OpenAI Batch file with good and bad lines, killed mid-way and resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

pytestmark = pytest.mark.model

CONSTRAIN = str(Path(sys.executable).with_name("constrain"))
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                           "rank": {"type": "integer", "minimum": 1, "maximum": 9}},
          "required": ["city", "rank"], "additionalProperties": False}


def _good(i: int) -> dict:
    if i % 2:
        body = {"messages": [{"role": "user", "content": f"City number {i}?"}],
                "response_format": {"type": "json", "value": SCHEMA}}
    else:
        body = {"messages": [{"role": "user", "content": "A date?"}],
                "response_format": {"type": "regex", "value": r"20\d\d-\d\d-\d\d"}}
    body.update(max_tokens=24, temperature=0.7, seed=i)
    return {"custom_id": f"good-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def _input(path: Path) -> dict[str, str]:
    """24 good requests and 5 bad lines; returns what each custom_id should get."""
    lines = [json.dumps(_good(i)) for i in range(24)]
    expect = {f"good-{i}": "ok" for i in range(24)}
    bad = [
        ({"custom_id": "bad-temperature", "method": "POST", "url": "/v1/chat/completions",
          "body": {**_good(0)["body"], "temperature": 9}}, "temperature"),
        ({"custom_id": "bad-schema", "method": "POST", "url": "/v1/chat/completions",
          "body": {**_good(1)["body"], "response_format": {"type": "json", "value": {"type": "nope"}}}},
         "response_format.value.type"),
        ({"custom_id": "bad-url", "method": "POST", "url": "/v1/embeddings", "body": {}}, "invalid_line"),
    ]
    for record, what in bad:
        lines.insert(5, json.dumps(record))
        expect[record["custom_id"]] = what
    lines.insert(9, "{this is not json")
    lines.insert(12, json.dumps({"custom_id": "good-3", "method": "POST", "url": "/v1/chat/completions",
                                 "body": _good(3)["body"]}))  # a duplicate custom_id
    path.write_text("\n".join(lines) + "\n")
    return expect


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_batch_file_with_bad_lines_resumes_after_a_kill(tmp_path):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    expect = _input(source)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [CONSTRAIN, "batch", str(source), "-o", str(target), "--no-progress", "--max-batch", "8"]
    first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (target.is_file() and len(target.read_text().splitlines()) >= 10):
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
        assert time.monotonic() < deadline, "the job wrote nothing"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # no clean-up: a line may be cut in half
    first.wait()
    with target.open("a") as fh:
        fh.write('{"id": "batch_req_cut", "custom_id": "go')  # as a kill mid-write leaves it
    done_before = _records_tolerant(target)
    assert 10 <= len(done_before) < len(expect) + 2  # +2: two lines have no usable custom_id

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "already in" in second.stderr
    records = _records(target)  # every line is whole JSON again
    by_id: dict = {}
    for record in records:
        by_id.setdefault(record["custom_id"], []).append(record)
    assert set(by_id) - {None} == set(expect)
    assert all(len(v) == 1 for k, v in by_id.items() if k is not None)  # nothing answered twice
    for custom_id, what in expect.items():
        record = by_id[custom_id][0]
        assert record["id"].startswith("batch_req_")
        if what == "ok":
            response = record["response"]
            assert response["status_code"] == 200 and record["error"] is None
            message = response["body"]["choices"][0]["message"]
            finish = response["body"]["choices"][0]["finish_reason"]
            if int(custom_id.split("-")[1]) % 2:
                if finish == "stop":
                    jsonschema.validate(json.loads(message["content"]), SCHEMA)
            else:
                assert re.fullmatch(r"20\d\d-\d\d-\d\d", message["content"]) or finish == "length"
        elif what == "invalid_line":
            assert record["response"] is None and record["error"]["code"] == "invalid_line"
        else:
            assert record["response"]["status_code"] == 400
            assert record["response"]["body"]["error"]["param"] == what
    # The lines with no usable custom_id: the one that is not JSON and the duplicate.
    anonymous = by_id[None]
    assert len(anonymous) == 2
    assert {r["error"]["code"] for r in anonymous} == {"invalid_line"}
    assert any("duplicate" in r["error"]["message"] for r in anonymous)

    # Run again: nothing left to do.
    third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and " 0 answered, 0 errors" in third.stderr
    assert len(_records(target)) == len(records)


def _records_tolerant(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_batch_cli_errors_are_one_line(tmp_path):
    missing = subprocess.run([CONSTRAIN, "batch", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.jsonl")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("constrain: error [input]:") and "does not exist" in missing.stderr


def test_a_bug_on_one_line_is_a_500_on_that_line_and_the_job_goes_on(model, tmp_path, monkeypatch, caplog):
    from constrain.batch import run_file

    real = model.answer_async

    async def answer(body, **options):
        if body["messages"][0]["content"] == "boom":
            raise RuntimeError("a bug")
        return await real(body, **options)

    monkeypatch.setattr(model, "answer_async", answer)
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [{"custom_id": name, "method": "POST", "url": "/v1/chat/completions",
              "body": {"messages": [{"role": "user", "content": name}], "max_tokens": 4}} for name in ("a", "boom", "c")]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = run_file(model, source, target, progress=False)
    assert (summary.succeeded, summary.failed) == (2, 1)
    by_id = {record["custom_id"]: record["response"] for record in _records(target)}
    assert by_id["a"]["status_code"] == by_id["c"]["status_code"] == 200
    assert by_id["boom"]["status_code"] == 500
    assert by_id["boom"]["body"]["error"] == {"message": "RuntimeError: a bug", "type": "internal_error",
                                              "param": None, "code": None}
    assert "batch request boom (line 2) failed" in caplog.text
