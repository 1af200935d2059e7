"""``constrain serve --ray``: the server's HTTP app on Ray Serve replicas.

Each replica builds the very app ``constrain serve`` runs (``constrain.server.create_app`` with the
same options: keys, limits, cache, models) and loads its models before Ray marks it ready, so the
proxy never routes a request to a replica that would answer 503 "loading". Ray Serve's HTTP proxy
forwards the ASGI traffic unchanged (streams included), so the ``openai`` SDK, ``huggingface_hub``
and the Playground talk to the cluster as to one server. Every response carries
``x-constrain-replica`` (the Ray replica id), which says who answered.

Sizing: a replica takes at most ``max_batch`` requests at once (its batch); further requests wait
in Ray's router, which hands them to the first replica with room. That keeps queued requests
movable: when a replica dies, what it had not started goes elsewhere. ``max_queue`` bounds those
waiting requests per proxy (Ray answers 503 beyond it).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from ray import serve
from ray.serve.deployment import Application
from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from constrain.errors import InvalidRequestError
from constrain.loading import default_max_batch, one_torch_thread_under_llama_cpp
from constrain.model import Model
from constrain.scale.options import Scaling, parse_autoscale
from constrain.server import api_keys, comma_list
from constrain.server.app import create_app
from constrain.server.shutdown import DEFAULT_SHUTDOWN_GRACE_S

log = logging.getLogger("constrain.scale")

REPLICA_HEADER = "x-constrain-replica"
DEFAULT_APP_NAME = "constrain"
DEPLOYMENT_NAME = "ConstrainServer"

# What each replica serves: one model (a path, a packaged name, None for the embedded one, or a
# zero-argument loader that Ray can pickle), or several by served name.
ModelSpec = str | None | Callable[[], Model] | Mapping[str, str | None | Callable[[], Model]]

_APP_OPTIONS = frozenset(name for name in inspect.signature(create_app).parameters if name != "model")


# --------------------------------------------------------------------------- the replica


class ReplicaHeader:
    """ASGI middleware: adds ``x-constrain-replica`` to every response, so clients and tests see
    which replica answered."""

    def __init__(self, app: ASGIApp, replica_id: str) -> None:
        self.app = app
        self.value = replica_id.encode("latin-1", "replace")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER.encode(), self.value)]}
            await send(message)

        await self.app(scope, receive, send_with_header)


class _Replica:
    """One Ray Serve replica: its own models, batch and cache. Ray calls ``__serve_build_asgi_app__``
    after the constructor and marks the replica ready once it returns."""

    def __init__(self, model: ModelSpec, options: dict[str, Any]) -> None:
        self.model_spec = model
        self.options = options
        try:
            self.replica_id = str(serve.get_replica_context().replica_tag)
        except Exception:  # outside a replica (a unit test building the class by hand)
            self.replica_id = f"pid-{os.getpid()}"
        self.server_app: Starlette | None = None

    async def __serve_build_asgi_app__(self) -> ASGIApp:
        spec = self.model_spec
        one_torch_thread_under_llama_cpp(list(spec.values()) if isinstance(spec, Mapping) else [spec],
                                         str(self.options.get("runtime", "auto")))
        app = create_app(spec, **self.options)
        self.server_app = app
        registry = app.state.constrain.models
        if registry.load_at_start:
            # Load before Ray marks the replica ready: the proxy then never routes to a replica
            # that is still loading, and a model that fails to load fails the replica's start.
            for _, holder in registry:
                holder.start()
                await holder.get(wait=True)
        log.info("constrain replica %s ready", self.replica_id)
        return ReplicaHeader(app, self.replica_id)

    def check_health(self) -> None:
        """Ray's periodic health check: a replica whose model failed to load is replaced."""
        if self.server_app is None:
            return
        for name, holder in self.server_app.state.constrain.models:
            if holder.state == "error":
                raise RuntimeError(f"model {name!r} failed to load on replica {self.replica_id}")

    async def __del__(self) -> None:
        """Ray's graceful shutdown, after ``graceful_shutdown_timeout_s``: what still runs ends
        cleanly (a stream's error event, a 503), then the models' threads stop."""
        app = getattr(self, "server_app", None)
        if app is None:
            return
        state = app.state.constrain
        state.drain.grace_s = 0.0
        await state.drain.run()
        for _, holder in state.models:
            if holder.model is not None:
                await asyncio.to_thread(holder.model.close)


