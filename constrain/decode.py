"""The decode loop: prefill -> mask -> sample -> consume -> fast-forward -> stop. Yields Steps.

One producer for every view: ``response.py`` folds the steps into a ChatCompletion,
``stream.py`` turns them into chunks. Forced tokens are fed to the model together with
the sampled one in a single pass; a step is emitted as soon as its text is known (before
the next pass); the next token mask is computed during the forward pass on a worker thread
where that helps (llguidance and torch both release the GIL), see ``_MaskOverlap``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from constrain.budget import BudgetCloser
from constrain.constraints import CompiledConstraint
from constrain.errors import GenerationError
from constrain.sampling import (
    SamplingParams,
    allocate_token_bitmask,
    apply_penalties,
    apply_token_bitmask_inplace,
    bitmask_to_bool,
    make_generator,
    sample,
)
from constrain.types import FinishReason

_mask_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="constrain-mask")


class _MaskOverlap:
    """Per step: compute the next mask on the worker thread during the forward pass, or inline?

    A hand-off to the worker costs a GIL round trip with the thread running the model's Python
    code (0.5-2 ms a step on a busy CPU, measured with benchmarks/profile_step.py), more than a
    typical llguidance mask (10-200 µs). So on the CPU the mask is filled inline while fills are
    cheap, and overlapped once one took longer than ``threshold_s``; on an accelerator the CPU
    mostly waits for the device during the pass, so the mask is always overlapped there.
    """

    threshold_s = 1e-3

    def __init__(self, device: torch.device) -> None:
        self.always = device.type != "cpu"
        self.last_s = 0.0

    def start(self, matcher: Any, bitmask: Any) -> Future[None] | None:
        """Fill ``bitmask``, or start filling it; a returned job must be passed to ``finish``."""
        if self.always or self.last_s >= self.threshold_s:
            return _mask_worker.submit(self._fill, matcher, bitmask)
        self._fill(matcher, bitmask)
        return None

    def _fill(self, matcher: Any, bitmask: Any) -> None:
        started = time.perf_counter()
        matcher.fill_bitmask(bitmask)
        self.last_s = time.perf_counter() - started

    @staticmethod
    def finish(job: Future[None]) -> None:
        job.result()


@dataclass
class TokenLogprob:
    """One output token's log-probability and the most likely alternatives, by token id."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Step:
    """Tokens appended in one step (one sampled, then any forced) and the text now safe to show."""

    token_ids: list[int]
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    forced: int = 0
    # The output is complete, but only because the budget closer steered it shut (budget.py).
    closed_by_budget: bool = False


@dataclass
class DecodeStats:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    forward_passes: int = 0
    forced_tokens: int = 0
    text: str = ""
    finish_reason: FinishReason | None = None
    stop_sequence_hit: bool = False
    closed_by_budget: bool = False


