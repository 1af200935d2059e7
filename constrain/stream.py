"""Steps -> ChatCompletionChunks: the streaming view of a generation.

``role`` comes once, in the first chunk; content deltas follow; the last choice chunk
carries ``finish_reason``; with ``include_usage`` every chunk has ``usage: null`` and one
more chunk, with ``choices: []``, carries the usage (OpenAI's contract).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from constrain.decode import DecodeStats, Step
from constrain.output import OutputParser
from constrain.response import ResponseInfo, logprob_entries, reported_finish, usage_of
from constrain.types import ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, Delta, new_completion_id


def build_chunks(
    steps: Iterable[Step],
    parser: OutputParser,
    stats: DecodeStats,
    info: ResponseInfo,
    *,
    include_usage: bool,
) -> Iterator[ChatCompletionChunk]:
    ident, created = new_completion_id(), int(time.time())

    def chunk(delta: Delta, finish: Any = None, entries: Any = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=ident,
            created=created,
            model=info.model_name,
            system_fingerprint=info.fingerprint,
            choices=[
                ChunkChoice(
                    delta=delta,
                    finish_reason=finish,
                    logprobs=ChoiceLogprobs(content=logprob_entries(info.tokenizer, entries)) if entries else None,
                )
            ],
        )

    yield chunk(Delta(role="assistant", content=""))
    text_parts: list[str] = []
    held: list[Any] = []  # logprobs of tokens whose text is not shown yet
    finish = "length"
    closed = False
    for step in steps:
        text_parts.append(step.text)
        if info.logprobs:
            held.extend(step.logprobs)
        deltas = parser.feed(step.text)
        for i, delta in enumerate(deltas):
            yield chunk(delta, entries=held if (info.logprobs and i == 0 and held) else None)
            if i == 0:
                held = []
        if step.finish_reason is not None:
            finish = step.finish_reason
            closed = step.closed_by_budget
    _, finish_reason, rest = parser.finish("".join(text_parts), finish)  # type: ignore[arg-type]
    finish_reason = reported_finish(finish_reason, closed)
    for delta in rest:
        yield chunk(delta)
    yield chunk(Delta(), finish=finish_reason, entries=held if held else None)
    if include_usage:
        yield ChatCompletionChunk(
            id=ident,
            created=created,
            model=info.model_name,
            system_fingerprint=info.fingerprint,
            choices=[],
            usage=usage_of(stats),
        )
