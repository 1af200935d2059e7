"""Load and faults at full size against a real ``constrain serve``, then a SIGTERM drain.

64 clients (threads) send ``--requests`` mixed requests between them: streamed and plain JSON
answers whose schema carries the client's own number (an answer sent to the wrong client
fails it; the request's number is in the prompt, so prompts differ), tool calls, cached repeats, and faults: clients that leave mid-stream or read
slowly, bodies that are too large, bodies that never finish, malformed JSON, hostile schemas.
Checked: no 5xx, every complete answer valid and the client's own, every sequence released
(``/health`` counters back to zero), and the server's resident memory after all requests
within 10% of what it was after the first ``--early``. Last, with streams in flight, SIGTERM:
new requests get 503 and in-flight streams finish or end with an error event within the grace.

    .venv/bin/python benchmarks/soak.py --requests 2000 --clients 64
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.hostile_schemas import HOSTILE  # noqa: E402

MIX = {"stream": 30, "json": 18, "tools": 10, "cached": 6, "leave": 10, "slow": 5, "too large": 4,
       "stalled body": 2, "malformed": 5, "hostile": 10}
HOSTILE_NAMES = ["10000 properties", "100000-value enum", "objects nested 1000 deep", "$ref cycle",
                 "integers beyond 64 bits", "500 patternProperties", "1000-branch anyOf", "huge repetition"]


def own_schema(i: int) -> dict[str, Any]:
    return {"type": "object", "properties": {"client": {"const": i}, "word": {"type": "string", "maxLength": 12}},
            "required": ["client", "word"], "additionalProperties": False}


def chat(i: int, client: int, **extra: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": f"Request {i}: a word."}], "max_tokens": 24,
            "temperature": 0.7, "seed": i, "response_format": {"type": "json", "value": own_schema(client)}}
    body.update(extra)
    return body


def cache_bytes(base: str) -> int:
    """What the runtime's bounded caches and buffers hold (``/health``'s decode memory)."""
    decode = httpx.get(f"{base}/health", timeout=30).json()["decode"]
    return int(decode.get("prefix_cache_bytes", 0)) + int(decode.get("kv_buffer_bytes", 0))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class Client:
    """Sends request i as behaviour b; returns (ok, status, note)."""

    def __init__(self, base: str, port: int, number: int) -> None:
        self.number = number  # the const in this client's schema
        self.base = base
        self.port = port
        self.url = f"{base}/v1/chat/completions"
        self.http = httpx.Client(timeout=1800)  # 64 clients on 2 cores wait minutes for a place

    def stream(self, body: dict[str, Any], leave_after: int | None = None, delay: float = 0.0) -> tuple[int, str]:
        text: list[str] = []
        with self.http.stream("POST", self.url, json=body, headers={"x-use-cache": "false"}) as reply:
            if reply.status_code != 200:
                reply.read()
                return reply.status_code, reply.text
            for n, line in enumerate(reply.iter_lines()):
                if leave_after is not None and n >= leave_after:
                    return 200, ""
                if delay:
                    time.sleep(delay)
                if line.startswith("data: ") and line != "data: [DONE]":
                    event = json.loads(line[6:])
                    if "error" in event:
                        return 200, "ERROR " + json.dumps(event)
                    text.append(event["choices"][0]["delta"].get("content") or "")
        return 200, "".join(text)

    def send(self, i: int, behaviour: str) -> tuple[bool, int, str]:
        if behaviour in ("stream", "slow"):
            status, text = self.stream(chat(i, self.number, stream=True), delay=0.05 if behaviour == "slow" else 0.0)
            return status == 200 and self.valid(text, self.number), status, text[:200]
        if behaviour == "leave":
            status, text = self.stream(chat(i, self.number, stream=True), leave_after=2)
            return status == 200, status, text[:200]
        if behaviour == "json":
            reply = self.http.post(self.url, json=chat(i, self.number), headers={"x-use-cache": "false"})
            ok = reply.status_code == 200 and self.valid(reply.json()["choices"][0]["message"]["content"], self.number)
            return ok, reply.status_code, reply.text[:200]
        if behaviour == "cached":
            reply = self.http.post(self.url, json=chat(7, 7, temperature=0, seed=None))
            ok = reply.status_code == 200 and self.valid(reply.json()["choices"][0]["message"]["content"], 7)
            return ok, reply.status_code, reply.headers.get("x-cache", "")
        if behaviour == "tools":
            tool = {"type": "function", "function": {"name": "record", "parameters": own_schema(self.number)}}
            body = {**chat(i, self.number), "tools": [tool], "tool_choice": "required"}
            del body["response_format"]
            reply = self.http.post(self.url, json=body, headers={"x-use-cache": "false"})
            if reply.status_code != 200:
                return False, reply.status_code, reply.text[:200]
            calls = reply.json()["choices"][0]["message"]["tool_calls"]
            return self.valid(calls[0]["function"]["arguments"], self.number), 200, ""
        if behaviour == "too large":
            reply = self.http.post(self.url, content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                                   headers={"content-type": "application/json"})
            return reply.status_code == 413, reply.status_code, ""
        if behaviour == "malformed":
            reply = self.http.post(self.url, content=b'{"messages": [', headers={"content-type": "application/json"})
            return reply.status_code == 400 and reply.json()["error"]["param"] == "body", reply.status_code, ""
        if behaviour == "hostile":
            schema = HOSTILE[HOSTILE_NAMES[i % len(HOSTILE_NAMES)]]
            started = time.monotonic()
            reply = self.http.post(self.url, json={**chat(i, self.number), "response_format": {"type": "json", "value": schema}},
                                   headers={"x-use-cache": "false"})
            took = time.monotonic() - started
            # 413: the largest of them (10,000 properties) is over the server's 1 MiB body limit
            ok = reply.status_code in (200, 400, 413) and (reply.status_code == 200 or bool(reply.json()["error"]["param"]))
            return ok, reply.status_code, f"{took:.2f}s"
        if behaviour == "stalled body":
            with socket.create_connection(("127.0.0.1", self.port), timeout=120) as conn:
                conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"messages\": [")
                reply = conn.recv(65536).decode("latin-1")
            status = int(reply.split()[1]) if reply.startswith("HTTP/1.1 ") else 0
            return status == 408, status, ""
        raise ValueError(behaviour)

    @staticmethod
    def valid(text: str, i: int) -> bool:
        try:
            jsonschema.validate(json.loads(text), own_schema(i))
        except (ValueError, jsonschema.ValidationError):
            return False
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--early", type=int, default=200, help="memory is compared with after this many")
    parser.add_argument("--grace", type=float, default=10.0, help="--shutdown-grace of the server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtime", default="transformers", help="the server's --runtime")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(20_000)  # to write the hostile corpus's schemas nested 1,000 deep

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("wb", prefix="constrain-soak-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "constrain.cli", "serve", "--port", str(port), "--max-queue", "256",
         "--max-request-bytes", str(1024 * 1024), "--body-timeout", "5", "--shutdown-grace", str(args.grace),
         "--runtime", args.runtime],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not get ready"
            time.sleep(0.5)
        print(f"server ready (pid {proc.pid}, log {log.name}); RSS {rss_bytes(proc.pid) / 2**20:.0f} MiB", flush=True)

        rng = random.Random(args.seed)
        names, weights = zip(*MIX.items(), strict=True)
        plan = rng.choices(names, weights=weights, k=args.requests)
        results: list[tuple[str, bool, int, str, float]] = []
        lock = threading.Lock()
        marks: dict[str, int] = {}
        next_index = iter(range(args.requests))
        started = time.monotonic()

        def worker(number: int) -> None:
            client = Client(base, port, number)
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                t0 = time.monotonic()
                try:
                    ok, status, note = client.send(i, plan[i])
                except Exception as exc:  # a transport error counts as a failure, with its reason
                    ok, status, note = False, -1, f"{type(exc).__name__}: {exc}"
                with lock:
                    results.append((plan[i], ok, status, note, time.monotonic() - t0))
                    done = len(results)
                if done == args.early:
                    marks["early"] = rss_bytes(proc.pid)
                    marks["early_caches"] = cache_bytes(base)
                if done % 200 == 0:
                    print(f"  {done} requests, {time.monotonic() - started:.0f} s, RSS {rss_bytes(proc.pid) / 2**20:.0f} "
                          f"MiB, of which caches {cache_bytes(base) / 2**20:.0f} MiB", flush=True)

        with ThreadPoolExecutor(args.clients) as pool:
            for number in range(args.clients):
                pool.submit(worker, number)
        elapsed = time.monotonic() - started

        deadline = time.monotonic() + 120
        while True:
            queue = httpx.get(f"{base}/health", timeout=10).json()["queue"]
            if queue["running"] == 0 and queue["waiting"] == 0:
                break
            assert time.monotonic() < deadline, f"sequences not released: {queue}"
            time.sleep(0.5)
        health = httpx.get(f"{base}/health", timeout=10).json()
        end_rss = rss_bytes(proc.pid)
        end_caches = cache_bytes(base)

        drain = sigterm_drain(base, port, proc, args.grace)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    by_kind: dict[str, list[tuple[bool, int, float]]] = {}
    for kind, ok, status, _note, took in results:
        by_kind.setdefault(kind, []).append((ok, status, took))
    failures = [r for r in results if not r[1]]
    five = [r for r in results if r[2] >= 500 or r[2] < 0]
    print(f"\n{len(results)} requests from {args.clients} clients in {elapsed:.0f} s "
          f"({len(results) / elapsed:.1f} req/s)\n")
    print("| kind | requests | as expected | statuses | p50 s | p95 s |")
    print("|---|---:|---:|---|---:|---:|")
    for kind in MIX:
        rows = by_kind.get(kind, [])
        if not rows:
            continue
        times = sorted(t for _, _, t in rows)
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(Counter(s for _, s, _ in rows).items()))
        print(f"| {kind} | {len(rows)} | {sum(ok for ok, _, _ in rows)} | {statuses} | "
              f"{statistics.median(times):.2f} | {times[int(0.95 * (len(times) - 1))]:.2f} |")
    early = marks.get("early", end_rss)
    growth = end_rss / early - 1
    early_rest = early - marks.get("early_caches", end_caches)
    rest_growth = (end_rss - end_caches) / early_rest - 1
    print(f"\n5xx or transport errors: {len(five)}; not as expected: {len(failures)}")
    for row in failures[:10]:
        print("   ", row)
    print(f"/health after: queue {health['queue']}, generations {health['generations']}")
    print(f"server RSS after {args.early} requests {early / 2**20:.0f} MiB, after {len(results)} "
          f"{end_rss / 2**20:.0f} MiB: {growth:+.1%}; less the runtime's bounded prompt cache and KV buffers "
          f"({marks.get('early_caches', 0) / 2**20:.0f} -> {end_caches / 2**20:.0f} MiB): "
          f"{early_rest / 2**20:.0f} -> {(end_rss - end_caches) / 2**20:.0f} MiB, {rest_growth:+.1%} (target within 10%)")
    print(f"SIGTERM with {drain['streams']} streams in flight (grace {args.grace:g} s): new request "
          f"{drain['refused']}, /health {drain['health']}; streams finished {drain['finished']}, ended with "
          f"an error event {drain['ended']}, other {drain['other']}; exited after {drain['exit_s']:.1f} s "
          f"(code {drain['code']})")
    good = (len(results) == args.requests and not five and not failures and abs(rest_growth) <= 0.10 and drain["refused"] == 503
            and drain["other"] == 0)
    return 0 if good else 1


def sigterm_drain(base: str, port: int, proc: subprocess.Popen[bytes], grace: float) -> dict[str, Any]:
    """Streams of mixed lengths in flight, then SIGTERM: how each ended, and when the server did."""
    client = Client(base, port, 0)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        pattern = "[a-z]{20}" if i % 2 else "[a-z]{3000}"
        body = {"messages": [{"role": "user", "content": "Letters."}], "stream": True, "max_tokens": 3000,
                "temperature": 0, "response_format": {"type": "regex", "value": pattern}}
        status, text = client.stream(body)
        kind = ("ended" if text.startswith("ERROR ") and "shutting_down" in text
                else "finished" if status == 200 and text.isalpha() else f"other {status} {text[:80]}")
        with lock:
            outcomes.append(kind)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    refused = httpx.post(f"{base}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]},
                         timeout=30).status_code
    health = httpx.get(f"{base}/health", timeout=30).json()["status"]
    proc.wait(timeout=grace + 60)
    exit_s = time.monotonic() - signalled
    for thread in threads:
        thread.join(30)
    return {"streams": len(threads), "refused": refused, "health": health, "exit_s": exit_s, "code": proc.returncode,
            "finished": outcomes.count("finished"), "ended": outcomes.count("ended"),
            "other": sum(not o.startswith(("finished", "ended")) for o in outcomes)}


if __name__ == "__main__":
    raise SystemExit(main())