ConstrainReplica = serve.ingress()(_Replica)


# --------------------------------------------------------------------------- the application


def _check_model(model: Any) -> None:
    """Replicas load their own models: what is sent to them must be a path, a name or a loader."""
    items = model.items() if isinstance(model, Mapping) else [("model", model)]
    for name, each in items:
        if isinstance(each, Model):
            raise InvalidRequestError(
                f"{name}: a loaded Model cannot be sent to Ray replicas (each loads its own); "
                "pass its path or packaged name, or a zero-argument loader", param="model")
        if each is not None and not isinstance(each, str) and not callable(each):
            raise InvalidRequestError(f"{name}: a model is a path, a packaged name, None or a loader, "
                                      f"got {type(each).__name__}", param="model")


def _replica_batch(model: Any, options: Mapping[str, Any]) -> int:
    """A replica's batch, for Ray's routing: ``max_batch``, else the default of the runtime its
    (first) model runs on; a loader's runtime is known only once it runs: transformers' then."""
    first = next(iter(model.values()), None) if isinstance(model, Mapping) else model
    runtime = options.get("runtime", "auto") if first is None or isinstance(first, str) else "transformers"
    return default_max_batch(options.get("max_batch"), runtime, first if isinstance(first, str) else None)


def ray_app(
    model: ModelSpec = None,
    *,
    replicas: int = 1,
    autoscale: tuple[int, int] | None = None,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    max_ongoing_requests: int | None = None,
    name: str = DEPLOYMENT_NAME,
    ray_actor_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> Application:
    """The server as a Ray Serve application, for ``serve.run(ray_app(...), route_prefix="/")``.

    ``model`` is what ``create_app`` takes, except a loaded ``Model`` (each replica loads its own).
    ``replicas`` fixed replicas, or ``autoscale=(MIN, MAX)``: Ray adds replicas while each has more
    than ``max_batch`` requests on average and removes them when idle (MIN may be 0). Each replica
    reserves ``num_cpus`` and ``num_gpus`` (``ray_actor_options`` adds to them: ``memory``,
    ``runtime_env``, ...). ``options`` are ``create_app``'s keywords (``api_keys``, ``max_batch``,
    ``max_queue``, ``cache_size``, ``runtime``, ...), checked here, before any replica starts.
    """
    unknown = sorted(set(options) - _APP_OPTIONS)
    if unknown:
        raise InvalidRequestError(f"unknown option(s) for the server: {', '.join(unknown)}", param=unknown[0])
    _check_model(model)
    scaling = Scaling(replicas=replicas, autoscale=autoscale)
    scaling.check()
    # Check the values with the app's own checks, in this process (a bad one would otherwise only
    # show as replicas failing to start); nothing is loaded.
    probe = create_app(_never_loaded, **options)
    probe.state.constrain.admission.shutdown(wait=False)
    max_batch = _replica_batch(model, options)
    max_queue = int(options.get("max_queue", 64))
    ongoing = max_ongoing_requests if max_ongoing_requests is not None else max_batch
    if not isinstance(ongoing, int) or ongoing < 1:
        raise InvalidRequestError(f"`max_ongoing_requests` must be a whole number >= 1, got {ongoing!r}",
                                  param="max_ongoing_requests")
    if "threads" in _APP_OPTIONS and options.get("threads") is None and num_gpus == 0:
        # llama.cpp's threads spin at each step: as many as the CPUs this replica reserved, not the machine's.
        options["threads"] = max(1, int(num_cpus))
    actor_options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, **(ray_actor_options or {})}
    deployment_options: dict[str, Any] = {
        "name": name,
        "ray_actor_options": actor_options,
        "max_ongoing_requests": ongoing,
        "max_queued_requests": max(1, max_queue),  # beyond: Ray's 503 (a replica's own queue stays empty)
        # Ray waits this long for requests in flight before calling the replica's __del__.
        "graceful_shutdown_timeout_s": float(options.get("shutdown_grace_s", DEFAULT_SHUTDOWN_GRACE_S)),
        "health_check_period_s": 5.0,
    }
    if scaling.autoscale is not None:
        low, high = scaling.autoscale
        deployment_options["autoscaling_config"] = {
            "min_replicas": low, "max_replicas": high, "initial_replicas": max(low, 1),
            "target_ongoing_requests": max(1, max_batch),
        }
    else:
        deployment_options["num_replicas"] = scaling.replicas
    deployment = serve.deployment(**deployment_options)(ConstrainReplica)
    return deployment.bind(model, dict(options))


