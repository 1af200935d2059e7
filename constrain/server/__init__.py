"""HTTP server (``constrain serve``): the chat-completion API for ``openai`` and ``huggingface_hub`` clients.

``create_app`` builds the ASGI app (Starlette); ``serve`` runs it with uvicorn for the CLI.
One module per job: ``app`` (routes), ``auth``, ``cache``, ``loader`` (background load),
``generation`` (validation, the batch, the cache), ``sse``, ``errors`` (exceptions -> HTTP).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any

from constrain.deadline import DEFAULT_COMPILE_TIMEOUT_S
from constrain.decoding.core import DEFAULT_MAX_BATCH
from constrain.server.app import create_app

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


def serve(args: Any) -> int:
    """Run the server from parsed ``constrain serve`` arguments; returns when it stops."""
    import uvicorn

    keys = [*args.api_key, *[k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]]
    app = create_app(
        args.model,
        engine=args.engine,
        property_order="any" if getattr(args, "any_order", False) else "schema",
        api_keys=keys,
        max_queue=args.max_queue,
        max_batch=getattr(args, "max_batch", DEFAULT_MAX_BATCH),
        max_tokens_limit=args.max_tokens_limit,
        max_request_bytes=args.max_request_bytes,
        cache_size=getattr(args, "cache_size", 256),
        compile_timeout_s=getattr(args, "compile_timeout", DEFAULT_COMPILE_TIMEOUT_S),
        max_compiles=getattr(args, "max_compiles", None),
    )
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    if not keys and not _is_loopback(args.host):
        log.warning("serving on %s without --api-key: anyone who can reach this address can use it", args.host)
    log.info("API keys: %s", f"{len(keys)} configured" if keys else "none (open)")
    # A bounded graceful shutdown: open streams are cut (and their generations stopped) after 5 s.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=5)
    return 0
