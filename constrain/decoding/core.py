"""The decoding core: every generation of one model, batched, on one thread.

The one concurrency layer of constrain. Callers (``Model.chat_completion`` from any number of
threads or asyncio tasks, the server, the batch job) ``submit`` a :class:`DecodeJob` and get a
:class:`SequenceHandle`; the core's thread runs the loop:

1. admit waiting sequences while fewer than ``max_batch`` run (first come, first served);
   a bounded waiting line beyond that (``OverloadedError`` past it);
2. feed every running sequence's new tokens into one forward pass: the sampled token and any
   forced ones, or a new sequence's prompt (at most ``prefill_tokens`` prompt tokens a step,
   so that a long prompt is spread over steps instead of stalling the others);
3. fill all masks of the sequences about to sample in one call (``engines/batch_masks.py``), inline
   or during the forward pass on a worker thread when that pays;
4. apply them to the batch's logits in one operation, sample each row with its own
   parameters and generator, consume, fast-forward, emit Steps;
5. drop finished and cancelled rows at once, so that their place is free the next step.

A request's output does not depend on its neighbours beyond floating-point rounding: each row
has its own matcher, sampler, generator, budget and stop rules; only the forward pass is shared.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import weakref
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from constrain.decoding.allocator import ALLOCATOR
from constrain.decoding.handle import SequenceHandle
from constrain.decoding.runtimes.base import Feed, Runtime
from constrain.decoding.sampling import greedy_tokens, mask_logits, unpack_bitmasks
from constrain.decoding.sequence import DecodeJob, Sequence
from constrain.decoding.steps import DecodeStats, Step
from constrain.engines.batch_masks import BatchFiller
from constrain.errors import ConstrainError, GenerationError, InvalidRequestError, OverloadedError
from constrain.vocab import Vocabulary

# Measured with benchmarks/throughput.py on a 2-core CPU (RESULTS.md): aggregate tokens/s
# still grows up to this many rows; more rows cost latency for little throughput.
DEFAULT_MAX_BATCH = 32
DEFAULT_PREFILL_TOKENS = 512


_live_cores: weakref.WeakSet[DecodingCore] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """Stop every core's thread before the interpreter tears down (a thread still inside torch
    at exit aborts the process)."""
    for core in list(_live_cores):
        core.close()


@dataclass
class CoreStats:
    """Counters for ``/health``, tests and benchmarks."""

    admitted: int = 0
    refused: int = 0
    cancelled_waiting: int = 0
    finished: int = 0
    steps: int = 0  # forward passes of the batch
    fed_tokens: int = 0  # tokens through the model (prompts included)
    output_tokens: int = 0  # emitted so far, by finished and running sequences
    start_order: deque[int] = field(default_factory=lambda: deque(maxlen=10_000))  # tickets, as started


class _MaskTiming:
    """Fill the masks inline, or on the worker thread during the forward pass?

    A hand-off costs a GIL round trip with the thread running the model's Python code (0.5-2 ms
    on a busy CPU), more than typical fills (10-200 µs a row). So on the CPU masks are filled
    inline while fills are cheap and overlapped once one took longer than ``threshold_s``; on an
    accelerator the CPU mostly waits during the pass, so they are always overlapped there.
    """

    threshold_s = 1e-3

    def __init__(self, device: torch.device) -> None:
        self.always = device.type != "cpu"
        self.last_s = 0.0

    @property
    def overlap(self) -> bool:
        return self.always or self.last_s >= self.threshold_s


class DecodingCore:
    """Runs a model's generations in one batch. Thread-safe; make one per runtime."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        tokenizer: Any,
        eos_token_ids: set[int],
        max_batch: int = DEFAULT_MAX_BATCH,
        max_waiting: int | None = None,
        prefill_tokens: int = DEFAULT_PREFILL_TOKENS,
        mask_threads: int | None = None,
        vocabulary: Vocabulary | None = None,
    ) -> None:
        if not isinstance(max_batch, int) or max_batch < 1:
            raise InvalidRequestError(f"`max_batch` must be a whole number >= 1, got {max_batch!r}", param="max_batch")
        if max_waiting is not None and max_waiting < 0:
            raise InvalidRequestError(f"`max_queue` must be >= 0, got {max_waiting!r}", param="max_queue")
        self.runtime = runtime
        self.tokenizer = tokenizer
        # The tokenizer's texts and tables (the budget closer's): its owner's, else the core's own.
        self.vocabulary = vocabulary if vocabulary is not None else Vocabulary(tokenizer)
        self.eos_token_ids = eos_token_ids
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self.prefill_tokens = max(1, prefill_tokens)
        self.stats = CoreStats()
        self._filler = BatchFiller(mask_threads)
        self._timing = _MaskTiming(runtime.device)
        self._worker: ThreadPoolExecutor | None = None
        self._bitmask: np.ndarray | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._by_handle: dict[int, Sequence] = {}
        self._tickets = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._finished_tokens = 0

    # ------------------------------------------------------------------ callers

    def submit(self, job: DecodeJob, *, stats: DecodeStats | None = None,
               max_waiting: int | None = None) -> SequenceHandle:
        """Queue a generation; raises OverloadedError when ``max_waiting`` (else the core's
        ``max_waiting``) sequences already wait for a place in the batch.

        ``stats`` (else a new one, on the handle) is filled in as the sequence runs.
        """
        stats = stats if stats is not None else DecodeStats()
        limit = max_waiting if max_waiting is not None else self.max_waiting
        # Built before taking the lock: the decoding loop never waits for a new row's matcher.
        seq = Sequence(job, tokenizer=self.tokenizer, vocabulary=self.vocabulary, eos_token_ids=self.eos_token_ids, emit=lambda step: None,
                       stats=stats)
        with self._lock:
            if self._closed:
                raise GenerationError("the model has been closed")
            if limit is not None:
                free = self.max_batch - len(self._running)  # places the loop has not filled yet
                if len(self._waiting) >= limit + max(0, free):
                    self.stats.refused += 1
                    raise OverloadedError(
                        f"server busy: {len(self._running)} request(s) generating and {len(self._waiting)} "
                        f"waiting (max_batch={self.max_batch}, max_queue={limit}); retry later"
                    )
            ticket = next(self._tickets)
            handle = SequenceHandle(ticket, stats, self._cancel)
            seq.bind(handle)
            self._by_handle[id(handle)] = seq
            self._waiting.append(seq)
            self.stats.admitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="constrain-decode", daemon=True)
                self._thread.start()
                _live_cores.add(self)
            self._wake.notify()
        return handle

    def _cancel(self, handle: SequenceHandle) -> None:
        with self._lock:
            seq = self._by_handle.get(id(handle))
            if seq is None:
                return
            if seq in self._waiting:
                self._waiting.remove(seq)
                del self._by_handle[id(handle)]
                self.stats.cancelled_waiting += 1
                seq.cancelled = True
                seq.stats.cancelled = True
                handle.put(Step(token_ids=[], text="", finish_reason="length"))
                return
            seq.cancelled = True
            self._wake.notify()

    def snapshot(self) -> dict[str, int | None]:
        with self._lock:
            return {"waiting": len(self._waiting), "running": len(self._running),
                    "max_batch": self.max_batch, "max_queue": self.max_waiting}

    def close(self) -> None:
        """Cancel everything and stop the thread (the core cannot be used afterwards)."""
        with self._lock:
            self._closed = True
            for seq in list(self._waiting) + self._running:
                seq.cancelled = True
            self._wake.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        if self._worker is not None:
            self._worker.shutdown(wait=False)

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        with torch.inference_mode():  # the KV buffers are inference tensors: every touch in this mode
            self._run()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._running and not self._waiting and not self._closed:
                    self._wake.wait()
                closed = self._closed
                started: list[Sequence]
                if closed:
                    started, dropped = [], list(self._waiting)
                    self._waiting.clear()
                else:
                    started, dropped = [], []
                    while self._waiting and len(self._running) < self.max_batch:
                        seq = self._waiting.popleft()
                        seq.handle.state = "running"
                        self._running.append(seq)
                        self.stats.start_order.append(seq.handle.ticket)
                        started.append(seq)
            for seq in dropped:  # closed while waiting
                seq.handle.put(Step(token_ids=[], text="", finish_reason="length"))
            if closed and not self._running:
                return
            for seq in started:
                if self._guard(seq, seq.start) and self._guard(seq, self._reuse, seq):
                    continue
                seq.prefilling = False
            try:
                self._step()
                self._sweep()
            except Exception as exc:  # a bug or the runtime failing: fail the batch, keep serving
                self._fail_all(exc)
            ALLOCATOR.trim()  # every few seconds at most: freed steps' memory back to the system

    def _fail_all(self, exc: Exception) -> None:
        error = exc if isinstance(exc, GenerationError) else GenerationError(
            f"the forward pass failed: {type(exc).__name__}: {exc}")
        for seq in self._running:
            if not seq.done:
                seq.done = True
                seq.handle.put(error)
        try:
            self._sweep()
        except Exception:  # the runtime's state is broken: start it afresh
            with self._lock:
                self._running = []
            self.runtime.reset()

    def _reuse(self, seq: Sequence) -> bool:
        """Skip the part of a new prompt the runtime already holds (a cached prefix)."""
        held = self.runtime.start(id(seq), seq.inputs, seq.keep, vision=seq.job.vision)
        seq.inputs = seq.inputs[held:]
        return True

    def _guard(self, seq: Sequence, action: Any, *args: Any) -> bool:
        """Run one sequence's part of the step; an error ends that sequence only."""
        try:
            return bool(action(*args))
        except Exception as exc:
            seq.done = True
            error = exc if isinstance(exc, ConstrainError) else GenerationError(f"{type(exc).__name__}: {exc}")
            seq.handle.put(error)
            return False

    def _sweep(self) -> None:
        """Drop the rows that ended: their place is free for the next step."""
        with self._lock:
            ended = [seq for seq in self._running if seq.done]
            if not ended:
                return
            self._running = [seq for seq in self._running if not seq.done]
            for seq in ended:
                self._by_handle.pop(id(seq.handle), None)
                self.stats.finished += 1
                self._finished_tokens += seq.stats.completion_tokens
        for seq in ended:
            self.runtime.drop(id(seq))

    def _bitmask_rows(self, rows: int, words: int) -> np.ndarray:
        if self._bitmask is None or self._bitmask.shape[0] < rows or self._bitmask.shape[1] != words:
            self._bitmask = np.full((max(rows, self.max_batch), words), -1, dtype=np.int32)
        return self._bitmask

    def _step(self) -> None:
        for seq in self._running:  # a cancel since the last step ends the sequence before its pass
            if seq.cancelled and not seq.done:
                self._guard(seq, seq.settle)
        feeds: list[Feed] = []
        fed: list[Sequence] = []
        sampling: list[tuple[int, Sequence]] = []  # (feed index, sequence) that sample after this pass
        budget = self.prefill_tokens
        for seq in self._running:
            if seq.done:
                continue
            take = seq.inputs
            if seq.prefilling:  # a prompt, or the rest of one: at most `budget` tokens a step
                if budget <= 0:
                    continue
                take = take[:budget]
                budget -= len(take)
            seq.inputs = seq.inputs[len(take) :]
            seq.prefilling = bool(seq.inputs)
            feeds.append(Feed(id(seq), take, 1 if seq.prefilling else seq.keep))
            fed.append(seq)
            if not seq.prefilling:
                sampling.append((len(feeds) - 1, seq))
        if not feeds:
            return

        vocab = self.runtime.vocab_size
        words = (max([vocab] + [s.vocab_size for _, s in sampling]) + 31) // 32
        bitmask = self._bitmask_rows(len(feeds), words)
        bitmask[: len(feeds)] = -1
        jobs = [(seq.matcher, i) for i, seq in sampling if seq.needs_mask]
        failed: dict[int, Exception] = {}  # rows whose mask fill failed
        fill: Future[dict[int, Exception]] | None = None
        if jobs:
            if self._timing.overlap:
                if self._worker is None:
                    self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="constrain-mask")
                fill = self._worker.submit(self._fill, jobs, bitmask)
            else:
                failed = self._fill(jobs, bitmask)
        try:
            out = self.runtime.step(feeds)
        finally:
            if fill is not None:
                failed = fill.result()
        self.stats.steps += 1
        self.stats.fed_tokens += sum(len(f.tokens) for f in feeds)
        for seq in fed:
            seq.stats.forward_passes += 1
        if sampling:
            self._sample(sampling, out.last.float(), out.earlier, bitmask, failed)
        self.stats.output_tokens = self._finished_tokens + sum(seq.stats.completion_tokens for seq in self._running)

    def _fill(self, jobs: list[tuple[Any, int]], bitmask: np.ndarray) -> dict[int, Exception]:
        started = time.perf_counter()
        failed = self._filler.fill(jobs, bitmask)
        self._timing.last_s = time.perf_counter() - started
        return failed

    def _sample(self, sampling: list[tuple[int, Sequence]], logits: torch.Tensor,
                earlier: list[torch.Tensor | None], bitmask: np.ndarray,
                failed: dict[int, Exception]) -> None:
        index = [i for i, _ in sampling]
        last = logits if index == list(range(logits.shape[0])) else logits[index]
        alive: list[int] = []  # rows of `last` still generating after receive()
        for k, (i, seq) in enumerate(sampling):
            before = earlier[i]
            rows = last[k : k + 1] if before is None else torch.cat([before.float(), last[k : k + 1]])
            if self._guard(seq, seq.receive, rows):
                self._guard(seq, seq.adjust, last[k])
                if not seq.done:
                    alive.append(k)
        if not alive:
            return
        allowed = unpack_bitmasks(bitmask[index], last.shape[1], last.device)
        for k in alive:
            row_index, seq = sampling[k]
            if not seq.needs_mask:
                continue
            if row_index in failed:
                self._guard(seq, seq.fail, failed[row_index])
                continue
            if not bool(allowed[k, : seq.vocab_size].any()):
                reason = seq.matcher.error() if seq.matcher is not None else None
                self._guard(seq, _raise, GenerationError(f"the constraint allows no token here ({reason or 'engine dead end'})"))
                continue
            row = allowed[k]
            try:
                narrowed = seq.narrow(row, last[k])
            except Exception as exc:  # this row's closer or matcher failed: end this row only
                self._guard(seq, _raise, exc)
                continue
            if narrowed is not row:
                allowed[k] = narrowed
        mask_logits(last, allowed)
        greedy = greedy_tokens(last)
        for k in alive:
            seq = sampling[k][1]
            if not seq.done:
                self._guard(seq, seq.sample_and_advance, last[k], greedy[k])


def _raise(error: Exception) -> None:
    raise error
