"""ToolSetup -> one Lark grammar for llguidance, built from the shipped ``grammars/tool_calls.lark``.

Each tool becomes one alternative whose name is a literal and whose arguments are
``%json {<that tool's normalised schema>}``, so a call can only name a declared tool and
its arguments can only match that tool's schema. Under ``"auto"`` the same grammar has a
text branch (free text, or the ``response_format``), so the model decides in one pass.
"""

from __future__ import annotations

import json
from typing import Any

from constrain.compiler import Constraint, Whitespace, load_grammar
from constrain.constraints import engine_grammar
from constrain.engines import PRETTY_WHITESPACE
from constrain.tools.choice import ToolSetup
from constrain.vocab import Vocabulary

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_REPLACED = ("start:", "call:", "args:", "NAME:")
# Text that could be mistaken for calls is not text: the parser decides on the first bytes.
_NOT_CALLS = r"~/<tool_call>(.|\n)*/"
_COMPACT = {"whitespace_flexible": False}
_PRETTY = {"whitespace_flexible": True, "whitespace_pattern": PRETTY_WHITESPACE}


def call_head(name: str) -> str:
    """The exact text that opens a call of ``name``; the arguments object follows it."""
    return '{"name":' + json.dumps(name) + ',"arguments":'


def format_calls(calls: list[tuple[str, str]]) -> str:
    """Calls (name, arguments JSON text) in the enforced format, for examples and history."""
    return OPEN + "[" + ",".join(call_head(n) + a + "}" for n, a in calls) + "]" + CLOSE


def _envelope() -> str:
    lines = load_grammar("tool_calls").splitlines()
    return "\n".join(
        line for line in lines if line.strip() and not line.startswith("//") and not line.startswith(_REPLACED)
    )


def json_rule(schema: Any, whitespace: Whitespace) -> str:
    """A ``%json`` sub-grammar for a normalised schema, with the whitespace llguidance should allow."""
    options = _PRETTY if whitespace == "pretty" else _COMPACT
    body = {**schema, "x-guidance": options} if isinstance(schema, dict) else schema
    return "%json " + json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def regex_literal(pattern: str) -> str:
    """A regex as a Lark ``/.../`` terminal: unescaped slashes escaped."""
    out, escaped = [], False
    for ch in pattern:
        out.append("\\/" if ch == "/" and not escaped else ch)
        escaped = ch == "\\" and not escaped
    return "/" + "".join(out) + "/"


def text_rules(text: Constraint, whitespace: Whitespace) -> list[str]:
    """The text branch: free text, or what ``response_format`` asks for."""
    if text.kind == "text":
        return ["text: TEXT", r"TEXT: /(.|\n)+/ & " + _NOT_CALLS]
    grammar = engine_grammar(text)  # the same normaliser / regex translation as without tools
    if grammar.kind == "json_schema":
        return ["text: " + json_rule(grammar.source, whitespace)]
    if grammar.kind == "regex":
        return ["text: TEXT", "TEXT: " + regex_literal(grammar.source) + " & " + _NOT_CALLS]
    return ["text: %lark {", grammar.source, "}"]


def build_grammar(setup: ToolSetup, text: Constraint, whitespace: Whitespace = "compact") -> str:
    """The Lark grammar for a request. Tool arguments are always compact JSON (what the prompt shows)."""
    calls = "one_call" if setup.max_one_call else "calls"
    rules = [_envelope()]
    rules.append(f"start: {calls} | text" if setup.allows_text else f"start: {calls}")
    rules.append("call: " + " | ".join(f"call_{i}" for i in range(len(setup.allowed))))
    for i, spec in enumerate(setup.allowed):
        rules.append(f"call_{i}: {json.dumps(call_head(spec.name))} args_{i} \"}}\"")
        rules.append(f"args_{i}: {json_rule(spec.engine_schema, 'compact')}")
    if setup.allows_text:
        rules.extend(text_rules(text, whitespace))
    return "\n".join(rules) + "\n"


def opening_tokens(vocabulary: Vocabulary) -> list[int]:
    """The tokens a call can start with: those whose text is a prefix of the envelope's opening."""
    return vocabulary.prefix_tokens(OPEN)

