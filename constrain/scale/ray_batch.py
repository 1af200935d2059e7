"""``constrain batch --ray``: the batch job with its rows spread over a pool of model actors (Ray Data).

Same files as ``constrain.batch`` (OpenAI Batch JSONL in, one result line per request out), same
answers for the same requests (each actor runs ``Model.answer_async``, as the local job does), the
same handling of bad lines and the same resumability: the lines already in the output are
skipped, and a line cut short by a kill is dropped and redone. What differs is where the model
runs: ``actors`` actors each load one model and answer blocks of ``batch_size`` rows through its
batch, and the output is written in input order (Ray Data keeps the blocks' order), as results
come back, so an interrupted job has written a prefix of the answers.

The driver (this process) reads and checks the lines and writes the output; only valid requests
travel to the actors, as JSON text, and come back as finished output lines.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data
from ray.data import ActorPoolStrategy, DataContext

from constrain.batch import BatchSummary, answer_line, answered_lines, output_line, plan_lines, record_text
from constrain.errors import InvalidRequestError
from constrain.loading import default_max_batch
from constrain.model import load, run_sync

_LOAD_OPTIONS = frozenset(name for name in inspect.signature(load).parameters if name != "model")


class ModelActor:
    """One Ray actor holding one model; answers a block of rows through the model's batch."""

    def __init__(self, model: str | None, load_options: dict[str, Any], default_max_tokens: int | None) -> None:
        import constrain
        from constrain.loading import one_torch_thread_under_llama_cpp

        one_torch_thread_under_llama_cpp([model], str(load_options.get("runtime", "auto")))
        self.model = constrain.load(model, **load_options)
        self.default_max_tokens = default_max_tokens

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        positions = [int(p) for p in rows["position"]]
        records = run_sync(self._answer_all([str(c) for c in rows["custom_id"]], [int(n) for n in rows["line"]],
                                            [str(b) for b in rows["body"]]))
        return {"position": positions, "record": [r for r, _ in records], "ok": [ok for _, ok in records]}

    async def _answer_all(self, ids: list[str], lines: list[int], bodies: list[str]) -> list[tuple[str, bool]]:
        gate = asyncio.Semaphore(2 * self.model.max_batch)  # enough to keep the batch full

        async def one(custom_id: str, line: int, body_text: str) -> tuple[str, bool]:
            async with gate:
                record, ok = await answer_line(self.model, custom_id, json.loads(body_text), line,
                                               default_max_tokens=self.default_max_tokens)
            return record_text(record), ok

        return list(await asyncio.gather(*(one(*row) for row in zip(ids, lines, bodies, strict=True))))

    def __del__(self) -> None:
        model = getattr(self, "model", None)
        if model is not None:
            model.close()


def run_file_ray(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    model: str | None = None,
    actors: int = 2,
    batch_size: int | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    progress: bool = True,
    default_max_tokens: int | None = None,
    address: str | None = None,
    **load_options: Any,
) -> BatchSummary:
    """Answer an OpenAI Batch input file on Ray: ``actors`` model actors (each ``constrain.load(model,
    **load_options)``, reserving ``num_cpus``/``num_gpus``) take blocks of ``batch_size`` requests
    (default: the model's ``max_batch``). The output is appended in input order; lines already there
    are skipped. Uses the Ray session this process already has, else ``ray.init(address=address)``
    (and shuts that down at the end)."""
    source, target = Path(input_path), Path(output_path)
    if not source.is_file():
        raise InvalidRequestError(f"input file {source} does not exist", param="input")
    if not isinstance(actors, int) or isinstance(actors, bool) or actors < 1:
        raise InvalidRequestError(f"--actors must be a whole number >= 1, got {actors!r}", param="--actors")
    unknown = sorted(set(load_options) - _LOAD_OPTIONS)
    if unknown:
        raise InvalidRequestError(f"unknown option(s) for constrain.load: {', '.join(unknown)}", param=unknown[0])
    if "threads" in _LOAD_OPTIONS and load_options.get("threads") is None and num_gpus == 0:
        # llama.cpp's threads spin at each step: as many as the CPUs an actor reserved, not the machine's.
        load_options["threads"] = max(1, int(num_cpus))
    max_batch = default_max_batch(load_options.get("max_batch"), load_options.get("runtime", "auto"), model)
    size = batch_size if batch_size is not None else max_batch
    if not isinstance(size, int) or size < 1:
        raise InvalidRequestError(f"`batch_size` must be a whole number >= 1, got {size!r}", param="batch_size")
    started = time.perf_counter()
    done_ids, done_lines = answered_lines(target)
    total, skipped, todo = plan_lines(source, done_ids, done_lines)
    own_session = not ray.is_initialized() and any(problem is None for *_, problem in todo)
    if own_session:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    try:
        counts = _run(todo, target, model=model, actors=actors, size=size, num_cpus=num_cpus, num_gpus=num_gpus,
                      progress=progress, default_max_tokens=default_max_tokens, load_options=load_options)
    finally:
        if own_session:
            ray.shutdown()
    return BatchSummary(total=total, skipped=skipped, succeeded=counts["ok"], failed=counts["failed"],
                        seconds=time.perf_counter() - started)


