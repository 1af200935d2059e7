"""Steps -> ChatCompletionChunks: the streaming view of a generation.

``role`` comes once, in the first chunk; content deltas follow; the last choice chunk
carries ``finish_reason``; with ``include_usage`` every chunk has ``usage: null`` and one
more chunk, with ``choices: []``, carries the usage (OpenAI's contract).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from constrain.decoding import DecodeStats, Step
from constrain.output import OutputParser
from constrain.prepare import ResponseInfo
from constrain.response import logprob_entries, reported_finish, usage_of
from constrain.token_info import step_token_info
from constrain.types import ChatCompletionChunk, ChoiceLogprobs, ChunkChoice, Delta, new_completion_id


class ChunkBuilder:
    """Turns one generation's Steps into chunks, as they come (for sync and async streams alike)."""

    def __init__(self, parser: OutputParser, stats: DecodeStats, info: ResponseInfo, *, include_usage: bool) -> None:
        self.parser = parser
        self.stats = stats
        self.info = info
        self.include_usage = include_usage
        self.ident, self.created = new_completion_id(), int(time.time())
        self.text_parts: list[str] = []
        self.held: list[Any] = []  # logprobs of tokens whose text is not shown yet
        self.held_info: list[Any] = []  # token_info (extension) of tokens whose text is not shown yet
        self.finish = "length"
        self.closed = False

    def _envelope(self, choices: list[ChunkChoice], usage: Any = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.ident, created=self.created, model=self.info.model_name,
                                   system_fingerprint=self.info.fingerprint, choices=choices, usage=usage)

    def _chunk(self, delta: Delta, finish: Any = None, entries: Any = None) -> ChatCompletionChunk:
        logprobs = ChoiceLogprobs(content=logprob_entries(self.info.tokenizer, entries)) if entries else None
        infos = None
        if self.held_info:
            infos, self.held_info = self.held_info, []
        return self._envelope([ChunkChoice(delta=delta, finish_reason=finish, logprobs=logprobs, token_info=infos)])

    def start(self) -> list[ChatCompletionChunk]:
        return [self._chunk(Delta(role="assistant", content=""))]

    def feed(self, step: Step) -> list[ChatCompletionChunk]:
        out = []
        self.text_parts.append(step.text)
        if self.info.logprobs:
            self.held.extend(step.logprobs)
        if self.info.token_info:
            self.held_info.extend(step_token_info(self.info.tokenizer, step))
        for i, delta in enumerate(self.parser.feed(step.text)):
            out.append(self._chunk(delta, entries=self.held if (self.info.logprobs and i == 0 and self.held) else None))
            if i == 0:
                self.held = []
        if step.finish_reason is not None:
            self.finish = step.finish_reason
            self.closed = step.closed_by_budget
        return out

    def finish_chunks(self) -> list[ChatCompletionChunk]:
        _, finish_reason, rest = self.parser.finish("".join(self.text_parts), self.finish)  # type: ignore[arg-type]
        finish_reason = reported_finish(finish_reason, self.closed)
        out = [self._chunk(delta) for delta in rest]
        out.append(self._chunk(Delta(), finish=finish_reason, entries=self.held if self.held else None))
        if self.include_usage:
            out.append(self._envelope([], usage=usage_of(self.stats)))
        return out


def build_chunks(
    steps: Iterable[Step],
    parser: OutputParser,
    stats: DecodeStats,
    info: ResponseInfo,
    *,
    include_usage: bool,
) -> Iterator[ChatCompletionChunk]:
    builder = ChunkBuilder(parser, stats, info, include_usage=include_usage)
    yield from builder.start()
    for step in steps:
        yield from builder.feed(step)
    yield from builder.finish_chunks()


async def build_chunks_async(
    steps: AsyncIterator[Step],
    parser: OutputParser,
    stats: DecodeStats,
    info: ResponseInfo,
    *,
    include_usage: bool,
) -> AsyncIterator[ChatCompletionChunk]:
    builder = ChunkBuilder(parser, stats, info, include_usage=include_usage)
    for chunk in builder.start():
        yield chunk
    async for step in steps:
        for chunk in builder.feed(step):
            yield chunk
    for chunk in builder.finish_chunks():
        yield chunk
