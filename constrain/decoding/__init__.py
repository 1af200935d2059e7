"""The decoding core: many sequences, one forward pass per step, each with its own constraint.

``core.py`` (the loop and its scheduler), ``sequence.py`` (one row's matcher, sampler, budget
and stops), ``handle.py`` (the caller's side), ``sampling.py`` and ``budget.py`` (tensor steps),
``runtimes/`` (the forward pass: ``transformers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from constrain.decoding.core import DEFAULT_MAX_BATCH, CoreStats, DecodingCore
from constrain.decoding.handle import SequenceHandle
from constrain.decoding.runtimes.base import Feed, Runtime, StepLogits
from constrain.decoding.sampling import SamplingParams
from constrain.decoding.sequence import DecodeJob
from constrain.decoding.steps import DecodeStats, Step, StepLogprob

__all__ = [
    "DEFAULT_MAX_BATCH",
    "CoreStats",
    "DecodeJob",
    "DecodeStats",
    "DecodingCore",
    "Feed",
    "Runtime",
    "SamplingParams",
    "SequenceHandle",
    "Step",
    "StepLogits",
    "StepLogprob",
    "decode",
]


def decode(
    hf_model: Any,
    tokenizer: Any,
    prompt_ids: list[int],
    compiled: Any,
    params: SamplingParams,
    *,
    max_tokens: int,
    eos_token_ids: set[int],
    stop: list[str] | None = None,
    stats: DecodeStats | None = None,
    opening_bias: dict[int, float] | None = None,
) -> Iterator[Step]:
    """One completion on its own core (for benchmarks and tests of the loop itself).

    A ``Model`` keeps one core for all its requests; use ``model.chat_completion`` instead.
    """
    from constrain.decoding.runtimes.transformers import TransformersRuntime

    # A CompiledConstraint brings its tokenizer's Vocabulary (the closer's tables, built once).
    core = DecodingCore(TransformersRuntime(hf_model), tokenizer=tokenizer, eos_token_ids=eos_token_ids, max_batch=1,
                        vocabulary=getattr(compiled, "vocabulary", None))
    try:
        job = DecodeJob(prompt_ids=list(prompt_ids), compiled=compiled, params=params, max_tokens=max_tokens,
                        stop=list(stop or []), opening_bias=opening_bias)
        yield from core.submit(job, stats=stats)
    finally:
        core.close()
