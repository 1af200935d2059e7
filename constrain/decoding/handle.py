"""The caller's side of one sequence: its Steps as they come, blocking or async, and ``cancel()``.

The core's thread puts Steps in; a thread iterates them (``for step in handle``) or an asyncio
task does (``async for step in handle``), woken through its own event loop, so that any number
of asyncio streams wait on one loop without a thread each. Leaving the iteration early (a
``break``, a dropped iterator, a disconnected client) cancels the sequence: its row is freed
at the next step.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Literal

from constrain.decoding.steps import DecodeStats, Step

State = Literal["waiting", "running", "done"]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SequenceHandle:
    """One submitted generation. Iterate it for its Steps; the last has ``finish_reason``."""

    def __init__(self, ticket: int, stats: DecodeStats, cancel: Callable[[SequenceHandle], None]) -> None:
        self.ticket = ticket
        self.stats = stats
        self.state: State = "waiting"
        self._cancel = cancel
        self._items: deque[Step | BaseException] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self._finished = False  # the last Step (or an error) went in
        self._consumed = False  # ... and came out

    # ------------------------------------------------------------------ the core's side

    def put(self, item: Step | BaseException) -> None:
        with self._lock:
            self._items.append(item)
            if isinstance(item, BaseException) or item.finish_reason is not None:
                self._finished = True
                self.state = "done"
            self._ready.notify_all()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            loop, future = waiter
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    @property
    def finished(self) -> bool:
        return self._finished

    # ------------------------------------------------------------------ the caller's side

    def cancel(self) -> None:
        """Stop generating (a no-op once finished). The Steps end with ``finish_reason: "length"``."""
        if not self._finished:
            self._cancel(self)

    def _take(self) -> Step:
        item = self._items.popleft()
        if isinstance(item, BaseException):
            self._consumed = True
            raise item
        if item.finish_reason is not None:
            self._consumed = True
        return item

    def __iter__(self) -> Iterator[Step]:
        try:
            while not self._consumed:
                with self._lock:
                    while not self._items:
                        self._ready.wait()
                    step = self._take()
                yield step
        finally:
            if not self._consumed:
                self.cancel()

    async def _next(self) -> Step:
        while True:
            with self._lock:
                if self._items:
                    return self._take()
                loop = asyncio.get_running_loop()
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            await future

    def __aiter__(self) -> AsyncIterator[Step]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Step]:
        try:
            while not self._consumed:
                yield await self._next()
        finally:
            if not self._consumed:
                self.cancel()
