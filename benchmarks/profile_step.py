"""Per decode step: where the time goes (forward pass vs mask vs sampling vs the rest).

Wraps the functions that ``constrain.decode`` calls (the forward pass, the mask worker,
the mask application, ``sample``, the matcher's methods, the detokenizer) with timers,
then runs greedy constrained requests on the embedded model. The mask is filled inline,
or on a worker thread during the forward pass when it is costly (``decode._MaskOverlap``); a
worker fill is off the critical path (shown apart, "overlapped"): only the wait after the pass counts.

    .venv/bin/python benchmarks/profile_step.py --n 10 --threads 1
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

totals: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - started
            calls[name] += 1

    return wrapper


OVERLAPPED = "mask fill (worker, overlapped)"


class TimedMatcher:
    """Times every matcher call; a ``fill_bitmask`` on the worker thread is overlapped, not on the path."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        inline = timed("mask fill (inline)", inner.fill_bitmask)
        overlapped = timed(OVERLAPPED, inner.fill_bitmask)

        def fill_bitmask(bitmask: Any) -> None:
            (inline if threading.current_thread() is threading.main_thread() else overlapped)(bitmask)

        self.fill_bitmask = fill_bitmask
        for name in ("consume", "forced_tokens", "is_accepting", "is_stopped", "rollback", "error"):
            setattr(self, name, timed("matcher consume/forced/state", getattr(inner, name)))


class TimedFuture:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def result(self, timeout: float | None = None) -> Any:
        started = time.perf_counter()
        try:
            return self._inner.result(timeout)
        finally:
            totals["mask wait (after forward)"] += time.perf_counter() - started


class TimedExecutor:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def submit(self, fn: Callable[..., Any], *args: Any) -> TimedFuture:
        return TimedFuture(self._inner.submit(fn, *args))


def instrument() -> None:
    """Install the timers in constrain.decode's namespace (this process only)."""
    from constrain import constraints, decode

    decode.forward = timed("forward", decode.forward)
    decode.bitmask_to_bool = timed("mask unpack (bits -> bool)", decode.bitmask_to_bool)
    decode.apply_token_bitmask_inplace = timed("mask apply (fill -inf)", decode.apply_token_bitmask_inplace)
    decode.sample = timed("sampling (softmax + argmax/draw)", decode.sample)
    decode.apply_penalties = timed("penalties", decode.apply_penalties)
    decode._mask_worker = TimedExecutor(decode._mask_worker)  # type: ignore[assignment]
    decode._Detokenizer.push = timed("detokenize", decode._Detokenizer.push)  # type: ignore[method-assign]
    original = constraints.CompiledConstraint.matcher

    def matcher(self: Any) -> Any:
        inner = original(self)
        return None if inner is None else TimedMatcher(inner)

    constraints.CompiledConstraint.matcher = matcher  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10, help="how many of the e2e schemas")
    parser.add_argument("--max-tokens", type=int, default=192)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    parser.add_argument("--free", action="store_true", help="profile unconstrained requests instead")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    import constrain
    from constrain.decode import DecodeStats

    if args.threads:
        torch.set_num_threads(args.threads)
    model = constrain.load()
    cases = json.loads(SCHEMAS.read_text())[: args.n]
    instrument()

    # Count forward passes and tokens through the decode stats of every request.
    import constrain.model as model_module

    stats_seen: list[DecodeStats] = []
    original_stats = model_module.DecodeStats

    def recording_stats() -> DecodeStats:
        stats = original_stats()
        stats_seen.append(stats)
        return stats

    model_module.DecodeStats = recording_stats  # type: ignore[assignment,misc]

    def run(case: dict[str, Any]) -> None:
        fmt = None if args.free else {"type": "json_schema", "json_schema": {"name": case["name"], "schema": case["schema"]}}
        model.chat_completion([{"role": "user", "content": case["prompt"]}], response_format=fmt,
                              temperature=0, max_tokens=args.max_tokens if not args.free else 48)

    run(cases[0])  # warm-up (compiles, first-use costs)
    totals.clear()
    calls.clear()
    stats_seen.clear()
    started = time.perf_counter()
    for case in cases:
        run(case)
    wall = time.perf_counter() - started

    forwards = sum(s.forward_passes for s in stats_seen)
    tokens = sum(s.completion_tokens for s in stats_seen)
    prefill = len(stats_seen)
    forward = totals["forward"]
    print(f"# profile_step: {len(cases)} {'free' if args.free else 'constrained'} requests, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; {tokens} output tokens, {forwards} forward "
          f"passes ({prefill} prefill), {sum(s.forced_tokens for s in stats_seen)} forced tokens")
    print()
    print("| part | total ms | per forward pass µs | % of forward |")
    print("|---|---|---|---|")
    for name, seconds in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {1e3 * seconds:.1f} | {1e6 * seconds / forwards:.0f} | {100 * seconds / forward:.2f}% |")
    critical = ("mask wait (after forward)", "mask fill (inline)", "mask unpack (bits -> bool)",
                "mask apply (fill -inf)",
                "sampling (softmax + argmax/draw)", "matcher consume/forced/state")
    overhead = sum(totals[k] for k in critical)
    accounted = sum(v for k, v in totals.items() if k != OVERLAPPED)
    print(f"| rest of the request (prompt, parse, loop, validation) | {1e3 * (wall - accounted):.1f} "
          f"| {1e6 * (wall - accounted) / forwards:.0f} | {100 * (wall - accounted) / forward:.2f}% |")
    print()
    print(f"mask + sampling overhead on the critical path: {1e6 * overhead / forwards:.0f} µs per step = "
          f"**{100 * overhead / forward:.2f}%** of the forward pass "
          f"({1e3 * forward / forwards:.1f} ms per forward pass, prefill included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