class _Detokenizer:
    """Incremental detokenizer that never splits a UTF-8 character, and holds back stop prefixes."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop = stop
        self.longest_stop = max((len(s) for s in stop), default=0)
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, ids: list[int]) -> str:
        """Add tokens; return the text that can be shown now."""
        self.ids.extend(ids)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return self._release()

    def _release(self) -> str:
        if not self.stop:
            out, self.emitted = self.text[self.emitted :], len(self.text)
            return out
        start = max(0, self.emitted - self.longest_stop)
        hits = [i for i in (self.text.find(s, start) for s in self.stop) if i >= 0]
        if hits:
            cut = min(hits)
            out = self.text[self.emitted : cut]
            self.text, self.emitted, self.stopped = self.text[:cut], cut, True
            return out
        # Hold back the longest tail that could still grow into a stop sequence.
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        end = max(self.emitted, len(self.text) - hold)
        out, self.emitted = self.text[self.emitted : end], end
        return out

    def flush(self) -> str:
        """At the end: whatever was held back (a stop prefix that never completed, a partial char)."""
        if not self.stopped:
            rest = self._decode(self.ids[self.prefix_offset :])
            prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
            if len(rest) > len(prefix):
                self.text += rest[len(prefix) :]
                self.prefix_offset = self.read_offset = len(self.ids)
        out, self.emitted = self.text[self.emitted :], len(self.text)
        return out


_CACHE_KEYWORD: dict[type, str] = {}


def forward(model: Any, input_ids: torch.Tensor, cache: Any, keep: int) -> tuple[torch.Tensor, Any]:
    """One forward pass with the KV cache; (logits of the last ``keep`` positions, new cache).

    transformers renamed ``past_key_values`` to ``cache`` (5.x); both are supported.
    """
    cls = type(model)
    keyword = _CACHE_KEYWORD.get(cls)
    if keyword is None:
        import inspect

        keyword = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        _CACHE_KEYWORD[cls] = keyword
    out = model(input_ids=input_ids, use_cache=True, logits_to_keep=keep, **{keyword: cache})
    return out.logits, getattr(out, keyword)


def _top(logprobs: torch.Tensor, token: int, k: int) -> TokenLogprob:
    entry = TokenLogprob(token, float(logprobs[token]))
    if k:
        values, ids = torch.topk(logprobs, k)
        entry.top = [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
    return entry


def _run(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    compiled: CompiledConstraint,
    params: SamplingParams,
    *,
    max_tokens: int,
    eos_token_ids: set[int],
    should_stop: Any,
    detok: _Detokenizer,
    stats: DecodeStats,
    closer: BudgetCloser,
    opening_bias: dict[int, float] | None,
) -> Iterator[Step]:
    device = next(model.parameters()).device
    matcher = compiled.matcher()
    generator = None if params.greedy else make_generator(params.seed, device)
    bitmask = allocate_token_bitmask(compiled.vocab_size) if matcher is not None else None
    counts: torch.Tensor | None = None
    overlap = _MaskOverlap(device)
    want_logprobs = params.logprobs
    top_k = params.top_logprobs

    def check(ok: bool, what: str) -> None:
        if not ok or (matcher is not None and matcher.error()):
            raise GenerationError(f"the engine rejected {what}: {matcher.error() if matcher else ''}")

    # Tokens forced before anything is sampled (e.g. '{"' for an object) ride along with the prompt.
    forced: list[int] = []
    if matcher is not None:
        forced = matcher.forced_tokens()[:max_tokens]
        for t in forced:
            check(matcher.consume(t), f"forced token {t}")
    inputs = list(prompt_ids) + forced
    pending: Step | None = Step(token_ids=list(forced), text="", forced=len(forced)) if forced else None
    cache = None
    generated = 0 + len(forced)
    stats.forced_tokens += len(forced)

    def zero_logprobs(step: Step) -> None:
        # In the distribution sampled from, a forced token had probability 1.
        for t in step.token_ids[len(step.logprobs) :]:
            step.logprobs.append(TokenLogprob(t, 0.0, [(t, 0.0)] if top_k else []))

    stopped_now = False

    def release(step: Step) -> bool:
        """Give a step its text; True when the output ends with it (stop string or constraint done)."""
        step.text = detok.push(step.token_ids)
        if detok.stopped or stopped_now:
            if not detok.stopped:
                step.text += detok.flush()
            step.finish_reason = "stop"
            return True
        return False

    def out_of_budget() -> bool:
        return generated >= max_tokens or (should_stop is not None and should_stop())

    def ending(reason: FinishReason) -> Step:
        """The last, token-less step: the text held back so far, and why generation ended."""
        return Step(token_ids=[], text=detok.flush(), finish_reason=reason)

    with torch.inference_mode():
        while True:
            stopped_now = matcher is not None and matcher.is_stopped()
            # Emit the previous step now unless its forced tokens wait for raw logprobs from
            # the next forward pass: the text streams a pass earlier, a finished or stopped
            # output needs no further pass, and the pass keeps a single row of logits.
            if pending is not None and not (want_logprobs and params.raw_logprobs and pending.forced):
                if want_logprobs:
                    zero_logprobs(pending)
                if release(pending):
                    yield pending
                    break
                yield pending
                pending = None
                if out_of_budget():
                    yield ending("length")
                    break
            elif pending is None and stopped_now:
                yield ending("stop")
                break

            mask_job = None
            if matcher is not None and not stopped_now:
                mask_job = overlap.start(matcher, bitmask)
            keep = (pending.forced if pending else 0) + 1
            try:
                logits_out, cache = forward(model, torch.tensor([inputs], device=device), cache, keep)
            finally:
                if mask_job is not None:
                    overlap.finish(mask_job)
            stats.forward_passes += 1
            logits_all = logits_out[0, -keep:].float()

            # A step held back for its forced tokens' raw logprobs: they are known now.
            if pending is not None:
                forced_ids = pending.token_ids[-pending.forced :]
                for row, t in zip(logits_all[:-1], forced_ids, strict=True):
                    pending.logprobs.append(_top(torch.log_softmax(row, -1), t, top_k))
                if release(pending):
                    yield pending
                    break
                yield pending
                pending = None

            if out_of_budget():
                yield ending("length")
                break

            logits = logits_all[-1]
            raw_logprobs = torch.log_softmax(logits, -1) if (want_logprobs and params.raw_logprobs) else None
            if params.frequency_penalty or params.presence_penalty:
                if counts is None:
                    counts = torch.zeros_like(logits)
                    for t in detok.ids:
                        counts[t] += 1
                apply_penalties(logits, counts, params)
            if opening_bias and generated == 0:
                for t, value in opening_bias.items():
                    logits[t] += value
            if matcher is not None:
                check(True, "a mask request")
                if not bitmask.any():
                    raise GenerationError("the constraint allows no token here (engine dead end)")
                allowed = bitmask_to_bool(bitmask, compiled.vocab_size, device)
                apply_token_bitmask_inplace(logits, closer.narrow(allowed, detok.text, generated, logits))
                if not params.greedy and not torch.isfinite(logits).any():
                    raise GenerationError("the constraint allows no token here (engine dead end)")
            token, dist = sample(logits, params, generator, want_dist=want_logprobs and raw_logprobs is None)
            if matcher is not None and not math.isfinite(float(logits[token])):
                raise GenerationError("the constraint allows no token here (engine dead end)")

            if token in eos_token_ids or (matcher is None and token == compiled.engine.eos_token_id):
                if matcher is not None and not matcher.is_accepting():
                    raise GenerationError("the model ended the output before the constraint was complete")
                yield ending("stop")
                break

            step = Step(token_ids=[token], text="")
            if want_logprobs:
                step.logprobs.append(_top(raw_logprobs if raw_logprobs is not None else dist, token, top_k))
            if matcher is not None:
                check(matcher.consume(token), f"sampled token {token}")
                if not matcher.is_stopped():
                    more = matcher.forced_tokens()[: max(0, max_tokens - generated - 1)]
                    for t in more:
                        check(matcher.consume(t), f"forced token {t}")
                    step.token_ids.extend(more)
                    step.forced = len(more)
            generated += len(step.token_ids)
            stats.forced_tokens += step.forced
            if counts is not None:
                for t in step.token_ids:
                    counts[t] += 1
            inputs = step.token_ids
            pending = step


def decode(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    compiled: CompiledConstraint,
    params: SamplingParams,
    *,
    max_tokens: int,
    stop: list[str] | None = None,
    eos_token_ids: set[int],
    stats: DecodeStats | None = None,
    should_stop: Any = None,
    opening_bias: dict[int, float] | None = None,
) -> Iterator[Step]:
    """Generate one completion. The last Step has ``finish_reason`` set, and ``stats`` filled in.

    ``should_stop`` (a callable) lets a caller (a disconnected HTTP client) end generation early.
    ``opening_bias`` is added to those tokens' logits for the first token only.
    """
    stats = stats if stats is not None else DecodeStats()
    stats.prompt_tokens = len(prompt_ids)
    detok = _Detokenizer(tokenizer, stop or [])
    closer = BudgetCloser(tokenizer, compiled.vocab_size, eos_token_ids, max_tokens)
    steps = _run(
        model, tokenizer, prompt_ids, compiled, params,
        max_tokens=max_tokens, eos_token_ids=eos_token_ids, should_stop=should_stop,
        detok=detok, stats=stats, closer=closer, opening_bias=opening_bias,
    )
    for step in steps:
        stats.completion_tokens += len(step.token_ids)
        if step.finish_reason is not None:
            stats.text = detok.text
            stats.finish_reason = step.finish_reason
            stats.stop_sequence_hit = detok.stopped
            step.closed_by_budget = stats.closed_by_budget = closer.narrowed and step.finish_reason == "stop"
        yield step
