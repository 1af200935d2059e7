"""A middleware for Ray Serve's HTTP proxy: a stream cut off by a dead replica ends with an error event.

When a replica dies in the middle of a stream, Ray's proxy stops forwarding without finishing
the response, so a client sees a broken chunked body ("incomplete read") instead of the error
event constrain sends whenever a stream fails after it started. This middleware watches event
streams through the proxy and, when one ends without its last body message, sends one
``data: {"error": ...}`` event (``type: replica_unavailable``) and finishes the response
properly, as the server itself would. Other responses pass through untouched.

Ray loads it in each proxy from the environment variable
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=constrain.scale.proxy:proxy_middlewares``, which must be
set where the Ray node starts (``constrain serve --ray`` sets it for a cluster it starts itself).
"""

from __future__ import annotations

import logging

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from constrain.errors import ReplicaUnavailableError
from constrain.server.http_errors import sse_error_event

log = logging.getLogger("constrain.scale")

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "constrain.scale.proxy:proxy_middlewares"

class FinishCutStreams:
    """ASGI middleware (proxy side): an event stream that ends without its final body message gets
    a ``replica_unavailable`` error event and a proper end."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"stream": False, "started": False, "finished": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        state["stream"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                state["finished"] = True
            await send(message)

        await self.app(scope, receive, watch)  # the proxy returns normally when the replica's stream broke
        if state["stream"] and state["started"] and not state["finished"]:
            event = sse_error_event(ReplicaUnavailableError())
            log.warning("an event stream was cut off (its replica stopped); sent the client an error event")
            try:
                await send({"type": "http.response.body", "body": event, "more_body": False})
            except Exception:  # the client left as well: nobody to tell
                pass


def proxy_middlewares() -> list[Middleware]:
    """What Ray's proxy calls through ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``."""
    return [Middleware(FinishCutStreams)]
