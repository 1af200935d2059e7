"""Raw request (keywords or dict) -> validated ChatCompletionRequest, with errors naming the field.

The one place where pydantic's ValidationError becomes a constrain error.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from constrain.errors import InvalidRequestError
from constrain.types import ChatCompletionRequest


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in ("function-after", "function-before")))]
    return ".".join(parts)


def parse_request(fields: dict[str, Any]) -> ChatCompletionRequest:
    try:
        return ChatCompletionRequest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _field(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if not where and message.startswith("`"):
            # Cross-field checks have no location; their message starts with the field at fault.
            where = message[1 : message.index("`", 1)]
        if first["type"] == "extra_forbidden":
            message = "unknown field; see the chat-completion spec for the accepted fields"
        elif first["type"] == "missing":
            message = "this field is required"
        detail = f"`{where}`: {message}" if where else message
        if "input" in first and first["type"] not in ("missing", "extra_forbidden") and where:
            shown = repr(first["input"])
            detail += f" (got {shown[:80]})"
        more = len(exc.errors()) - 1
        if more:
            detail += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise InvalidRequestError(detail, param=where or None) from None
