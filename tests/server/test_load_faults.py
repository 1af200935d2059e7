"""Load and faults at CI size: 64 streaming clients at once, some leaving mid-stream, some
reading slowly, some sending bodies that are too large; no 5xx, no answer sent to the wrong
client, and every sequence released afterwards (the /health counters back to zero)."""

from __future__ import annotations

import json
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema

from tests.server.conftest import wait_until


def _schema(i: int) -> dict:
    """Client i's own schema: its number is a const, so an answer sent elsewhere fails it."""
    return {"type": "object", "properties": {"client": {"const": i}, "word": {"type": "string", "maxLength": 12}},
            "required": ["client", "word"], "additionalProperties": False}


def _body(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"Client {i}: a word."}], "max_tokens": 24,
            "temperature": 0.7, "seed": i, "stream": True,
            "response_format": {"type": "json", "value": _schema(i)}}


def _client(base_url: str, i: int, behaviour: str) -> tuple[str, int, str]:
    """One client; returns (behaviour, status, streamed text)."""
    url = f"{base_url}/v1/chat/completions"
    if behaviour == "too large":
        reply = httpx.post(url, content=b"{" + b" " * (2 * 1024 * 1024) + b"}", timeout=60,
                           headers={"content-type": "application/json"})
        return behaviour, reply.status_code, ""
    text: list[str] = []
    with httpx.stream("POST", url, json=_body(i), timeout=120, headers={"x-use-cache": "false"}) as reply:
        if reply.status_code != 200:
            reply.read()
            return behaviour, reply.status_code, reply.text
        for n, line in enumerate(reply.iter_lines()):
            if behaviour == "leave" and n >= 2:
                break  # closes the connection mid-stream
            if behaviour == "slow":
                time.sleep(0.05)
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                assert "error" not in event, event
                for choice in event["choices"]:
                    text.append(choice["delta"].get("content") or "")
    return behaviour, 200, "".join(text)


def test_sixty_four_clients_with_faults(model, start_server):
    server = start_server(model, max_request_bytes=1024 * 1024, max_queue=128, cache_size=0)
    rng = random.Random(0)
    behaviours = [rng.choice(["read", "read", "leave", "slow"]) for _ in range(64)]
    behaviours[::16] = ["too large"] * 4
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda i: _client(server.base_url, i, behaviours[i]), range(64)))
    for i, (behaviour, status, text) in enumerate(results):
        if behaviour == "too large":
            assert status == 413, (i, status)
            continue
        assert status == 200, (i, status, text[:300])
        if behaviour in ("read", "slow"):
            jsonschema.validate(json.loads(text), _schema(i))  # complete, valid, and this client's own
    core = server.state.holder.model.core
    wait_until(lambda: core.snapshot()["running"] == 0 and core.snapshot()["waiting"] == 0,
               "every sequence to be released")
    health = httpx.get(f"{server.base_url}/health", timeout=10).json()
    assert health["queue"]["running"] == 0 and health["queue"]["waiting"] == 0
    counts = health["generations"]
    assert counts["error"] == 0
    assert counts["done"] + counts["stopped"] + counts["skipped"] == 60


def test_a_body_that_never_finishes_gets_408(model, start_server):
    server = start_server(model, body_timeout_s=1.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"messages\": [")
        reply = conn.recv(65536).decode("latin-1")  # the rest of the body never comes
    assert reply.startswith("HTTP/1.1 408"), reply[:200]
    assert '"param":"body"' in reply
