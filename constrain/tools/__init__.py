"""Tool calling: ``tools`` / ``tool_choice`` / ``tool_prompt`` -> prompt + grammar; output -> ``tool_calls``.

One job per module: :mod:`choice` validates the request, :mod:`prompt` renders it,
:mod:`grammar` writes the Lark grammar, :mod:`parser` reads the output back.
"""

from __future__ import annotations

from constrain.errors import ConstrainError, InvalidRequestError
from constrain.output import ContentParser
from constrain.plan import Plan, Planner
from constrain.tools.choice import ToolSetup, ToolSpec, parse_tool_choice, resolve
from constrain.tools.grammar import build_grammar, format_calls, opening_tokens
from constrain.tools.parser import ToolCallParser
from constrain.tools.prompt import DEFAULT_TOOL_PROMPT, render_with_tools, tools_text
from constrain.types import ChatCompletionRequest

__all__ = [
    "DEFAULT_TOOL_PROMPT",
    "ToolCallParser",
    "ToolSetup",
    "ToolSpec",
    "build_grammar",
    "format_calls",
    "has_tool_history",
    "parse_tool_choice",
    "plan_tools",
    "render_with_tools",
    "resolve",
    "tools_text",
]


def has_tool_history(request: ChatCompletionRequest) -> bool:
    """Whether past calls or tool results must be rendered (even when no tools are sent now)."""
    return any(m.tool_calls or m.role == "tool" for m in request.messages)


def plan_tools(model: Planner, request: ChatCompletionRequest) -> Plan | None:
    """Prompt, constraint and parser for a request with tools; None when nothing here applies."""
    # Tool arguments are closed objects: declared keys only (unless a schema says
    # additionalProperties itself). Measured on BFCL simple: open objects let the model invent
    # keys (5-9% of calls) and loop on them, with no gain in accuracy (benchmarks/RESULTS.md).
    setup = resolve(request, close_objects=True)
    if setup is None and not has_tool_history(request):
        return None
    prompt = render_with_tools(model.tokenizer, request.messages, setup, request.tool_prompt, images=model.images)
    text = model.compile(request.response_format)  # the text branch; errors name response_format
    if setup is None or setup.mode == "none":
        return Plan(prompt=prompt, compiled=text, parser=ContentParser())
    if "lark" not in text.engine.grammar_kinds:
        raise InvalidRequestError(
            f"tool calling needs a Lark grammar engine; this model uses {text.engine.name!r} (load it with "
            "engine='llguidance')",
            param="tools",
        )
    grammar = build_grammar(setup, text.constraint, model.whitespace)
    try:
        compiled = model.compile({"type": "grammar", "value": grammar})
    except ConstrainError:
        raise _blame_tool(model, setup) from None
    # A stop string may cut a text answer short: such a prefix is not validated (README, `stop`).
    check = text.check_output if not (text.is_unconstrained or request.stop) else None
    bias = request.tool_call_bias if request.tool_call_bias is not None else model.tool_call_bias
    opening = {t: bias for t in opening_tokens(model.vocabulary)} if setup.mode == "auto" and bias else None
    return Plan(prompt=prompt, compiled=compiled, parser=ToolCallParser(setup, check_text=check),
                opening_bias=opening)


def _blame_tool(model: Planner, setup: ToolSetup) -> ConstrainError:
    """The grammar did not compile: find the tool whose schema the engine refuses, and name it."""
    for spec in setup.allowed:
        try:
            model.compile({"type": "json", "value": spec.schema})
        except ConstrainError as exc:
            return exc.reroot(spec.param, was="response_format.value")
    return InvalidRequestError("the tools cannot be compiled into a grammar", param="tools")
