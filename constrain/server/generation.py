"""One request's generation on the scheduler's worker: validated first, stoppable, cacheable.

Validation (parsing, compiling the constraint, the prompt) runs before a request joins the
queue, so a bad request gets its 400 at once and not after waiting its turn. Generation
checks a stop flag at every decode step: a client that disconnects, while waiting or while
generating, stops its own generation and no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from constrain.errors import InvalidRequestError
from constrain.model import Model
from constrain.requests import parse_request
from constrain.server.cache import LRUCache, cache_key, is_deterministic
from constrain.server.errors import sse_error_event
from constrain.server.scheduler import Scheduler
from constrain.server.sse import DONE, chunk_event
from constrain.types import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest

Cached = bytes | list[bytes]  # a non-streamed body, or a stream's events (without [DONE])
Outcome = Literal["done", "stopped", "skipped", "error"]


@dataclass
class GenerationRecord:
    """What became of one queued generation; the last few are kept for ``/health`` and tests.

    ``stopped``: the client left mid-generation; ``skipped``: it left while waiting its turn.
    """

    stream: bool
    outcome: Outcome
    completion_tokens: int | None = None  # non-streamed answers
    events: int | None = None  # streamed answers: chunks sent


class GenerationLog:
    """The last ``size`` GenerationRecords, and counts of each outcome; thread-safe."""

    def __init__(self, size: int = 100) -> None:
        self.records: deque[GenerationRecord] = deque(maxlen=size)
        self.counts: dict[str, int] = {"done": 0, "stopped": 0, "skipped": 0, "error": 0}
        self._lock = threading.Lock()

    def add(self, record: GenerationRecord) -> None:
        with self._lock:
            self.records.append(record)
            self.counts[record.outcome] += 1


@dataclass
class Prepared:
    """A validated request, ready to queue."""

    fields: dict[str, Any]  # keywords for Model.chat_completion (max_tokens filled in)
    request: ChatCompletionRequest
    key: str | None  # cache key when the request is deterministic and caching is on
    stop: threading.Event = field(default_factory=threading.Event)
    chunks: Iterator[ChatCompletionChunk] | None = None  # the lazy stream, for stream requests
    cached: Cached | None = None  # the answer, when the cache had it


def prepare(
    model: Model,
    body: dict[str, Any],
    *,
    cache: LRUCache[Cached],
    use_cache: bool,
    max_tokens_limit: int | None,
) -> Prepared:
    """Validate ``body`` for ``model`` (blocking: run it in a thread); raises a 400 naming the field.

    A cache hit returns at once, with ``cached`` set: the same request was validated before.
    """
    request = parse_request(body)
    fields = dict(body)
    given = request.token_limit()
    if max_tokens_limit is not None and given is not None and given > max_tokens_limit:
        name = "max_tokens" if request.max_tokens is not None else "max_completion_tokens"
        raise InvalidRequestError(
            f"`{name}` is {given}; this server allows at most {max_tokens_limit} (--max-tokens-limit)",
            param=name,
        )
    key = cache_key(request) if use_cache and is_deterministic(request) else None
    if key is not None:
        cached = cache.get(key)
        if cached is not None:
            return Prepared(fields=fields, request=request, key=key, cached=cached)
    plan = model.plan(request)  # compile errors (400) surface here, before queueing
    if given is None and max_tokens_limit is not None:
        prompt_tokens = len(model.tokenizer(plan.prompt, add_special_tokens=False)["input_ids"])
        room = model.context_length - prompt_tokens
        if room > 0:  # else chat_completion raises the "prompt too long" error itself
            fields["max_tokens"] = min(max_tokens_limit, room)
    prepared = Prepared(fields=fields, request=request, key=key)
    if request.stream:
        stream = model.chat_completion(**fields, should_stop=prepared.stop.is_set)
        prepared.chunks = stream  # type: ignore[assignment]
    return prepared


async def complete(
    model: Model, prepared: Prepared, scheduler: Scheduler, cache: LRUCache[Cached], log: GenerationLog
) -> bytes | None:
    """Generate a non-streamed answer in turn; its JSON body, or None if the client left first."""

    def job() -> ChatCompletion | None:
        if prepared.stop.is_set():  # left while waiting: skip
            log.add(GenerationRecord(stream=False, outcome="skipped"))
            return None
        try:
            result = model.chat_completion(**prepared.fields, should_stop=prepared.stop.is_set)
        except Exception:
            log.add(GenerationRecord(stream=False, outcome="error"))
            raise
        outcome: Outcome = "stopped" if prepared.stop.is_set() else "done"
        tokens = result.usage.completion_tokens  # type: ignore[union-attr]
        log.add(GenerationRecord(stream=False, outcome=outcome, completion_tokens=tokens))
        return result  # type: ignore[return-value]

    result = await scheduler.run(job, on_cancel=prepared.stop.set)
    if result is None or prepared.stop.is_set():
        return None
    body = result.model_dump_json().encode("utf-8")
    if prepared.key is not None:
        cache.put(prepared.key, body)
    return body


def start_stream(
    prepared: Prepared, scheduler: Scheduler, cache: LRUCache[Cached], log: GenerationLog
) -> tuple[asyncio.Queue[bytes | None], Callable[[], None]]:
    """Queue a stream's generation; returns its event queue and the stop callback for a disconnect.

    Raises OverloadedError (429) when the queue is full, before any byte is sent.
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[bytes | None] = asyncio.Queue()
    chunks = prepared.chunks
    assert chunks is not None

    def push(item: bytes | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the server is shutting down
            loop.call_soon_threadsafe(events.put_nowait, item)

    def job() -> None:
        recorded: list[bytes] = []
        try:
            if prepared.stop.is_set():
                log.add(GenerationRecord(stream=True, outcome="skipped"))
                return
            for chunk in chunks:
                event = chunk_event(chunk)
                recorded.append(event)
                push(event)
            push(DONE)
            stopped = prepared.stop.is_set()
            log.add(GenerationRecord(stream=True, outcome="stopped" if stopped else "done", events=len(recorded)))
            if prepared.key is not None and not stopped:
                cache.put(prepared.key, recorded)
        except Exception as exc:  # after the 200 went out: an SSE error event
            log.add(GenerationRecord(stream=True, outcome="error", events=len(recorded)))
            push(sse_error_event(exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            push(None)

    _, future = scheduler.submit(job)

    def stop() -> None:
        prepared.stop.set()
        scheduler.cancel(future)

    return events, stop


def replay(events: list[bytes]) -> asyncio.Queue[bytes | None]:
    """A cached stream, as an event queue."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    for event in [*events, DONE, None]:
        queue.put_nowait(event)
    return queue
