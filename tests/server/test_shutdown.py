"""SIGTERM on a real `constrain serve`: streams in flight finish within the grace period or end with a
clean error event, new requests get 503 meanwhile, and the process exits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.server.conftest import wait_until
from tests.server.test_auth_loading import _free_port

GRACE_S = 20.0  # ample for the short stream on a loaded machine; the long one still outlasts it
LONG_TOKENS = 8000  # nearly the model's whole context (8,192): 400 tokens/s would be needed to end within GRACE_S


class _Stream(threading.Thread):
    """One streamed request read to its end: its text, its error event, whether [DONE] came."""

    def __init__(self, base: str, pattern: str, max_tokens: int) -> None:
        super().__init__(daemon=True)
        self.body = {"messages": [{"role": "user", "content": "Letters please."}], "stream": True,
                     "max_tokens": max_tokens, "temperature": 0,
                     "response_format": {"type": "regex", "value": pattern}}
        self.url = f"{base}/v1/chat/completions"
        self.started = threading.Event()
        self.text: list[str] = []
        self.error: dict | None = None
        self.done = False
        self.ended_at: float | None = None
        self.status: int | None = None

    def run(self) -> None:
        with httpx.stream("POST", self.url, json=self.body, timeout=120, headers={"x-use-cache": "false"}) as reply:
            self.status = reply.status_code
            for line in reply.iter_lines():
                if line == "data: [DONE]":
                    self.done = True
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    if "error" in event:
                        self.error = event["error"]
                        continue
                    self.text.append(event["choices"][0]["delta"].get("content") or "")
                    if "".join(self.text):
                        self.started.set()
        self.ended_at = time.monotonic()
        self.started.set()


def test_sigterm_drains_then_exits(tmp_path: Path):
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "constrain.cli", "serve", "--port", str(port), "--shutdown-grace", str(GRACE_S),
             "--max-tokens-limit", str(LONG_TOKENS)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base}/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, "`constrain serve` to load its model", timeout=180)
        # a few seconds on either runtime: still running once both have begun, done within the grace period
        short = _Stream(base, "[a-z]{300}", 320)
        # A regex no answer of LONG_TOKENS tokens can complete: the stream ends only at its token limit,
        # which takes minutes even on a fast machine, so it is still running when the grace period ends.
        long = _Stream(base, "[a-z]{40000}", LONG_TOKENS)
        for stream in (short, long):
            stream.start()
        for stream in (short, long):
            assert stream.started.wait(120), log_path.read_text()
        assert short.ended_at is None, "the short stream finished before SIGTERM; make it longer"

        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        refused = httpx.post(f"{base}/v1/chat/completions", timeout=30,
                             json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        health = httpx.get(f"{base}/health", timeout=30)

        proc.wait(timeout=GRACE_S + 30)
        exited = time.monotonic() - signalled
        for stream in (short, long):
            stream.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["type"] == "shutting_down"
    assert refused.headers["connection"] == "close"
    assert health.status_code == 503 and health.json()["status"] == "draining", health.text
    assert health.json()["in_flight"] == 2

    assert short.status == 200 and short.done and short.error is None
    assert re.fullmatch("[a-z]{300}", "".join(short.text))

    assert long.status == 200 and not long.done
    assert long.error is not None and long.error["type"] == "shutting_down", long.error
    assert long.ended_at is not None and long.ended_at - signalled >= GRACE_S - 0.5
    assert re.fullmatch("[a-z]+", "".join(long.text))  # what was sent before the end is kept as it was

    assert exited < GRACE_S + 15, f"exited {exited:.1f} s after SIGTERM"
    assert proc.returncode in (0, -signal.SIGTERM), log_path.read_text()
