"""Generated text -> message fields. Plain content here; tool calls in ``constrain.tools``.

A parser sees the text as it is generated (``feed`` returns stream deltas) and once at the
end (``finish`` returns the message and the finish reason). Both views come from it, so
streamed and non-streamed answers cannot disagree.
"""

from __future__ import annotations

from typing import Protocol

from constrain.types import Delta, FinishReason, ResponseMessage


class OutputParser(Protocol):
    def feed(self, text: str) -> list[Delta]:
        """Deltas for newly generated text (may be empty while a parser buffers)."""

    def finish(self, text: str, finish_reason: FinishReason) -> tuple[ResponseMessage, FinishReason, list[Delta]]:
        """The whole message, its finish reason, and any deltas not yet streamed."""


class ContentParser:
    """Free text or constrained text: everything is ``content``."""

    def feed(self, text: str) -> list[Delta]:
        return [Delta(content=text)] if text else []

    def finish(self, text: str, finish_reason: FinishReason) -> tuple[ResponseMessage, FinishReason, list[Delta]]:
        return ResponseMessage(content=text), finish_reason, []
