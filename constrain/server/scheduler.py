"""FIFO admission and execution of generations, one at a time, off the event loop.

The model generates one request at a time (``Model.lock``), and a plain lock wakes waiters
in no particular order. Here every generation is a job on a single worker thread, so
requests start in the order they were admitted; at most ``max_queue`` wait behind the
running one, and the next one is refused with 429 (``OverloadedError``).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from constrain.errors import OverloadedError

T = TypeVar("T")


@dataclass
class SchedulerStats:
    """Counters for ``/health`` and tests: what was admitted, refused, started, cancelled."""

    admitted: int = 0
    refused: int = 0
    cancelled_waiting: int = 0
    start_order: list[int] = field(default_factory=list)  # tickets, in the order jobs started


class Scheduler:
    """Runs jobs one at a time, first come first served, with a bounded waiting line."""

    def __init__(self, max_queue: int = 64) -> None:
        if max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="constrain-generate")
        self._lock = threading.Lock()
        self._tickets = itertools.count()
        self.waiting = 0
        self.running = 0
        self.stats = SchedulerStats()

    def submit(self, fn: Callable[[], T]) -> tuple[int, Future[T]]:
        """Queue ``fn``; raises OverloadedError when ``max_queue`` jobs already wait."""
        with self._lock:
            if self.waiting + self.running > self.max_queue:
                self.stats.refused += 1
                raise OverloadedError(
                    f"server busy: {self.running} request(s) generating and {self.waiting} waiting "
                    f"(max_queue={self.max_queue}); retry later"
                )
            self.waiting += 1
            self.stats.admitted += 1
            ticket = next(self._tickets)

        def job() -> T:
            with self._lock:
                self.waiting -= 1
                self.running += 1
                self.stats.start_order.append(ticket)
            try:
                return fn()
            finally:
                with self._lock:
                    self.running -= 1

        return ticket, self._pool.submit(job)

    def cancel(self, future: Future[Any]) -> bool:
        """Drop a job that has not started; False if it is running or done."""
        if future.cancel():
            with self._lock:
                self.waiting -= 1
                self.stats.cancelled_waiting += 1
            return True
        return False

    async def run(self, fn: Callable[[], T], on_cancel: Callable[[], None] | None = None) -> T:
        """Submit ``fn`` and await its result; if the awaiting task is cancelled, drop or stop the job."""
        _, future = self.submit(fn)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not self.cancel(future) and on_cancel is not None:
                on_cancel()
            raise

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"waiting": self.waiting, "running": self.running, "max_queue": self.max_queue}

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
