"""The one place where exceptions become HTTP: status, JSON body, headers, SSE error events.

Bodies are OpenAI's ``{"error": {message, type, param, code}}`` plus a top-level
``error_type`` that ``huggingface_hub`` maps to its own exception classes (``validation``,
``overloaded``...); the message also goes in ``X-Error-Message``, which ``huggingface_hub``
shows verbatim. Anything that is not a ``ConstrainError`` is a bug: 500, logged with its traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from constrain.errors import (
    ConstrainError,
    GenerationError,
    InvalidRequestError,
    ModelNotReadyError,
    OverloadedError,
    ShuttingDownError,
)

log = logging.getLogger("constrain.server")


class RouteError(ConstrainError):
    """No such route, or a wrong method for it (404 / 405 from the router)."""

    error_type = "not_found"

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code  # type: ignore[misc]  # per instance: 404 or 405


class InternalServerError(ConstrainError):
    """A bug in constrain; the traceback is in the server log."""


def as_constrain_error(exc: BaseException) -> ConstrainError:
    """Any exception as a ConstrainError; non-constrain exceptions are logged as bugs."""
    if isinstance(exc, ConstrainError):
        return exc
    if isinstance(exc, HTTPException):
        return RouteError(str(exc.detail), exc.status_code)
    log.error("internal error", exc_info=(type(exc), exc, exc.__traceback__))
    return InternalServerError(f"internal error ({type(exc).__name__}: {exc}); see the server log")


def _hf_error_type(exc: ConstrainError) -> str:
    if isinstance(exc, InvalidRequestError):
        return "validation"
    if isinstance(exc, OverloadedError):
        return "overloaded"
    if isinstance(exc, GenerationError):
        return "generation"
    return exc.error_type


def error_body(exc: ConstrainError) -> dict[str, Any]:
    body = exc.to_dict()
    body["error_type"] = _hf_error_type(exc)
    return body


def _header_safe(text: str) -> str:
    """One line of visible Latin-1: a header may hold no control character (a NUL from a user's
    field name would make the HTTP layer drop the connection instead of answering), nor end in
    a space (a message cut at 500 characters may)."""
    flat = " ".join(text.split())[:500].rstrip()
    return "".join(c if 32 <= ord(c) < 127 or 160 <= ord(c) < 256 else "?" for c in flat)


def error_response(exc: BaseException) -> JSONResponse:
    """The HTTP response for an exception raised before any byte of the response was sent."""
    error = as_constrain_error(exc)
    headers = {"x-error-message": _header_safe(error.message)}
    if isinstance(error, ModelNotReadyError) and error.estimated_time is not None:
        headers["retry-after"] = str(max(1, round(error.estimated_time)))
    elif isinstance(error, OverloadedError):
        headers["retry-after"] = "1"
    elif isinstance(error, ShuttingDownError):
        headers["connection"] = "close"  # this replica is going away: do not reuse the connection
    if error.status_code == 401:
        headers["www-authenticate"] = "Bearer"
    return JSONResponse(error_body(error), status_code=error.status_code, headers=headers)


def sse_error_event(exc: BaseException) -> bytes:
    """An error after streaming started: one ``data:`` event that both SDKs raise on."""
    error = as_constrain_error(exc)
    body = error_body(error)
    body["error"]["http_status_code"] = error.status_code
    return b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n"
