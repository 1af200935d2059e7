"""Per decode step of the batched core: where the time goes (forward pass vs masks vs sampling).

Wraps the decoding core's parts (``DecodingCore``: the runtime's forward pass, the batch mask
fill, the sampling stage with its mask unpack and apply, the matcher calls, the detokenizer)
with timers, then runs greedy constrained requests on the embedded model: one at a time
(``--batch 1``), or ``--batch N`` clients at once, each sending the e2e schemas back to back,
so that the steps measured run N rows. A fill on the core's worker thread during the forward
pass is off the critical path (shown apart, "overlapped"); only the wait after the pass counts.

    .venv/bin/python benchmarks/profile_step.py --n 10 --threads 1            # one request at a time
    .venv/bin/python benchmarks/profile_step.py --n 30 --batch 16 --threads 2  # 16 rows a step
    .venv/bin/python benchmarks/profile_step.py --n 10 --batch 8 --runtime llama.cpp --llama-threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("constrain") is None:
    sys.path.insert(0, str(_ROOT))

SCHEMAS = Path(__file__).with_name("e2e_schemas.json")
OVERLAPPED = "mask fill (worker, overlapped)"

totals: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)
rows_per_step: list[int] = []


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - started
            calls[name] += 1

    return wrapper


def instrument(model: Any) -> None:
    """Install the timers on this model's core (this process only)."""
    from constrain.decoding import core as core_module
    from constrain.decoding import sequence

    core = model.core
    runtime = core.runtime
    step = timed("forward", runtime.step)

    def counted_step(feeds: Any) -> Any:
        rows_per_step.append(len(feeds))
        return step(feeds)

    runtime.step = counted_step
    fill = core._fill
    inline, overlapped = timed("mask fill (inline)", fill), timed(OVERLAPPED, fill)

    def fill_where(jobs: Any, bitmask: Any) -> Any:
        return (overlapped if threading.current_thread().name.startswith("constrain-mask") else inline)(jobs, bitmask)

    core._fill = fill_where
    original_submit = core_module.ThreadPoolExecutor.submit

    def submit(self: Any, fn: Callable[..., Any], *args: Any) -> Any:
        future = original_submit(self, fn, *args)
        result = future.result

        def waited(timeout: float | None = None) -> Any:
            started = time.perf_counter()
            try:
                return result(timeout)
            finally:
                totals["mask wait (after forward)"] += time.perf_counter() - started

        future.result = waited  # type: ignore[method-assign]
        return future

    core_module.ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
    core_module.unpack_bitmasks = timed("mask unpack (bits -> bool)", core_module.unpack_bitmasks)
    core_module.mask_logits = timed("mask apply (fill -inf)", core_module.mask_logits)
    core_module.greedy_tokens = timed("sampling (argmax)", core_module.greedy_tokens)
    core._sample = timed("sampling stage (all of it)", core._sample)
    sequence.Detokenizer.push = timed("detokenize", sequence.Detokenizer.push)  # type: ignore[method-assign]
    for name in ("advance", "receive", "adjust", "narrow"):
        setattr(sequence.Sequence, name, timed(f"per row: {name}", getattr(sequence.Sequence, name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="how many of the e2e schemas (per client)")
    parser.add_argument("--batch", type=int, default=1, help="clients sending requests at once")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    parser.add_argument("--free", action="store_true", help="profile unconstrained requests instead")
    parser.add_argument("--runtime", choices=("transformers", "llama.cpp"), default="transformers")
    parser.add_argument("--llama-threads", type=int, default=None, help="llama.cpp's threads (default: the CPUs but one)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    import constrain

    if args.threads:
        torch.set_num_threads(args.threads)
    model = constrain.load(max_batch=max(1, args.batch), runtime=args.runtime, threads=args.llama_threads)
    cases = json.loads(SCHEMAS.read_text())[: args.n]
    results: list[Any] = []

    def run(case: dict[str, Any]) -> None:
        fmt = None if args.free else {"type": "json_schema", "json_schema": {"name": case["name"], "schema": case["schema"]}}
        results.append(model.chat_completion([{"role": "user", "content": case["prompt"]}], response_format=fmt,
                                             temperature=0, max_tokens=args.max_tokens if not args.free else 48))

    run(cases[0])  # warm-up (compiles, first-use costs)
    instrument(model)
    results.clear()
    stats = model.core.stats
    steps_before, tokens_before = stats.steps, stats.output_tokens
    started = time.perf_counter()

    def client(k: int) -> None:
        for i in range(len(cases)):
            run(cases[(i + k) % len(cases)])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.batch)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    model.close()

    forwards = stats.steps - steps_before
    tokens = stats.output_tokens - tokens_before
    forward = totals["forward"]
    rows = sum(rows_per_step) / len(rows_per_step) if rows_per_step else 0
    print(f"# profile_step: {len(results)} {'free' if args.free else 'constrained'} requests from {args.batch} "
          f"client(s), {args.runtime}, torch {torch.__version__}, {torch.get_num_threads()} threads; {tokens} output tokens, "
          f"{forwards} forward passes (mean {rows:.1f} rows each), {tokens / wall:.1f} tok/s")
    print()
    print("| part | total ms | per forward pass µs | % of forward |")
    print("|---|---|---|---|")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {1e3 * seconds:.1f} | {1e6 * seconds / forwards:.0f} | {100 * seconds / forward:.2f}% |")
    masks = totals["mask fill (inline)"] + totals["mask wait (after forward)"]
    critical = masks + totals["sampling stage (all of it)"]
    print()
    print(f"mask filling on the critical path: {1e6 * masks / forwards:.0f} µs per step = "
          f"**{100 * masks / forward:.2f}%** of the forward pass; with the whole sampling stage (unpack, apply, "
          f"penalties, closer, sampling, consume, detokenize): {100 * critical / forward:.2f}% "
          f"({1e3 * forward / forwards:.1f} ms per forward pass)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
