"""HTTP server (``constrain serve``): the chat-completion API for ``openai`` and ``huggingface_hub`` clients.

``create_app`` builds the ASGI app (Starlette); ``serve`` runs it with uvicorn for the CLI.
One module per job: ``app`` (routes), ``auth``, ``cache``, ``loader`` (background load),
``generation`` (validation, the batch, the cache), ``sse``, ``errors`` (exceptions -> HTTP).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from constrain.deadline import DEFAULT_COMPILE_TIMEOUT_S
from constrain.decoding.allocator import ALLOCATOR
from constrain.errors import InvalidRequestError
from constrain.images import ImagePolicy
from constrain.loading import one_torch_thread_under_llama_cpp
from constrain.server.app import create_app
from constrain.server.playground import url as playground_url
from constrain.server.shutdown import DEFAULT_SHUTDOWN_GRACE_S, draining_server

__all__ = ["create_app", "serve"]

log = logging.getLogger("constrain.server")

API_KEYS_ENV = "CONSTRAIN_API_KEYS"  # comma-separated; keeps keys out of `ps` and shell history


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def served_models(values: list[str] | str | None) -> str | None | dict[str, str | None]:
    """``--model`` values: one PATH (served under any name), or NAME=PATH pairs (several)."""
    if values is None or isinstance(values, str):
        return values
    if len(values) == 1 and "=" not in values[0]:
        return values[0]
    served: dict[str, str | None] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InvalidRequestError(f"--model {value!r}: with several models, each is NAME=PATH", param="model")
        if name.strip() in served:
            raise InvalidRequestError(f"--model: the name {name.strip()!r} is given twice", param="model")
        served[name.strip()] = path.strip()
    return served


def comma_list(text: str) -> list[str]:
    """A comma-separated option's values, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def api_keys(given: Iterable[str] = ()) -> list[str]:
    """The keys given (``--api-key``, a config's list) and those in ``CONSTRAIN_API_KEYS``."""
    return [*given, *comma_list(os.environ.get(API_KEYS_ENV, ""))]


def app_options(args: Any) -> dict[str, Any]:
    """``create_app``'s keywords from parsed ``constrain serve`` arguments (also for ``--ray``)."""
    local_media = getattr(args, "allowed_local_media_path", None)
    return {
        "engine": args.engine,
        "runtime": getattr(args, "runtime", "auto"),
        "threads": getattr(args, "threads", None),
        "property_order": "any" if getattr(args, "any_order", False) else "schema",
        "api_keys": api_keys(args.api_key),
        "max_queue": args.max_queue,
        "max_batch": getattr(args, "max_batch", None),
        "max_tokens_limit": args.max_tokens_limit,
        "max_request_bytes": args.max_request_bytes,
        "cache_size": getattr(args, "cache_size", 256),
        "compile_timeout_s": getattr(args, "compile_timeout", DEFAULT_COMPILE_TIMEOUT_S),
        "max_compiles": getattr(args, "max_compiles", None),
        "shutdown_grace_s": getattr(args, "shutdown_grace", DEFAULT_SHUTDOWN_GRACE_S),
        "body_timeout_s": getattr(args, "body_timeout", 30.0),
        "load_models_at_start": getattr(args, "load_models", "start") == "start",
        "image_policy": ImagePolicy(
            fetch_domains=tuple(comma_list(getattr(args, "allow_image_fetch", ""))),
            allow_private=getattr(args, "allow_private_image_hosts", False),
            local_root=Path(local_media) if local_media else None,
        ),
    }


def serve(args: Any) -> int:
    """Run the server from parsed ``constrain serve`` arguments; returns when it stops."""
    import uvicorn

    ALLOCATOR.tune()  # this process is the server's: large blocks in mmap from the start
    models = served_models(args.model)
    one_torch_thread_under_llama_cpp(list(models.values()) if isinstance(models, dict) else [models],
                                     getattr(args, "runtime", "auto"))
    options = app_options(args)
    keys = options["api_keys"]
    app = create_app(models, **options)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    if not keys and not _is_loopback(args.host):
        log.warning("serving on %s without --api-key: anyone who can reach this address can use it", args.host)
    log.info("API keys: %s", f"{len(keys)} configured" if keys else "none (open)")
    log.info("Playground: %s", playground_url(args.host, args.port))
    # SIGTERM drains first (constrain.server.shutdown); uvicorn's own shutdown then has 5 s more.
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
    draining_server(config, app.state.constrain.drain).run()
    return 0
