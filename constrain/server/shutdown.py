"""Graceful shutdown: on SIGTERM the server drains instead of cutting its clients off.

While draining, new chat completions get 503 (``shutting_down``, ``Connection: close``) and
``/health`` answers 503 ``draining``, so that a load balancer stops sending work; the requests
already in flight go on for up to ``grace_s``. Whatever still runs then is ended cleanly: a
stream gets an SSE error event and its end, a non-streamed request a 503; then the server exits.
A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from constrain.errors import ShuttingDownError

if TYPE_CHECKING:
    import uvicorn

DEFAULT_SHUTDOWN_GRACE_S = 20.0
FLIGHT_KEY = "constrain.flight"  # where a chat request finds its Flight in the ASGI scope


class Flight:
    """One chat request in flight: how to end it early when the grace period is over."""

    def __init__(self) -> None:
        self.ended = False
        self._enders: list[Callable[[], None]] = []

    def on_end(self, ender: Callable[[], None]) -> None:
        self._enders.append(ender)

    def end(self) -> None:
        if not self.ended:
            self.ended = True
            for ender in self._enders:
                ender()

    def check(self) -> None:
        """Raise the 503 for a request that was ended before it was submitted."""
        if self.ended:
            raise ShuttingDownError()


class Drain:
    """The chat requests in flight and the drain that waits for them; one per app."""

    def __init__(self, grace_s: float = DEFAULT_SHUTDOWN_GRACE_S) -> None:
        self.grace_s = grace_s
        self.draining = False
        self._flights: set[Flight] = set()
        self._idle: asyncio.Event | None = None

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def check_open(self) -> None:
        if self.draining:
            raise ShuttingDownError()

    @contextlib.contextmanager
    def flight(self) -> Iterator[Flight]:
        flight = Flight()
        self._flights.add(flight)
        try:
            yield flight
        finally:
            self._flights.discard(flight)
            if not self._flights and self._idle is not None:
                self._idle.set()

    async def _until_idle(self, seconds: float) -> bool:
        self._idle = asyncio.Event()
        if not self._flights:
            return True
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Refuse new work, let the flights finish within the grace period, then end the rest."""
        self.draining = True
        if await self._until_idle(self.grace_s):
            return
        for flight in list(self._flights):
            flight.end()
        await self._until_idle(5.0)  # ended flights need a step or two to send their last event


class DrainTracking:
    """ASGI middleware: every chat request runs inside a Flight of the app's Drain."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/chat/completions"):
            await self.app(scope, receive, send)
            return
        with self.drain.flight() as flight:
            scope[FLIGHT_KEY] = flight
            await self.app(scope, receive, send)


def draining_server(config: uvicorn.Config, drain: Drain) -> uvicorn.Server:
    """A uvicorn server whose first SIGTERM/SIGINT drains ``drain`` before the usual shutdown."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: list[socket.socket] | None = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if drain.draining or self.loop is None:
                super().handle_exit(sig, frame)  # a second signal, or none served yet: exit now
                return
            drain.draining = True
            self.loop.call_soon_threadsafe(self._start_drain, sig)

        def _start_drain(self, sig: int) -> None:
            async def drain_then_exit() -> None:
                await drain.run()
                super(DrainingServer, self).handle_exit(sig, None)

            self._drain_task = asyncio.ensure_future(drain_then_exit())

    return DrainingServer(config)

