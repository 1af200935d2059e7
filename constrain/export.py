"""Export constrain's constraints to GPU servers that run llguidance (vLLM, SGLang).

``export_constraint`` turns a ``response_format`` and/or ``tools`` into the one Lark grammar
(JSON as ``%json`` sub-grammars) that constrain's own engine compiles for the request: the same
normalised schemas, the same regex translation, the same tool-call grammar. vLLM's guidance
backend takes it as ``structured_outputs={"grammar": ...}``, SGLang's llguidance backend as
``ebnf``; both read it with ``llguidance.grammar_from``, as the export's own check does.
``ExportedConstraint.parse`` reads the server's raw text back into ``content`` or ``tool_calls``.

What constrain keeps at run time beside the grammar (``uniqueItems`` over unbounded items,
``contains`` counts, any key order: ``constrain.engines.rules_matcher``) cannot travel in a
grammar: exporting it is an ``UnsupportedSchemaError`` (``code: not_exportable``) naming the
keyword, never a looser grammar.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from constrain.compiler import Constraint, PropertyOrder, Whitespace, parse_response_format
from constrain.constraints import check_text, engine_grammar
from constrain.deadline import compile_deadline, run_bounded
from constrain.engines import EngineGrammar
from constrain.engines.llguidance import check_portable
from constrain.errors import (
    CompileTimeoutError,
    ConstrainError,
    InvalidGrammarError,
    InvalidRequestError,
    SchemaLimitError,
    UnsupportedSchemaError,
    render_param,
)
from constrain.requests import parse_request
from constrain.schema import normalize
from constrain.schema.array_rules import ANY_INDEX, AnyKey, ArrayRule, Path, ValueRule
from constrain.tools import ToolCallParser, ToolSetup, build_grammar, resolve, tools_text
from constrain.tools.grammar import CLOSE, OPEN, json_rule, regex_literal, text_rules
from constrain.types import FinishReason, ResponseMessage

ExportKind = Literal["json", "regex", "grammar", "tools"]
Server = Literal["vllm", "sglang"]
NOT_EXPORTABLE = "not_exportable"
# What llguidance.grammar_from("grammar"/"ebnf") takes for Lark rather than GBNF.
_LARK_MARK = re.compile(r"(?m)^\s*(%llguidance\b|start\s*:)")


@dataclass(frozen=True)
class ExportedConstraint:
    """A constraint as a server's llguidance takes it, and the reader of what the server writes.

    ``grammar`` is Lark for llguidance. ``system_prompt`` (with tools) is the instruction and tool
    list constrain would put in the system message: the grammar forces the call format, the
    prompt tells the model about it.
    """

    grammar: str
    kind: ExportKind
    system_prompt: str | None = None
    tool_setup: ToolSetup | None = field(default=None, repr=False, compare=False)
    _check: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def extra_body(self, server: Server = "vllm") -> dict[str, Any]:
        """The request fields that carry the grammar (the ``openai`` SDK's ``extra_body``)."""
        if server == "vllm":
            return {"structured_outputs": {"grammar": self.grammar}}
        if server == "sglang":
            return {"ebnf": self.grammar}
        raise InvalidRequestError(f"`server` must be 'vllm' or 'sglang', got {server!r}", param="server")

    def parse(self, text: str, finish_reason: FinishReason = "stop") -> tuple[ResponseMessage, FinishReason]:
        """The server's raw output as an OpenAI message: ``content``, or ``tool_calls`` with ids.

        A complete output (``finish_reason == "stop"``) is validated as constrain validates its own;
        a failure means the server did not apply the grammar, and raises GenerationError.
        """
        if self.tool_setup is not None:
            message, reason, _ = ToolCallParser(self.tool_setup, check_text=self._check).finish(text, finish_reason)
            return message, reason
        if finish_reason == "stop" and self._check is not None:
            self._check(text)
        return ResponseMessage(content=text), finish_reason

    def to_dict(self) -> dict[str, Any]:
        """The export as JSON (``constrain compile --json``): the grammar and how to read tool calls."""
        out: dict[str, Any] = {"grammar": self.grammar, "kind": self.kind, "tool_calls": None}
        setup = self.tool_setup
        if setup is not None:
            out["tool_calls"] = {
                "open": OPEN,
                "close": CLOSE,
                "call": '{"name":<name>,"arguments":<JSON object>}',
                "separator": ",",
                "names": [spec.name for spec in setup.allowed],
                "mode": setup.mode,
                "max_one_call": setup.max_one_call,
                "text_allowed": setup.allows_text,
            }
            out["system_prompt"] = self.system_prompt
        return out

    def __str__(self) -> str:
        return self.grammar


def export_constraint(
    response_format: Any = None,
    *,
    tools: list[Any] | None = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool | None = None,
    tool_prompt: str | None = None,
    whitespace: Whitespace = "compact",
    close_objects: bool = False,
    property_order: PropertyOrder = "schema",
    compile_timeout_s: float | None = None,
) -> ExportedConstraint:
    """The llguidance grammar constrain would enforce for these request fields, for a GPU server.

    Parameters follow the chat-completion request and :func:`constrain.compile_constraint`. No
    tokenizer is needed: the grammar is compiled once without one, as the server will, so a
    grammar the server would refuse is an error here. ``compile_timeout_s`` bounds the work as
    compile_constraint's does; None by default (an export is made once, ahead of the requests).

    Raises
    ------
    constrain.errors.UnsupportedSchemaError
        ``code: not_exportable`` for what only constrain's runtime matcher keeps (``uniqueItems``
        over unbounded items, ``contains`` counts, ``property_order="any"``), naming the keyword.
    constrain.errors.InvalidRequestError
        (or a subclass) for anything ``compile_constraint`` or a request would refuse, naming the field.
    """
    if property_order not in ("schema", "any"):
        raise InvalidRequestError(f"`property_order` must be 'schema' or 'any', got {property_order!r}",
                                  param="property_order")
    param = "tools" if tools else "response_format"

    def export() -> ExportedConstraint:
        text = parse_response_format(response_format, whitespace=whitespace, close_objects=close_objects)
        if text.kind == "json" and property_order != text.property_order:
            text = dataclasses.replace(text, property_order=property_order)
        setup = _tool_setup(tools, tool_choice, parallel_tool_calls)
        if setup is None or setup.mode == "none":
            return _export_text(text)
        return _export_tools(setup, text, whitespace, tool_prompt)

    try:
        with compile_deadline(compile_timeout_s):
            return run_bounded(export)
    except CompileTimeoutError as exc:
        exc.locate(param)
        raise
    except RecursionError:  # nesting the static limits allow, multiplied through `$ref`s (as compile_constraint)
        raise SchemaLimitError("the constraint nests too deeply (through its `$ref`s) to be exported",
                               limit="depth", param=param) from None


def _tool_setup(tools: list[Any] | None, tool_choice: Any, parallel: bool | None) -> ToolSetup | None:
    """The request's tools checked as a request's are (errors name ``tools.0.function...``)."""
    if tools is None and tool_choice is None:
        return None
    fields: dict[str, Any] = {"messages": [{"role": "user", "content": "-"}], "tools": tools,
                              "tool_choice": tool_choice, "parallel_tool_calls": parallel}
    # Tool arguments are closed objects, as constrain enforces them (constrain.tools.plan_tools).
    return resolve(parse_request(fields), close_objects=True)


def _export_text(text: Constraint) -> ExportedConstraint:
    if text.kind == "text":
        raise InvalidRequestError("there is nothing to export: free text needs no grammar (set `response_format`, "
                                  "or `tools` with a tool_choice other than 'none')", param="response_format")
    grammar = _engine_grammar(text)
    lark = _lark(grammar)
    _check_portable(lark, grammar, text.param or "response_format")
    kind: ExportKind = "json" if text.kind == "json" else "regex" if text.kind == "regex" else "grammar"
    return ExportedConstraint(grammar=lark, kind=kind, _check=_text_check(text))


def _export_tools(setup: ToolSetup, text: Constraint, whitespace: Whitespace,
                  tool_prompt: str | None) -> ExportedConstraint:
    if setup.allows_text and text.kind != "text":
        _engine_grammar(text)  # the text branch must not need the runtime matcher either
    lark = build_grammar(setup, text, whitespace)
    try:
        _check_portable(lark, EngineGrammar("lark", lark), "tools")
    except InvalidGrammarError:
        raise _blame(setup, text, whitespace) from None
    return ExportedConstraint(grammar=lark, kind="tools", system_prompt=tools_text(setup, tool_prompt),
                              tool_setup=setup, _check=_text_check(text) if setup.allows_text else None)


def _engine_grammar(text: Constraint) -> EngineGrammar:
    """What constrain's engine compiles for ``text``; refused when it needs the runtime matcher."""
    grammar = engine_grammar(text)
    if grammar.rules:
        raise _not_exportable(text, grammar.rules)
    return grammar


def _lark(grammar: EngineGrammar) -> str:
    """One engine grammar as a standalone Lark grammar, the same language llguidance compiles."""
    if grammar.kind == "json_schema":
        schema = {} if grammar.source is True else grammar.source  # `%json true` would drop the layout options
        return "start: " + json_rule(schema, grammar.json.whitespace) + "\n"
    if grammar.kind == "regex":
        return "start: " + regex_literal(grammar.source) + "\n"
    source: str = grammar.source
    # Servers read a grammar without a `start:` line as GBNF; `%llguidance {}` marks it Lark.
    return source if _LARK_MARK.search(source) else "%llguidance {}\n" + source


def _check_portable(lark: str, grammar: EngineGrammar, param: str) -> None:
    try:
        check_portable(lark, grammar)
    except ConstrainError as exc:
        # An engine's refusal points into the schema it compiled (find_keyword's "/" is its root).
        at = exc.pointer if isinstance(exc, UnsupportedSchemaError) and exc.pointer != "/" else ""
        exc.locate(param, at)
        raise


def _blame(setup: ToolSetup, text: Constraint, whitespace: Whitespace) -> ConstrainError:
    """The tool grammar did not compile: the tool (or the text branch) the engine refuses, named."""
    for spec in setup.allowed:
        grammar = EngineGrammar("json_schema", spec.engine_schema)
        try:
            _check_portable(_lark(grammar), grammar, spec.param)
        except ConstrainError as exc:
            return exc
    if setup.allows_text:
        branch = "\n".join(["start: text", *text_rules(text, whitespace)]) + "\n"
        try:
            _check_portable(branch, engine_grammar(text) if text.kind != "text" else EngineGrammar("lark", branch),
                            text.param or "response_format")
        except ConstrainError as exc:
            return exc
    return InvalidRequestError("the tools cannot be compiled into a grammar", param="tools")


def _not_exportable(text: Constraint, rules: tuple[tuple[Path, Any], ...]) -> UnsupportedSchemaError:
    """The error for a constraint that needs the runtime matcher, naming the keyword and where."""
    param = text.param or "response_format"
    array = next((rule for _, rule in rules if isinstance(rule, ArrayRule | ValueRule)), None)
    if array is None:  # only objects whose keys may come in any order
        places = ", ".join(_show(path) for path, _ in rules[:3])
        return _refusal(
            f"`property_order`: any key order (objects at {places}) is kept by constrain's runtime matcher, which no "
            "grammar can express, so it cannot be exported; export with property_order='schema' (the schema's order)",
            keyword="properties", pointer="", param="property_order")
    if isinstance(array, ValueRule):  # the keyword has no grammar form: the matcher checks the finished value
        keyword, _, pointer = array.checks[0]
        where = render_param(param, pointer)
        return _refusal(f"`{where}`: this {keyword} has no exact grammar form, so constrain's runtime matcher "
                        "checks each value it governs when the value ends; no grammar can express that, so it "
                        "cannot be exported", keyword=keyword, pointer=pointer, param=where)
    keyword, pointer, where, reason = array.keyword, "", param, ""
    try:
        # Without the runtime matcher the normaliser says where and why the keyword has no grammar.
        normalize(text.schema, close_objects=text.close_objects, param=param)
    except UnsupportedSchemaError as exc:
        keyword, pointer, where, reason = exc.keyword or keyword, exc.pointer, exc.param or param, exc.message
    if not where.endswith("." + keyword):
        where += "." + keyword
    if not reason:
        reason = f"at instance path {_show(next(path for path, rule in rules if rule is array))}"
    return _refusal(f"`{where}`: {keyword} here is kept by constrain's runtime matcher, which no grammar can "
                    f"express, so it cannot be exported ({reason})", keyword=keyword, pointer=pointer, param=where)


def _refusal(message: str, *, keyword: str, pointer: str, param: str) -> UnsupportedSchemaError:
    exc = UnsupportedSchemaError(message, keyword=keyword, pointer=pointer, param=param)
    exc.code = NOT_EXPORTABLE
    return exc


def _text_check(text: Constraint) -> Callable[[str], None] | None:
    """Validation of a complete text answer, as ``CompiledConstraint.check_output`` does it."""
    if text.kind not in ("json", "regex"):
        return None
    return functools.partial(check_text, text, what="the server's output")


def _show(path: Path) -> str:
    steps = ["*" if isinstance(p, AnyKey) else "#" if p == ANY_INDEX else str(p) for p in path]
    return "/" + "/".join(steps)


__all__ = ["NOT_EXPORTABLE", "ExportKind", "ExportedConstraint", "export_constraint"]
