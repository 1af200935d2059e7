"""Generated text -> ``message.tool_calls`` (or ``content``), incrementally.

One state machine reads the output as it grows. ``feed`` returns the stream deltas
(role-less: ``stream.py`` sends the role once); ``finish`` returns the whole message.
Both come from the same state, so streamed and non-streamed answers agree, ids included.

The grammar fixes the layout byte for byte (``<tool_call>[{"name":"n","arguments":{...}},...]
</tool_call>``), so the parser only has to find where each arguments object ends:
it tracks string/escape state and bracket depth.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from constrain.errors import GenerationError
from constrain.nesting import Nesting
from constrain.schema import validate_instance
from constrain.tools.choice import ToolSetup
from constrain.tools.grammar import CLOSE, OPEN
from constrain.types import (
    Delta,
    DeltaFunction,
    DeltaToolCall,
    FinishReason,
    ResponseFunction,
    ResponseMessage,
    ResponseToolCall,
)

_HEAD = re.compile(r'\{"name":"([^"\\]*)","arguments":')


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class _Call:
    id: str
    name: str
    arguments: str = ""
    done: bool = False


class ToolCallParser:
    """Output parser for requests with tools. ``check_text`` validates a complete text answer."""

    def __init__(self, setup: ToolSetup, check_text: Callable[[str], None] | None = None) -> None:
        self.setup = setup
        self.check_text = check_text
        self.text = ""
        self.pos = 0
        self.state = "start"  # start -> content | open -> head -> args -> after -> ... -> done
        self.calls: list[_Call] = []
        self.nesting = Nesting()

    # ------------------------------------------------------------------ incremental

    def feed(self, text: str) -> list[Delta]:
        self.text += text
        deltas: list[Delta] = []
        while True:
            before = (self.state, self.pos)
            self._advance(deltas)
            if (self.state, self.pos) == before:
                return _merge(deltas)

    def _advance(self, out: list[Delta]) -> None:
        rest = self.text[self.pos :]
        if self.state == "start":
            if rest.startswith(OPEN):
                self.state, self.pos = "open", self.pos + len(OPEN)
            elif not self.setup.allows_text:
                return  # the grammar allows nothing else: wait for the envelope
            elif rest and not OPEN.startswith(rest):
                self.state = "content"
        elif self.state == "content":
            if rest:
                out.append(Delta(content=rest))
                self.pos = len(self.text)
        elif self.state == "open":
            if rest[:1] == "[":
                self.state, self.pos = "head", self.pos + 1
        elif self.state == "head":
            found = _HEAD.match(rest)
            if found:
                call = _Call(id=new_call_id(), name=found.group(1))
                self.calls.append(call)
                self.state, self.pos = "args", self.pos + found.end()
                self.nesting = Nesting()
                out.append(_tool_delta(len(self.calls) - 1, call, header=True))
        elif self.state == "args":
            self._scan_arguments(rest, out)
        elif self.state == "after":  # after an arguments object: '}' then ',' or ']'
            if len(rest) >= 2 and rest[0] == "}":
                if rest[1] == ",":
                    self.state, self.pos = "head", self.pos + 2
                elif rest[1] == "]":
                    self.state, self.pos = "close", self.pos + 2
        elif self.state == "close":
            if rest.startswith(CLOSE):
                self.state, self.pos = "done", self.pos + len(CLOSE)

    def _scan_arguments(self, rest: str, out: list[Delta]) -> None:
        call = self.calls[-1]
        end = self.nesting.feed(rest, stop_at_zero=True)
        piece = rest if end is None else rest[:end]
        if piece:
            call.arguments += piece
            self.pos += len(piece)
            out.append(_tool_delta(len(self.calls) - 1, call, fragment=piece))
        if end is not None:
            call.done = True
            self.state = "after"

    # ------------------------------------------------------------------ final

    def finish(self, text: str, finish_reason: FinishReason) -> tuple[ResponseMessage, FinishReason, list[Delta]]:
        if text.startswith(self.text):
            rest = self.feed(text[len(self.text) :])
        else:  # the non-streaming view: nothing was fed
            self.__init__(self.setup, self.check_text)  # type: ignore[misc]
            rest = self.feed(text)
        if self.state == "start" and self.pos < len(self.text) and self.setup.allows_text:
            # Text that stopped while it still looked like the start of '<tool_call>'.
            self.state = "content"
            rest = _merge(rest + self.feed(""))
        complete = finish_reason == "stop" and self.state in ("done", "content")
        if self.calls:
            if complete:
                self._validate()
            message = ResponseMessage(
                content=None,
                tool_calls=[
                    ResponseToolCall(id=c.id, function=ResponseFunction(name=c.name, arguments=c.arguments))
                    for c in self.calls
                ],
            )
            return message, ("tool_calls" if complete else finish_reason), rest
        if self.state == "content":
            if complete and self.check_text is not None:
                self.check_text(self.text)
            return ResponseMessage(content=self.text), finish_reason, rest
        return ResponseMessage(content=None), finish_reason, rest

    def _validate(self) -> None:
        """A failure here is a bug: the grammar allowed output the schema rejects."""
        for call in self.calls:
            spec = self.setup.spec(call.name)
            if spec is None or spec not in self.setup.allowed:
                raise GenerationError(f"the model called {call.name!r}, which this request does not allow")
            try:
                value = json.loads(call.arguments)
            except json.JSONDecodeError as exc:
                raise GenerationError(f"tool call arguments are not JSON ({exc}): {call.arguments[:200]!r}") from None
            problem = validate_instance(spec.schema_text, value)
            if problem:
                raise GenerationError(
                    f"arguments of {call.name!r} fail the tool's schema {problem}: {call.arguments[:200]!r}"
                )
        if self.setup.max_one_call and len(self.calls) > 1:
            raise GenerationError(f"{len(self.calls)} tool calls where at most one is allowed")


def _tool_delta(index: int, call: _Call, *, header: bool = False, fragment: str = "") -> Delta:
    if header:
        entry = DeltaToolCall(
            index=index, id=call.id, type="function", function=DeltaFunction(name=call.name, arguments="")
        )
    else:
        entry = DeltaToolCall(index=index, function=DeltaFunction(arguments=fragment))
    return Delta(tool_calls=[entry])


def _merge(deltas: list[Delta]) -> list[Delta]:
    """Join consecutive fragments of one call (or of content): fewer chunks, one entry per index."""
    out: list[Delta] = []
    for delta in deltas:
        last = out[-1] if out else None
        if last is not None and delta.content is not None and last.content is not None:
            last.content += delta.content
            continue
        if (
            last is not None
            and delta.tool_calls
            and last.tool_calls
            and delta.tool_calls[0].index == last.tool_calls[0].index
            and delta.tool_calls[0].id is None
            and last.tool_calls[0].function is not None
        ):
            fn = last.tool_calls[0].function
            fn.arguments = (fn.arguments or "") + (delta.tool_calls[0].function.arguments or "")  # type: ignore[union-attr]
            continue
        out.append(delta)
    return out