def _never_loaded() -> Model:
    raise AssertionError("the options probe never loads a model")


def build_app(args: Mapping[str, Any]) -> Application:
    """An application builder for Ray's own tools (``serve run``, a ``serve deploy`` config, a
    KubeRay RayService): ``import_path: constrain.scale.ray_serve:build_app`` with ``args`` such as
    ``{"model": "smollm2-135m", "replicas": 2, "max_batch": 16, "api_keys": ["..."]}``.
    ``autoscale`` may be ``"1:4"``; ``api_keys`` a list or a comma-separated string; ``models`` a
    mapping of served names to paths (several models)."""
    args = dict(args)
    model: ModelSpec = args.pop("models", None) or args.pop("model", None)
    autoscale = args.pop("autoscale", None)
    if isinstance(autoscale, str):
        autoscale = parse_autoscale(autoscale)
    elif autoscale is not None:
        autoscale = (int(autoscale[0]), int(autoscale[1]))
    keys = args.pop("api_keys", ())
    keys = api_keys(comma_list(keys) if isinstance(keys, str) else keys)
    numbers = {"replicas": int, "num_cpus": float, "num_gpus": float, "max_batch": int, "max_queue": int,
               "max_tokens_limit": int, "max_request_bytes": int, "cache_size": int, "max_compiles": int,
               "compile_timeout_s": float, "shutdown_grace_s": float, "body_timeout_s": float}
    for key, kind in numbers.items():
        if isinstance(args.get(key), str):
            try:
                args[key] = kind(args[key])
            except ValueError:
                raise InvalidRequestError(f"{key} must be a number, got {args[key]!r}", param=key) from None
    return ray_app(model, autoscale=autoscale, api_keys=keys, **args)


# --------------------------------------------------------------------------- the CLI


def serve_cli(args: Any, scaling: Scaling) -> int:
    """``constrain serve --ray``: deploy on a Ray cluster (``--ray-address``, ``RAY_ADDRESS``, a
    cluster already running here, else a new local one), serve until SIGTERM/Ctrl-C, then remove
    the application (a cluster this command started stops with it)."""
    import ray

    from constrain.scale.options import quiet_local_cluster
    from constrain.server import app_options, served_models
    from constrain.server.playground import url as playground_url

    options = app_options(args)
    keys = options["api_keys"]
    app = ray_app(served_models(args.model), replicas=scaling.replicas, autoscale=scaling.autoscale,
                  num_cpus=args.replica_cpus, num_gpus=args.replica_gpus, **options)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    quiet_local_cluster()
    ray.init(address=args.ray_address, include_dashboard=False, logging_level=logging.WARNING)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        log.info("Ray cluster %s: deploying %s", ray.get_runtime_context().gcs_address, scaling.describe())
        serve.run(app, name=DEFAULT_APP_NAME, route_prefix="/")
        log.info("API keys: %s", f"{len(keys)} configured" if keys else "none (open)")
        log.info("Playground: %s (Ray Serve's proxy; x-constrain-replica names the replica)",
                 playground_url(args.host, args.port))
        stop.wait()
        log.info("stopping: removing the application (requests in flight get --shutdown-grace)")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            serve.delete(DEFAULT_APP_NAME)  # on a cluster of its own, ray.shutdown() then stops everything
        finally:
            ray.shutdown()
    return 0
