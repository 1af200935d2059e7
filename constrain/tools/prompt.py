"""Tools and tool history -> prompt text.

A chat template that reads ``tools`` gets them (and the history's ``tool_calls`` as
objects). Otherwise we write the tools, the instruction (``tool_prompt``) and the exact
output format into the system message, and render past calls in that same format, so
the model sees in its history exactly what the grammar will make it write.
"""

from __future__ import annotations

import json
from typing import Any

from constrain.chat_template import message_dicts, render, template_renders_tools
from constrain.tools.choice import ToolSetup
from constrain.tools.grammar import format_calls
from constrain.types import Message

DEFAULT_TOOL_PROMPT = (
    "You can call the tools listed below. Each is a JSON object with the tool's name, "
    "what it does, and a JSON Schema of its arguments."
)
_EXAMPLE = '<tool_call>[{"name":"<tool name>","arguments":{<arguments as JSON>}}]</tool_call>'


def format_instruction(setup: ToolSetup) -> str:
    """How to answer, worded after the grammar of this request's ``tool_choice``."""
    if setup.mode == "named":
        name = setup.allowed[0].name
        return (
            f"Call the tool {name!r}. Answer with exactly this, and nothing else:\n"
            f'<tool_call>[{{"name":{json.dumps(name)},"arguments":{{<arguments as JSON>}}}}]</tool_call>'
        )
    many = (
        "one call, or several calls separated by commas inside the brackets"
        if setup.parallel
        else "exactly one call"
    )
    if setup.mode == "required":
        return f"Answer with tool calls only ({many}), in exactly this format:\n{_EXAMPLE}"
    return (
        f"To call tools, answer with only this ({many}):\n{_EXAMPLE}\n"
        "If no tool fits the request, answer in plain text instead."
    )


def tools_text(setup: ToolSetup, tool_prompt: str | None = None) -> str:
    """The system-message block: instruction, the tools (one JSON object per line), the format."""
    listed = "\n".join(json.dumps(s.public(), ensure_ascii=False) for s in setup.allowed)
    return f"{tool_prompt or DEFAULT_TOOL_PROMPT}\n<tools>\n{listed}\n</tools>\n{format_instruction(setup)}"


def _compact(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), ensure_ascii=False, separators=(",", ":"))
    except json.JSONDecodeError:
        return arguments


def _history(messages: list[dict[str, Any]], native: bool) -> list[dict[str, Any]]:
    """Past calls and results: objects for a template that knows tools, our format otherwise."""
    out: list[dict[str, Any]] = []
    for entry in messages:
        entry = dict(entry)
        calls = entry.get("tool_calls")
        if calls and native:
            entry["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": _as_object(c["function"].get("arguments", "{}"))}}
                for c in calls
            ]
        elif calls:
            text = format_calls([(c["function"]["name"], _compact(c["function"].get("arguments", "{}"))) for c in calls])
            entry["content"] = (entry["content"] + "\n" if entry.get("content") else "") + text
            del entry["tool_calls"]
        if entry["role"] == "tool" and not native:
            entry["content"] = f"<tool_response>\n{entry['content']}\n</tool_response>"
        out.append(entry)
    return out


def _as_object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def render_with_tools(
    tokenizer: Any, messages: list[Message], setup: ToolSetup | None, tool_prompt: str | None = None,
    *, images: bool = False,
) -> str:
    """The prompt for a request with tools (or with tool history); ``tool_choice="none"`` shows no tools."""
    native = template_renders_tools(tokenizer)
    dicts = _history(message_dicts(messages, images=images), native)
    show = setup is not None and setup.mode != "none"
    if not show:
        return render(tokenizer, dicts)
    assert setup is not None
    block = tools_text(setup, tool_prompt) if not native else (
        (tool_prompt + "\n" if tool_prompt else "") + format_instruction(setup)
    )
    if dicts and dicts[0]["role"] in ("system", "developer") and isinstance(dicts[0]["content"], str):
        dicts[0] = {**dicts[0], "content": (dicts[0]["content"] + "\n\n" + block).strip()}
    else:
        dicts.insert(0, {"role": "system", "content": block})
    if native:
        return render(tokenizer, dicts, tools=[{"type": "function", "function": s.public()} for s in setup.allowed])
    return render(tokenizer, dicts)