def _results(todo: list[tuple[int, str | None, Any, str | None]], *, model: str | None, actors: int, size: int,
             num_cpus: float, num_gpus: float, default_max_tokens: int | None,
             load_options: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The answered rows, in input order (Ray Data keeps the blocks' order)."""
    rows = [{"position": i, "custom_id": custom_id, "line": number, "body": json.dumps(body)}
            for i, (number, custom_id, body, problem) in enumerate(todo) if problem is None]
    if not rows:
        return iter(())
    context = DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # one bar: ours
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its per-run INFO lines
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, math.ceil(len(rows) / size)))
    answered = dataset.map_batches(
        ModelActor,
        fn_constructor_kwargs={"model": model, "load_options": dict(load_options),
                               "default_max_tokens": default_max_tokens},
        batch_size=size,
        # Two blocks at once per actor: the next block's requests fill the model's batch while
        # the slowest requests of the previous one finish (the model batches both together).
        compute=ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=2, enable_true_multi_threading=True),
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
    return iter(answered.iter_rows())


def _run(todo: list[tuple[int, str | None, Any, str | None]], target: Path, *, model: str | None, actors: int,
         size: int, num_cpus: float, num_gpus: float, progress: bool, default_max_tokens: int | None,
         load_options: Mapping[str, Any]) -> dict[str, int]:
    from tqdm import tqdm

    counts = {"ok": 0, "failed": 0}
    bar = tqdm(total=len(todo), unit="req", desc="constrain batch (ray)", disable=not progress, file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    results = _results(todo, model=model, actors=actors, size=size, num_cpus=num_cpus, num_gpus=num_gpus,
                       default_max_tokens=default_max_tokens, load_options=load_options)
    try:
        with target.open("a", encoding="utf-8") as out:

            def write(line: str, ok: bool) -> None:
                out.write(line + "\n")
                out.flush()
                counts["ok" if ok else "failed"] += 1
                bar.update(1)

            for position, (number, custom_id, _, problem) in enumerate(todo):
                if problem is not None:  # not a request: answered here, in its place
                    write(record_text(output_line(custom_id, code="invalid_line", message=problem, line=number)), False)
                    continue
                row = next(results)
                if int(row["position"]) != position:
                    raise RuntimeError(f"Ray Data returned row {row['position']} where {position} was due")
                write(str(row["record"]), bool(row["ok"]))
    finally:
        bar.close()
    return counts


def batch_cli(args: Any, actors: int) -> int:
    """``constrain batch --ray``: the job on a Ray cluster, with the local job's summary line."""
    from constrain.scale.options import quiet_local_cluster

    quiet_local_cluster()
    summary = run_file_ray(
        args.input, args.output, model=args.model, actors=actors, num_cpus=args.actor_cpus, num_gpus=args.actor_gpus,
        progress=not args.no_progress, default_max_tokens=args.max_tokens_limit, address=args.ray_address,
        engine=args.engine, property_order="any" if args.any_order else "schema", max_batch=args.max_batch,
        compile_timeout_s=args.compile_timeout, runtime=args.runtime, threads=getattr(args, "threads", None))
    print(f"constrain batch (ray, {actors} actors): {summary.succeeded} answered, {summary.failed} errors, "
          f"{summary.skipped} already in {args.output}; {summary.requests_per_second:.2f} requests/s", file=sys.stderr)
    return 0
