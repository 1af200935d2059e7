"""The ASGI app: routes, request checks in order, and the wiring of loader, queue, cache and SSE.

Order of checks for a chat completion: key (401) -> draining (503) -> headers (400) -> body size (413) and time (408) -> JSON
(400) -> model ready (503, or wait) -> request valid (400) -> cache -> queue room (429) ->
generate in the model's batch. Everything raised before the response starts becomes an HTTP error in
``errors.error_response``; after a stream started, an SSE error event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from constrain.compiler import PropertyOrder
from constrain.deadline import DEFAULT_COMPILE_TIMEOUT_S, CompileSlots
from constrain.decoding import DEFAULT_MAX_BATCH
from constrain.errors import InvalidRequestError, RequestTimeoutError, RequestTooLargeError, ShuttingDownError
from constrain.images import ImagePolicy
from constrain.loading import RuntimeName
from constrain.lru import LRUCache
from constrain.model import Model
from constrain.server import playground
from constrain.server.auth import ApiKeys
from constrain.server.generation import Cached, GenerationLog, admit, complete, replay, start_stream
from constrain.server.http_errors import error_response
from constrain.server.loader import DEFAULT_LOAD_ESTIMATE_S, ModelHolder
from constrain.server.models import ModelRegistry, ModelSource
from constrain.server.shutdown import DEFAULT_SHUTDOWN_GRACE_S, FLIGHT_KEY, Drain, DrainTracking, Flight
from constrain.server.sse import EventStreamResponse

log = logging.getLogger("constrain.server")

DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024


@dataclass
class ServerState:
    """Everything a request handler needs; one per app, in ``app.state.constrain``."""

    models: ModelRegistry
    keys: ApiKeys
    max_queue: int
    cache: LRUCache[str, Cached]
    generations: GenerationLog
    max_tokens_limit: int | None
    max_request_bytes: int
    body_timeout_s: float
    keepalive_s: float
    compile_timeout_s: float | None
    compile_slots: CompileSlots
    drain: Drain
    # Validation and compiles run here, not on asyncio's default pool (a few threads): requests
    # waiting for a compile slot must not hold up the admission of requests whose constraint is cached.
    admission: ThreadPoolExecutor

    @property
    def holder(self) -> ModelHolder:
        """The default (first) model's holder."""
        return self.models.default


def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.headers.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise InvalidRequestError(f"header `{name}` must be `true` or `false`, got {raw[:40]!r}", param=name)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


async def _read_json(request: Request, limit: int, timeout_s: float) -> dict[str, Any]:
    """The body as a JSON object; a body that never finishes ends in a 408, not a held connection."""
    try:
        async with asyncio.timeout(timeout_s):
            raw = await _read_body(request, limit)
    except TimeoutError:
        raise RequestTimeoutError(f"the request body did not arrive in full within {timeout_s:g} s",
                                  param="body") from None
    try:
        body = json.loads(raw, parse_constant=_not_json)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}", param="body") from None
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply to be read", param="body") from None
    if not isinstance(body, dict):
        raise InvalidRequestError(f"request body must be a JSON object, got {type(body).__name__}", param="body")
    return body


async def _read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise RequestTooLargeError(
            f"request body is {int(length)} bytes; this server accepts at most {limit} (--max-request-bytes)",
            param="body",
        )
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise RequestTooLargeError(
                f"request body is over {limit} bytes; this server accepts at most {limit} (--max-request-bytes)",
                param="body",
            )
        parts.append(part)
    return b"".join(parts)


