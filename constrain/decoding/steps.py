"""What the decoding core hands back for one sequence: Steps, then the sequence's DecodeStats.

``response.py`` folds Steps into a ChatCompletion and ``stream.py`` turns them into chunks;
both read the same Steps, so streamed and non-streamed answers cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from constrain.types import FinishReason


@dataclass
class StepLogprob:
    """One output token's log-probability and the most likely alternatives, by token id
    (``constrain.types.TokenLogprob`` is its wire form, by text)."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Step:
    """Tokens appended in one step (one sampled, then any forced) and the text now safe to show."""

    token_ids: list[int]
    text: str
    logprobs: list[StepLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    forced: int = 0
    # The output is complete, but only because the budget closer steered it shut (budget.py).
    closed_by_budget: bool = False
    # The sampled token was drawn from a mask the budget closer had narrowed (the token view).
    steered: bool = False


@dataclass
class DecodeStats:
    """One sequence's counters, complete once its last Step (with ``finish_reason``) is out."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    forward_passes: int = 0
    forced_tokens: int = 0
    text: str = ""
    finish_reason: FinishReason | None = None
    stop_sequence_hit: bool = False
    closed_by_budget: bool = False
    cancelled: bool = False  # the caller stopped it (a disconnect, a dropped iterator)
