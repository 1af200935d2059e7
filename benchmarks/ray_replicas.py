"""Replicas on Ray Serve: aggregate throughput of 1 vs 2 (or more) replicas behind Ray's proxy.

A local Ray cluster on 127.0.0.1 (started here, stopped at the end) serves
``constrain.scale.ray_app`` with each replica count of ``--replicas`` in turn; N clients
(``--clients``) send non-streamed requests back to back from a small mix (JSON Schema, regex,
tool call, plain chat; ``max_tokens`` 48, sampled with a fresh seed, cache off) for ``--seconds``
after a warm-up. Reported per replica count: output tokens/s and requests/s of the requests that
finished inside the window, latency p50/p99, errors, and how many requests each replica answered
(``x-constrain-replica``). ``--plain`` adds ``constrain serve`` without Ray, same load, for the
proxy's cost.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ray_replicas.py --replicas 1,2,1x2 --clients 8 \\
        --seconds 60 --plain --plain-threads 2 --out benchmarks/out/ray_replicas.json

(Ray gives each worker ``OMP_NUM_THREADS`` = its CPUs; ``OMP_NUM_THREADS=1`` gives the plain server the same.)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import logging
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, str(_ROOT))

# A one-machine cluster on the loopback address, no usage report (set before Ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH", "constrain.scale.proxy:proxy_middlewares")

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                           "city": {"type": "string", "maxLength": 20}},
          "required": ["name", "age", "city"], "additionalProperties": False}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                         "parameters": {"type": "object", "properties": {
                                             "city": {"type": "string", "maxLength": 20}}, "required": ["city"]}}}


def request(i: int, max_tokens: int) -> dict[str, Any]:
    kind = i % 4
    body: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.7, "seed": i}
    if kind == 0:
        body.update(messages=[{"role": "user", "content": f"Describe person number {i}."}],
                    response_format={"type": "json", "value": SCHEMA})
    elif kind == 1:
        body.update(messages=[{"role": "user", "content": f"A date for event {i}?"}],
                    response_format={"type": "regex", "value": r"20\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d)"})
    elif kind == 2:
        body.update(messages=[{"role": "user", "content": f"Weather in city number {i}?"}], tools=[TOOL],
                    tool_choice="required")
    else:
        body.update(messages=[{"role": "user", "content": f"Tell me a fact about the number {i}."}])
    return body


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def load(base_url: str, clients: int, seconds: float, warmup: float, max_tokens: int) -> dict[str, Any]:
    """N clients back to back; what finished inside the window after the warm-up."""
    import httpx

    start = time.monotonic()
    window = (start + warmup, start + warmup + seconds)
    done: list[tuple[float, int, str]] = []  # (latency, tokens, replica)
    errors: collections.Counter[str] = collections.Counter()
    counter = iter(range(10**9))

    async def client(http: httpx.AsyncClient) -> None:
        while time.monotonic() < window[1]:
            i = next(counter)
            sent = time.monotonic()
            try:
                response = await http.post(f"{base_url}/v1/chat/completions", json=request(i, max_tokens),
                                           headers={"x-use-cache": "false"})
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            finished = time.monotonic()
            if response.status_code != 200:
                errors[str(response.status_code)] += 1
                continue
            if window[0] <= sent and finished <= window[1]:
                tokens = int(response.json()["usage"]["completion_tokens"])
                done.append((finished - sent, tokens, response.headers.get("x-constrain-replica", "-")))

    async with httpx.AsyncClient(timeout=300) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    latencies = sorted(d[0] for d in done)

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) if latencies else float("nan")

    return {"requests": len(done), "tokens": sum(d[1] for d in done),
            "tok_s": round(sum(d[1] for d in done) / seconds, 1), "req_s": round(len(done) / seconds, 2),
            "latency_p50_s": pct(0.5), "latency_p99_s": pct(0.99), "errors": dict(errors),
            "per_replica": dict(collections.Counter(d[2] for d in done))}


def wait_ready(base_url: str, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{base_url} did not become ready")


def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    """``constrain serve`` without Ray, in a subprocess, under the same load."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("constrain")), "serve", "--port", str(port), "--runtime",
               args.runtime, "--max-batch", str(args.max_batch), "--cache-size", "0"]
    if args.plain_threads or args.threads:
        command += ["--threads", str(args.plain_threads or args.threads)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        return asyncio.run(load(f"http://127.0.0.1:{port}", args.clients, args.seconds, args.warmup, args.max_tokens))
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2",
                        help="replica counts to measure, in turn; NxC: N replicas of C CPUs each (default C: --replica-cpus)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window per replica count")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-batch", type=int, default=16, help="each replica's batch")
    parser.add_argument("--runtime", default="transformers", choices=("auto", "transformers", "llama.cpp"))
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads per replica (default: its CPUs)")
    parser.add_argument("--replica-cpus", type=float, default=1.0)
    parser.add_argument("--cluster-cpus", type=int, default=None, help="the local cluster's CPUs (default: the machine's)")
    parser.add_argument("--plain", action="store_true", help="also `constrain serve` without Ray")
    parser.add_argument("--plain-threads", type=int, default=None, help="--threads for the plain server")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    import ray
    from ray import serve

    from constrain.scale import ray_app

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__},
        "settings": {k: v for k, v in vars(args).items() if k != "out"}, "runs": {}}
    if args.plain:
        name = f"constrain serve (no Ray), --threads {args.plain_threads or args.threads or 'default'}"
        results["runs"][name] = run_plain(args)
        print(f"{name}: {results['runs'][name]}", flush=True)
    ray.init(num_cpus=args.cluster_cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for spec in args.replicas.split(","):
            count, _, cpus = spec.partition("x")
            replicas, replica_cpus = int(count), float(cpus or args.replica_cpus)
            options: dict[str, Any] = {"runtime": args.runtime, "max_batch": args.max_batch, "cache_size": 0}
            if args.threads:
                options["threads"] = args.threads  # else llama.cpp's threads follow the replica's CPUs
            started = time.monotonic()
            serve.run(ray_app(None, replicas=replicas, num_cpus=replica_cpus, **options), name="bench",
                      route_prefix="/")
            ready_s = round(time.monotonic() - started, 1)
            run = asyncio.run(load(f"http://127.0.0.1:{port}", args.clients, args.seconds, args.warmup,
                                   args.max_tokens))
            run["deploy_s"] = ready_s
            name = f"ray, {replicas} replica{'s' if replicas > 1 else ''} x {replica_cpus:g} CPU"
            results["runs"][name] = run
            print(f"{name}: {run}", flush=True)
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    print()
    print("| setup | tok/s | req/s | latency p50 / p99 s | errors | requests per replica |")
    print("|---|---:|---:|---|---|---|")
    for name, run in results["runs"].items():
        print(f"| {name} | {run['tok_s']} | {run['req_s']} | {run['latency_p50_s']} / {run['latency_p99_s']} | "
              f"{sum(run['errors'].values())} | {', '.join(str(v) for v in run['per_replica'].values())} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