async def _watch_disconnect(request: Request, disconnected: asyncio.Event) -> None:
    """For non-streamed answers: after the body is read, the next message is the disconnect."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            disconnected.set()
            return


def _state(request: Request) -> ServerState:
    return request.app.state.constrain  # type: ignore[no-any-return]


def _errors_as_json(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
    async def wrapped(request: Request) -> Any:
        try:
            return await handler(request)
        except ClientDisconnect:  # left while sending its body: nobody to answer, nothing to log
            return Response(status_code=499)
        except Exception as exc:
            return error_response(exc)

    wrapped.__name__ = handler.__name__
    return wrapped


@_errors_as_json
async def chat_completions(request: Request) -> Any:
    state = _state(request)
    state.keys.check(request.headers.get("authorization"))
    state.drain.check_open()
    flight: Flight = request.scope[FLIGHT_KEY]
    use_cache = _flag(request, "x-use-cache", True)
    wait = _flag(request, "x-wait-for-model", False)
    body = await _read_json(request, state.max_request_bytes, state.body_timeout_s)
    model = await state.models.pick(body.get("model")).get(wait=wait)
    admitted = await asyncio.get_running_loop().run_in_executor(state.admission, functools.partial(
        admit, model, body, cache=state.cache, use_cache=use_cache, max_tokens_limit=state.max_tokens_limit,
        compile_timeout_s=state.compile_timeout_s, compile_slots=state.compile_slots,
    ))
    flight.check()  # the grace period ended while this request was compiling
    cached = admitted.cached
    headers = {"x-cache": "hit" if cached is not None else "miss"}

    if admitted.request.stream:
        if isinstance(cached, list):
            return EventStreamResponse(replay(cached), headers=headers, keepalive_s=state.keepalive_s)
        events, stop = start_stream(model, admitted, max_queue=state.max_queue, cache=state.cache,
                                    log=state.generations)
        flight.on_end(lambda: stop(ShuttingDownError()))
        return EventStreamResponse(events, on_disconnect=stop, headers=headers, keepalive_s=state.keepalive_s)

    if isinstance(cached, bytes):
        return Response(cached, media_type="application/json", headers=headers)
    disconnected = asyncio.Event()
    flight.on_end(disconnected.set)
    watcher = asyncio.create_task(_watch_disconnect(request, disconnected))
    try:
        answer = await complete(model, admitted, max_queue=state.max_queue, cache=state.cache,
                                log=state.generations, disconnected=disconnected)
    finally:
        watcher.cancel()
    if answer is None:
        if flight.ended:
            raise ShuttingDownError()
        return Response(status_code=499)  # the client left; nobody reads this
    return Response(answer, media_type="application/json", headers=headers)


@_errors_as_json
async def list_models(request: Request) -> JSONResponse:
    state = _state(request)
    state.keys.check(request.headers.get("authorization"))
    if len(state.models) == 1:  # one model: listed under its own name once loaded (503 until then)
        model = await state.holder.get(wait=_flag(request, "x-wait-for-model", False))
        return JSONResponse({"object": "list", "data": [state.models.card(model.name, state.holder)]})
    return JSONResponse({"object": "list", "data": [state.models.card(name, holder) for name, holder in state.models]})


@_errors_as_json
async def health(request: Request) -> JSONResponse:
    """Open (no key): 200 when ready, 503 while loading or draining, 500 if the load failed."""
    state = _state(request)
    holder = state.holder
    queue: dict[str, Any] = {"waiting": 0, "running": 0, "max_queue": state.max_queue}
    decode: dict[str, int] = {}
    if holder.model is not None:
        core = holder.model.core
        snap = core.snapshot()
        queue.update(waiting=snap["waiting"], running=snap["running"], max_batch=snap["max_batch"])
        decode = {"steps": core.stats.steps, "output_tokens": core.stats.output_tokens,
                  "fed_tokens": core.stats.fed_tokens, **core.runtime.memory()}
    body: dict[str, Any] = {
        "status": holder.state,
        "queue": queue,
        "generations": dict(state.generations.counts),
        "cache": {"entries": len(state.cache), "hits": state.cache.hits, "misses": state.cache.misses},
        "decode": decode,
    }
    if len(state.models) > 1:
        body["models"] = {name: each.state for name, each in state.models}
    if holder.model is not None:
        body["model"] = holder.model.name
        if state.drain.draining:
            body.update(status="draining", in_flight=state.drain.in_flight)
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)
    if holder.state in ("loading", "not_loaded"):
        body["estimated_time"] = holder.estimated_time()
        body["waiting_for_model"] = holder.waiting
        return JSONResponse(body, status_code=503)
    return JSONResponse(body, status_code=500)


async def _route_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = f"{exc.detail}: {request.method} {request.url.path}"
    return error_response(HTTPException(exc.status_code, detail))


def create_app(
    model: Model | str | Callable[[], Model] | Mapping[str, Model | str | Callable[[], Model] | None] | None = None,
    *,
    engine: str = "llguidance",
    property_order: PropertyOrder = "schema",
    api_keys: list[str] | tuple[str, ...] = (),
    max_queue: int = 64,
    max_batch: int | None = None,
    max_tokens_limit: int | None = 4096,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    body_timeout_s: float = 30.0,
    cache_size: int = 256,
    keepalive_s: float = 10.0,
    load_estimate_s: float = DEFAULT_LOAD_ESTIMATE_S,
    compile_timeout_s: float | None = DEFAULT_COMPILE_TIMEOUT_S,
    max_compiles: int | None = None,
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S,
    load_models_at_start: bool = True,
    image_policy: ImagePolicy | None = None,
    runtime: RuntimeName = "auto",
    threads: int | None = None,
) -> Starlette:
    """The HTTP app serving ``model``: a loaded Model, a path (or None: the embedded model), a
    factory, or a mapping of served names to those (several models, each in its own batch; see
    ``constrain.server.models`` for how a request's ``model`` picks one).

    A path, None or a factory is loaded in the background when the app starts (or on its first
    request, with ``load_models_at_start=False``); requests get 503 until it is ready (or wait,
    with ``x-wait-for-model: true``); ``runtime`` and ``threads`` run the models loaded
    here (see :func:`constrain.load`). ``image_policy``: where image parts may come from, for a
    vision-language model loaded here (default: ``data:`` URLs only). Requests run together in the
    model's batch (``max_batch``, for a model loaded here; default: its runtime's, see
    :func:`constrain.load`); ``max_queue`` more may wait for a
    place, beyond that they get 429. Compiling a request's constraints ends by
    ``compile_timeout_s`` (400 ``compile_timeout``); at most ``max_compiles`` compiles run at
    once (default: half the CPU cores), so that hostile schemas cannot take the CPU from
    generation; a request whose constraint is cached needs no compile. On SIGTERM (``serve``),
    requests in flight get ``shutdown_grace_s`` to finish (see ``constrain.server.shutdown``).
    """
    if max_compiles is None:
        max_compiles = max(1, (os.cpu_count() or 2) // 2)
    for name, value, least in (("max_queue", max_queue, 0), ("max_batch", 1 if max_batch is None else max_batch, 1),
                               ("max_compiles", max_compiles, 1)):
        if not isinstance(value, int) or value < least:
            raise InvalidRequestError(f"`{name}` must be a whole number >= {least}, got {value!r}", param=name)
    for name, seconds in (("shutdown_grace_s", shutdown_grace_s), ("body_timeout_s", body_timeout_s)):
        if not (isinstance(seconds, int | float) and seconds >= 0):
            raise InvalidRequestError(f"`{name}` must be a number of seconds >= 0, got {seconds!r}", param=name)
    if compile_timeout_s is not None and not (isinstance(compile_timeout_s, int | float) and compile_timeout_s > 0):
        raise InvalidRequestError(f"`compile_timeout_s` must be a number of seconds > 0, got {compile_timeout_s!r}",
                                  param="compile_timeout_s")
    def source(given: Model | str | Callable[[], Model] | None) -> ModelSource:
        if isinstance(given, Model) or callable(given):
            return given

        def load() -> Model:
            import constrain

            return constrain.load(given, engine=engine, property_order=property_order, max_batch=max_batch,
                                  compile_timeout_s=compile_timeout_s, image_policy=image_policy, runtime=runtime,
                                  threads=threads)

        return load

    given = model if isinstance(model, Mapping) else {"default": model}
    state = ServerState(
        models=ModelRegistry({name: source(each) for name, each in given.items()},
                             load_estimate_s=load_estimate_s, load_at_start=load_models_at_start),
        keys=ApiKeys(api_keys),
        max_queue=max_queue,
        cache=LRUCache(cache_size),
        generations=GenerationLog(),
        max_tokens_limit=max_tokens_limit,
        max_request_bytes=max_request_bytes,
        body_timeout_s=body_timeout_s,
        keepalive_s=keepalive_s,
        compile_timeout_s=compile_timeout_s,
        compile_slots=CompileSlots(max_compiles),
        drain=Drain(shutdown_grace_s),
        admission=ThreadPoolExecutor(max_workers=max(32, max_queue + (max_batch or DEFAULT_MAX_BATCH)), thread_name_prefix="constrain-admit"),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.models.start()
        try:
            yield
        finally:
            state.admission.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        *playground.routes(),  # the web page at `/` and its assets (constrain/server/playground.py)
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _route_error},
                    middleware=[Middleware(DrainTracking, drain=state.drain)])
    app.state.constrain = state
    return app
