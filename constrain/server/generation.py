"""One request's generation: validated first, then in the model's batch, stoppable, cacheable.

Validation (parsing, compiling the constraint, the prompt) runs before a request is submitted,
so a bad request gets its 400 at once and not after waiting its turn. The model's decoding
core (``constrain.decoding``) runs it together with the others; a client that disconnects,
while waiting or while generating, cancels its own sequence and no other.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from constrain.deadline import CompileSlots, compile_deadline
from constrain.decoding import SequenceHandle
from constrain.errors import InvalidRequestError
from constrain.lru import LRUCache
from constrain.model import Model
from constrain.prepare import PreparedRequest
from constrain.requests import parse_request
from constrain.server.cache import cache_key, is_deterministic
from constrain.server.http_errors import sse_error_event
from constrain.server.sse import DONE, chunk_event
from constrain.types import ChatCompletionRequest

Cached = bytes | list[bytes]  # a non-streamed body, or a stream's events (without [DONE])
Outcome = Literal["done", "stopped", "skipped", "error"]


@dataclass
class GenerationRecord:
    """What became of one submitted generation; the last few are kept for ``/health`` and tests.

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
class Admitted:
    """A validated request: prepared for the model, or answered from the cache."""

    request: ChatCompletionRequest
    key: str | None  # cache key when the request is deterministic and caching is on
    prepared: PreparedRequest | None = None
    cached: Cached | None = None


def admit(
    model: Model,
    body: dict[str, Any],
    *,
    cache: LRUCache[str, Cached],
    use_cache: bool,
    max_tokens_limit: int | None,
    compile_timeout_s: float | None = None,
    compile_slots: CompileSlots | None = None,
) -> Admitted:
    """Validate ``body`` for ``model`` (blocking: run it in a thread); raises a 400 naming the field.

    A cache hit returns at once, with ``cached`` set: the same request was validated before.
    """
    request = parse_request(body)
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
            return Admitted(request=request, key=key, cached=cached)
    with compile_deadline(compile_timeout_s, compile_slots):  # compile errors (400) here
        prepared = model.prepare(request, default_max_tokens=max_tokens_limit)
    return Admitted(request=request, key=key, prepared=prepared)


def _stop(handle: SequenceHandle) -> Outcome:
    """Cancel a generation whose client left; what that made of it."""
    outcome: Outcome = "skipped" if handle.state == "waiting" else "stopped"
    handle.cancel()
    return outcome


async def complete(
    model: Model, admitted: Admitted, *, max_queue: int | None, cache: LRUCache[str, Cached], log: GenerationLog,
    disconnected: asyncio.Event,
) -> bytes | None:
    """A non-streamed answer; its JSON body, or None if the client left first.

    Raises OverloadedError (429) when the waiting line is full.
    """
    prepared = admitted.prepared
    assert prepared is not None
    handle = model.submit(prepared, max_queue=max_queue)
    answer = asyncio.ensure_future(model.complete_async(prepared))
    left = asyncio.ensure_future(disconnected.wait())
    outcome: Outcome = "done"
    try:
        await asyncio.wait({answer, left}, return_when=asyncio.FIRST_COMPLETED)
        if left.done() and not handle.finished:
            outcome = _stop(handle)  # the answer ends at the next step
        try:
            result = await answer
        except Exception:
            log.add(GenerationRecord(stream=False, outcome="error"))
            raise
    finally:
        left.cancel()
    log.add(GenerationRecord(stream=False, outcome=outcome, completion_tokens=result.usage.completion_tokens))
    if outcome != "done" or disconnected.is_set():
        return None
    body = result.model_dump_json().encode("utf-8")
    if admitted.key is not None:
        cache.put(admitted.key, body)
    return body


def start_stream(
    model: Model, admitted: Admitted, *, max_queue: int | None, cache: LRUCache[str, Cached], log: GenerationLog
) -> tuple[asyncio.Queue[bytes | None], Callable[..., None]]:
    """Submit a stream; returns its event queue and the stop callback: for a disconnect, or with
    the reason to send as the stream's last event when the server ends it.

    Raises OverloadedError (429) when the waiting line is full, before any byte is sent.
    """
    prepared = admitted.prepared
    assert prepared is not None
    handle = model.submit(prepared, max_queue=max_queue)
    events: asyncio.Queue[bytes | None] = asyncio.Queue()
    stopped: list[Outcome] = []

    async def produce() -> None:
        recorded: list[bytes] = []
        chunks = model.stream_async(prepared)
        try:
            async for chunk in chunks:
                event = chunk_event(chunk)
                recorded.append(event)
                events.put_nowait(event)
            events.put_nowait(DONE)
            outcome = stopped[0] if stopped else "done"
            log.add(GenerationRecord(stream=True, outcome=outcome, events=len(recorded)))
            if admitted.key is not None and outcome == "done":
                cache.put(admitted.key, recorded)
        except asyncio.CancelledError:
            log.add(GenerationRecord(stream=True, outcome=stopped[0] if stopped else _stop(handle),
                                     events=len(recorded)))
            raise
        except Exception as exc:  # after the 200 went out: an SSE error event
            log.add(GenerationRecord(stream=True, outcome="error", events=len(recorded)))
            events.put_nowait(sse_error_event(exc))
        finally:
            with contextlib.suppress(Exception):
                await chunks.aclose()  # type: ignore[attr-defined]
            events.put_nowait(None)

    task = asyncio.ensure_future(produce())

    def stop(reason: BaseException | None = None) -> None:
        if not stopped and not handle.finished:
            stopped.append(_stop(handle))
        ending = not task.done()
        task.cancel()
        if reason is not None and ending:
            events.put_nowait(sse_error_event(reason))  # before the end its cancelled producer puts

    return events, stop


def replay(events: list[bytes]) -> asyncio.Queue[bytes | None]:
    """A cached stream, as an event queue."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    for event in [*events, DONE, None]:
        queue.put_nowait(event)
    return queue
