"""``tools`` + ``tool_choice`` + ``parallel_tool_calls`` -> one validated ToolSetup.

Every check that can fail on user input happens here, before any prompt or grammar is
built, and each failure names the request field at fault (``tools.1.function.name``,
``tool_choice.function.name``, ``tools.0.function.parameters.properties.x.type``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from constrain.errors import InvalidSchemaError, ToolChoiceError, UnsatisfiableSchemaError
from constrain.schema import check_schema, normalize
from constrain.types import ChatCompletionRequest, Tool

Mode = Literal["auto", "none", "required", "named"]
MODES = ("auto", "none", "required")


@dataclass(frozen=True)
class ToolSpec:
    """One declared function: its schema as the user gave it (checked), and as the engine gets it."""

    name: str
    description: str | None
    schema: dict[str, Any]
    engine_schema: dict[str, Any]
    param: str
    schema_text: str = field(repr=False, default="")

    def public(self) -> dict[str, Any]:
        """What the prompt shows the model (OpenAI's function shape)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["parameters"] = self.schema
        return out


@dataclass(frozen=True)
class ToolSetup:
    """The resolved tool request: which tools the output may call, and how many calls."""

    mode: Mode
    tools: list[ToolSpec]
    allowed: list[ToolSpec]
    parallel: bool

    @property
    def allows_text(self) -> bool:
        return self.mode in ("auto", "none")

    @property
    def max_one_call(self) -> bool:
        return self.mode == "named" or not self.parallel

    def spec(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)


def parse_tool_choice(choice: Any, names: list[str]) -> tuple[Mode, str | None]:
    """The mode and, for a named choice, the function name. Accepts every dialect in use."""
    if choice is None:
        return "auto", None
    if isinstance(choice, str):
        if choice in MODES:
            return choice, None  # type: ignore[return-value]
        return "named", _known(choice, names, "tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type", "function")
        if kind != "function":
            raise ToolChoiceError(
                f"`tool_choice.type` must be 'function', got {kind!r}", param="tool_choice.type"
            )
        extra = set(choice) - {"type", "function"}
        if extra:
            raise ToolChoiceError(f"`tool_choice` has unknown field(s) {sorted(extra)}", param="tool_choice")
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ToolChoiceError(
                "`tool_choice.function` must be an object with a `name` string, "
                "e.g. {\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}",
                param="tool_choice.function",
            )
        return "named", _known(function["name"], names, "tool_choice.function.name")
    raise ToolChoiceError(
        f"`tool_choice` must be 'auto', 'none', 'required', a function name or "
        f"{{\"type\": \"function\", \"function\": {{\"name\": ...}}}}; got {type(choice).__name__}",
        param="tool_choice",
    )


def _known(name: str, names: list[str], param: str) -> str:
    if name not in names:
        raise ToolChoiceError(
            f"`{param}` names the tool {name!r}, which is not in `tools` (declared: {', '.join(names)})",
            param=param,
        )
    return name


def _argument_schema(tool: Tool, index: int, close_objects: bool) -> ToolSpec:
    fn = tool.function
    key = "parameters" if fn.parameters is not None else "arguments"
    param = f"tools.{index}.function.{key}"
    try:
        given = fn.schema_()
    except json.JSONDecodeError as exc:
        raise InvalidSchemaError(f"`{param}` is not valid JSON: {exc}", param=param) from None
    schema = check_schema(given, param=param)
    if schema is True:
        schema = {}
    if schema is False:
        raise UnsatisfiableSchemaError(f"`{param}` is the schema `false`, which no call can match", param=param)
    declared = schema.get("type")
    if declared is not None and declared != "object" and not (isinstance(declared, list) and "object" in declared):
        raise InvalidSchemaError(
            f"`{param}.type` must be 'object': tool arguments are a JSON object, got {declared!r}",
            param=param, at="/type",
        )
    # Arguments are an object (OpenAI's contract): a schema that says nothing about the type
    # is narrowed to objects, never loosened.
    engine_schema = normalize({**schema, "type": "object"}, close_objects=close_objects, param=param)
    return ToolSpec(
        name=fn.name,
        description=fn.description,
        schema=schema,
        engine_schema=engine_schema,
        param=param,
        schema_text=json.dumps(schema, ensure_ascii=False, separators=(",", ":")),
    )


def resolve(request: ChatCompletionRequest, *, close_objects: bool = False) -> ToolSetup | None:
    """The ToolSetup for a request, or None when it declares no tools (and chooses none)."""
    tools = request.tools
    if tools is None:
        if request.tool_choice is None or request.tool_choice == "none":
            return None
        raise ToolChoiceError("`tool_choice` is set but `tools` is missing; declare the tools", param="tool_choice")
    if not tools:
        raise ToolChoiceError("`tools` is empty; leave it out or declare at least one tool", param="tools")
    names: list[str] = []
    for index, tool in enumerate(tools):
        if tool.function.name in names:
            raise ToolChoiceError(
                f"`tools.{index}.function.name`: the name {tool.function.name!r} is declared twice "
                f"(first at tools.{names.index(tool.function.name)})",
                param=f"tools.{index}.function.name",
            )
        names.append(tool.function.name)
    mode, chosen = parse_tool_choice(request.tool_choice, names)
    specs = [_argument_schema(tool, i, close_objects) for i, tool in enumerate(tools)]
    allowed = [s for s in specs if s.name == chosen] if mode == "named" else specs
    parallel = True if request.parallel_tool_calls is None else request.parallel_tool_calls
    return ToolSetup(mode=mode, tools=specs, allowed=allowed, parallel=parallel)
