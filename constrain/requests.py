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


def _lone_surrogate(fields: Any) -> str | None:
    """The dotted path of the first string holding a lone UTF-16 surrogate (``"\\ud800"`` in
    JSON): no tokenizer can encode it. Iterative: bodies may nest deeply."""
    stack: list[tuple[Any, str]] = [(fields, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path or "body"
        elif isinstance(value, dict):
            stack.extend((v, f"{path}.{k}" if path else str(k)) for k, v in value.items())
            stack.extend((k, path or "body") for k in value if isinstance(k, str))
        elif isinstance(value, list):
            stack.extend((v, f"{path}.{i}") for i, v in enumerate(value))
    return None


def parse_request(fields: dict[str, Any]) -> ChatCompletionRequest:
    where = _lone_surrogate(fields)
    if where is not None:
        raise InvalidRequestError(f"`{where}` holds a lone UTF-16 surrogate, which is not text", param=where)
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
