"""Steps -> ChatCompletion: the non-streaming view of a generation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from constrain.decoding import DecodeStats, Step, StepLogprob
from constrain.output import OutputParser
from constrain.prepare import ResponseInfo
from constrain.token_info import step_token_info
from constrain.types import (
    ChatCompletion,
    Choice,
    ChoiceLogprobs,
    FinishReason,
    TokenLogprob,
    TopLogprob,
    Usage,
)


def token_text(tokenizer: Any, token_id: int) -> tuple[str, list[int] | None]:
    """A token's text as users expect it (leading spaces decoded), and its UTF-8 bytes."""
    text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text, (None if "\ufffd" in text else list(text.encode("utf-8")))


def logprob_entries(tokenizer: Any, entries: list[StepLogprob]) -> list[TokenLogprob]:
    out = []
    for entry in entries:
        text, raw = token_text(tokenizer, entry.token_id)
        top = []
        for tid, value in entry.top:
            t_text, t_raw = token_text(tokenizer, tid)
            top.append(TopLogprob(token=t_text, logprob=value, bytes=t_raw))
        out.append(TokenLogprob(token=text, logprob=entry.logprob, bytes=raw, top_logprobs=top))
    return out


def reported_finish(finish_reason: FinishReason, closed_by_budget: bool) -> FinishReason:
    """An output the budget closer had to steer shut is complete, but the budget ended it."""
    return "length" if closed_by_budget else finish_reason


def usage_of(stats: DecodeStats) -> Usage:
    return Usage(
        prompt_tokens=stats.prompt_tokens,
        completion_tokens=stats.completion_tokens,
        total_tokens=stats.prompt_tokens + stats.completion_tokens,
    )


def build_completion(
    steps: Iterable[Step],
    parser: OutputParser,
    stats: DecodeStats,
    info: ResponseInfo,
) -> ChatCompletion:
    text_parts: list[str] = []
    entries: list[StepLogprob] = []
    finish = "length"
    closed = False
    infos: list[Any] = []
    for step in steps:
        text_parts.append(step.text)
        entries.extend(step.logprobs)
        if info.token_info:
            infos.extend(step_token_info(info.tokenizer, step))
        if step.finish_reason is not None:
            finish = step.finish_reason
            closed = step.closed_by_budget
    message, finish_reason, _ = parser.finish("".join(text_parts), finish)  # type: ignore[arg-type]
    finish_reason = reported_finish(finish_reason, closed)
    return ChatCompletion(
        model=info.model_name,
        system_fingerprint=info.fingerprint,
        choices=[
            Choice(
                message=message,
                finish_reason=finish_reason,
                logprobs=ChoiceLogprobs(content=logprob_entries(info.tokenizer, entries)) if info.logprobs else None,
                token_info=infos if info.token_info else None,
            )
        ],
        usage=usage_of(stats),
    )
