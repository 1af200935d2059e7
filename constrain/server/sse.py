"""Server-sent events: chunk framing, and a response that notices when its client leaves.

Framing follows both SDKs: ``data: <one-line JSON>\\n\\n`` per event, ``data: [DONE]\\n\\n``
last, ``: keep-alive`` comments while a request waits its turn. Deltas carry only the fields
they set (``role`` once, tool-call ``id``/``name`` once), because the ``openai`` stream
helper concatenates every string it sees.

uvicorn silently drops writes to a closed connection, so the response watches ``receive``
for ``http.disconnect`` and calls ``on_disconnect`` (which stops the generation).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from constrain.types import ChatCompletionChunk

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


def _compact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def chunk_event(chunk: ChatCompletionChunk) -> bytes:
    """One chunk as one SSE event; ``delta`` keeps only the fields it sets."""
    data = chunk.model_dump(mode="json")
    for choice in data["choices"]:
        choice["delta"] = _compact(choice["delta"])
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


class EventStreamResponse:
    """An ASGI response that sends the byte events put on ``events`` until ``None``.

    Sends a keep-alive comment after ``keepalive_s`` of silence (a request waiting in the queue),
    and on client disconnect calls ``on_disconnect`` once and stops.
    """

    def __init__(
        self,
        events: asyncio.Queue[bytes | None],
        *,
        on_disconnect: Callable[[], None] | None = None,
        headers: Mapping[str, str] | None = None,
        keepalive_s: float = 10.0,
    ) -> None:
        self.events = events
        self.on_disconnect = on_disconnect
        self.keepalive_s = keepalive_s
        base = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no"}
        base.update(headers or {})
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in base.items()]
        self.disconnected = False
        self._stopped = False

    def _stop(self) -> None:
        if not self._stopped and self.on_disconnect is not None:
            self._stopped = True
            self.on_disconnect()

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self._stop()
                self.events.put_nowait(None)
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.create_task(self._watch(receive))
        get: asyncio.Future[bytes | None] | None = None
        finished = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            while True:
                if get is None:
                    get = asyncio.ensure_future(self.events.get())
                done, _ = await asyncio.wait({get}, timeout=self.keepalive_s)
                if not done:
                    await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    continue
                event, get = get.result(), None
                if event is None or self.disconnected:
                    finished = not self.disconnected
                    break
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if not self.disconnected:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if get is not None:
                get.cancel()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if not finished:  # cancelled, or a failed send: the generation has no reader any more
                self._stop()
