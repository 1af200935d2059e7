"""One sequence in the batch: its matcher, sampler, budget closer, detokenizer and stop rules.

The core (``core.py``) owns the loop and calls, per step: :meth:`Sequence.settle` (emit what
is known, say whether another forward pass is needed), then after the batch's forward pass
:meth:`Sequence.receive` (logits of its last positions), :meth:`Sequence.adjust` (raw
logprobs, penalties, bias on its logits row), the batch-wide mask, then :meth:`Sequence.advance`
with the token chosen. Forced tokens (fast-forward) join the sampled token in the same step,
so they cost no forward pass of their own; a finished or stopped output costs no further pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from constrain.decoding.budget import BudgetCloser
from constrain.decoding.detokenizer import Detokenizer
from constrain.decoding.sampling import SamplingParams, apply_penalties, make_generator, sample
from constrain.decoding.steps import DecodeStats, Step, StepLogprob
from constrain.errors import GenerationError, SchemaLimitError
from constrain.types import FinishReason
from constrain.vocab import Vocabulary


@dataclass
class DecodeJob:
    """Everything the core needs to generate one completion (built once per request)."""

    prompt_ids: list[int]
    compiled: Any  # a CompiledConstraint: matcher(), vocab_size, engine.eos_token_id
    params: SamplingParams
    max_tokens: int
    stop: list[str] = field(default_factory=list)
    # Added to these tokens' logits at the first sampled token (tool_choice "auto": opening a call).
    opening_bias: dict[int, float] | None = None
    # Generate exactly max_tokens (benchmarks: the same number of tokens as another run).
    ignore_eos: bool = False
    # A prompt with images: the processor's image inputs (pixel_values...), for the prefill.
    vision: dict[str, Any] | None = None


def top_entry(logprobs: torch.Tensor, token: int, k: int) -> StepLogprob:
    entry = StepLogprob(token, float(logprobs[token]))
    if k:
        values, ids = torch.topk(logprobs, k)
        entry.top = [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
    return entry


class Sequence:
    """A row of the batch. ``emit`` receives its Steps; the last one has ``finish_reason``."""

    def __init__(self, job: DecodeJob, *, tokenizer: Any, vocabulary: Vocabulary, eos_token_ids: set[int],
                 emit: Callable[[Step], None], stats: DecodeStats | None = None) -> None:
        self.job = job
        self.params = job.params
        self.max_tokens = job.max_tokens
        self.eos_token_ids = set() if job.ignore_eos else eos_token_ids
        self.eos_free = job.compiled.engine.eos_token_id  # ends unconstrained text too
        self.matcher = job.compiled.matcher()
        self.vocab_size: int = job.compiled.vocab_size
        self.generator = None if job.params.greedy else make_generator(job.params.seed)
        self.detok = Detokenizer(tokenizer, list(job.stop))
        self.closer = BudgetCloser(vocabulary, self.vocab_size, eos_token_ids, job.max_tokens)
        self.stats = stats if stats is not None else DecodeStats()
        self.stats.prompt_tokens = len(job.prompt_ids)
        self._emit = emit
        self.counts: torch.Tensor | None = None
        self.raw: torch.Tensor | None = None  # raw log-softmax of this step, when asked for
        self.generated = 0
        self.pending: Step | None = None
        self.inputs: list[int] = []
        self.stopped_now = False
        self.prefilling = True  # the prompt has not been fed in full yet
        self.cancelled = False  # set from another thread: ends the sequence at the next step
        self.done = False
        self.handle: Any = None  # the caller's side, set by the core
        self.steered = False  # this step's mask was narrowed by the budget closer

    def bind(self, handle: Any) -> None:
        """Send this row's steps to ``handle`` (the caller's side)."""
        self.handle = handle
        self._emit = handle.put

    # ------------------------------------------------------------------ emission

    @property
    def _raw_logprobs(self) -> bool:
        return self.params.logprobs and self.params.raw_logprobs

    def _out(self, step: Step) -> None:
        self.stats.completion_tokens += len(step.token_ids)
        if step.finish_reason is not None:
            self.done = True
            stats = self.stats
            stats.text = self.detok.text
            stats.finish_reason = step.finish_reason
            stats.stop_sequence_hit = self.detok.stopped
            stats.cancelled = self.cancelled
            step.closed_by_budget = stats.closed_by_budget = self.closer.narrowed and step.finish_reason == "stop"
        self._emit(step)

    def _end(self, reason: FinishReason) -> bool:
        """The last, token-less step: the text held back so far, and why generation ended."""
        self._out(Step(token_ids=[], text=self.detok.flush(), finish_reason=reason))
        return False

    def _release(self, step: Step) -> bool:
        """Give a step its text and send it; False when the output ends with it."""
        step.text = self.detok.push(step.token_ids)
        if self.detok.stopped or self.stopped_now:
            if not self.detok.stopped:
                step.text += self.detok.flush()
            step.finish_reason = "stop"
            self._out(step)
            return False
        self._out(step)
        return True

    def _zero_logprobs(self, step: Step) -> None:
        # In the distribution sampled from, a forced token had probability 1.
        top_k = self.params.top_logprobs
        for t in step.token_ids[len(step.logprobs) :]:
            step.logprobs.append(StepLogprob(t, 0.0, [(t, 0.0)] if top_k else []))

    def _out_of_budget(self) -> bool:
        return self.generated >= self.max_tokens or self.cancelled

    def _check(self, ok: bool, what: str) -> None:
        if not ok or (self.matcher is not None and self.matcher.error()):
            message = self.matcher.error() if self.matcher else ""
            if self.matcher is not None and self.matcher.hit_limit():
                raise SchemaLimitError(
                    f"the constraint is too complex for the engine at this point of the output ({message})",
                    limit="engine", param="response_format")
            raise GenerationError(f"the engine rejected {what}: {message}")

    def fail(self, error: Exception) -> None:
        """This row's mask could not be computed: the engine's own limit is the user's 400
        (``SchemaLimitError``), anything else is raised as it is."""
        self._check(True, "the mask")
        raise error

    # ------------------------------------------------------------------ the step, in order

    def start(self) -> bool:
        """Before the prefill: tokens forced before anything is sampled (``{"`` for an object)
        ride along with the prompt. False if the sequence ended already."""
        forced: list[int] = []
        if self.matcher is not None:
            forced = self.matcher.forced_tokens()[: self.max_tokens]
            for t in forced:
                self._check(self.matcher.consume(t), f"forced token {t}")
        self.inputs = list(self.job.prompt_ids) + forced
        self.pending = Step(token_ids=list(forced), text="", forced=len(forced)) if forced else None
        self.generated = len(forced)
        self.stats.forced_tokens += len(forced)
        return self.settle()

    def settle(self) -> bool:
        """Emit what is known before the next forward pass; False once the sequence has ended.

        The previous step goes out now unless its forced tokens wait for raw logprobs from the
        next pass: the text streams a pass earlier, and a finished output needs no further pass.
        """
        self.stopped_now = self.matcher is not None and self.matcher.is_stopped()
        pending = self.pending
        if pending is not None and not (self._raw_logprobs and pending.forced):
            if self.params.logprobs:
                self._zero_logprobs(pending)
            self.pending = None
            if not self._release(pending):
                return False
            if self._out_of_budget():
                return self._end("length")
        elif pending is None and self.stopped_now:
            return self._end("stop")
        elif pending is None and self.cancelled:
            return self._end("length")
        return True

    @property
    def keep(self) -> int:
        """How many last positions' logits the next pass must return for this row."""
        return (self.pending.forced if self.pending is not None else 0) + 1

    @property
    def needs_mask(self) -> bool:
        return self.matcher is not None and not self.stopped_now

    def receive(self, rows: torch.Tensor) -> bool:
        """Logits of this row's last ``keep`` positions are known. False if the sequence ended."""
        pending = self.pending
        if pending is not None:  # held back for its forced tokens' raw logprobs
            forced_ids = pending.token_ids[-pending.forced :]
            for row, t in zip(rows[:-1], forced_ids, strict=True):
                pending.logprobs.append(top_entry(torch.log_softmax(row.float(), -1), t, self.params.top_logprobs))
            self.pending = None
            if not self._release(pending):
                return False
        if self._out_of_budget():
            return self._end("length")
        return True

    def adjust(self, logits: torch.Tensor) -> None:
        """Before the mask, in place on this row's last-position logits: raw logprobs, penalties, bias."""
        self.raw = torch.log_softmax(logits, -1) if self._raw_logprobs else None
        params = self.params
        if params.frequency_penalty or params.presence_penalty:
            if self.counts is None:
                self.counts = torch.zeros_like(logits)
                for t in self.detok.ids:
                    self.counts[t] += 1
            apply_penalties(logits, self.counts, params)
        bias = self.job.opening_bias
        if bias and self.generated == 0:
            for t, value in bias.items():
                logits[t] += value

    def narrow(self, allowed: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The allowed tokens, narrowed by the budget closer when the budget is nearly spent."""
        narrowed = self.closer.narrow(allowed, self.detok.text, self.generated, logits, self.matcher)
        self.steered = narrowed is not allowed and not torch.equal(narrowed, allowed)
        return narrowed

    def choose(self, logits: torch.Tensor, greedy_token: int | None) -> tuple[int, torch.Tensor | None]:
        """The next token from the masked logits (the batch's argmax when greedy), and the
        distribution it came from when logprobs are asked for."""
        params = self.params
        want_dist = params.logprobs and self.raw is None
        if greedy_token is not None:
            return greedy_token, (torch.log_softmax(logits, -1) if want_dist else None)
        return sample(logits, params, self.generator, want_dist=want_dist)

    def sample_and_advance(self, logits: torch.Tensor, greedy_token: int) -> bool:
        """Pick the next token from this row's masked logits (``greedy_token``: the batch's
        argmax of it) and advance; False once the sequence ended."""
        token, dist = self.choose(logits, greedy_token if self.params.greedy else None)
        return self.advance(token, logits, dist)

    def advance(self, token: int, logits: torch.Tensor, dist: torch.Tensor | None) -> bool:
        """Append ``token`` (and whatever the constraint forces after it); False once ended."""
        matcher = self.matcher
        if matcher is not None and not math.isfinite(float(logits[token])):
            raise GenerationError("the constraint allows no token here (engine dead end)")
        if token in self.eos_token_ids or (matcher is None and token == self.eos_free):
            if matcher is not None and not matcher.is_accepting():
                self._check(True, "the end of the output")  # a matcher failed: its own error first
                raise GenerationError("the model ended the output before the constraint was complete")
            return self._end("stop")
        step = Step(token_ids=[token], text="", steered=self.steered)
        self.steered = False
        if self.params.logprobs:
            source = self.raw if self.raw is not None else dist
            assert source is not None
            step.logprobs.append(top_entry(source, token, self.params.top_logprobs))
        if matcher is not None:
            self._check(matcher.consume(token), f"sampled token {token}")
            if not matcher.is_stopped():
                more = matcher.forced_tokens()[: max(0, self.max_tokens - self.generated - 1)]
                for t in more:
                    self._check(matcher.consume(t), f"forced token {t}")
                step.token_ids.extend(more)
                step.forced = len(more)
        self.generated += len(step.token_ids)
        self.stats.forced_tokens += step.forced
        if self.counts is not None:
            for t in step.token_ids:
                self.counts[t] += 1
        self.inputs = step.token_ids
        self.pending = step
        return self.settle()
