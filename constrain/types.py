"""Wire types: the chat-completion request and response, as pydantic v2 models.

Field names follow the Hugging Face chat-completion spec and OpenAI, so that
``model.chat_completion(**request)`` and the HTTP server accept what the
``openai`` SDK and ``huggingface_hub`` send, and return what they parse.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

FinishReason = Literal["stop", "length", "tool_calls"]
Role = Literal["system", "user", "assistant", "tool", "developer"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- request


class TextPart(_Wire):
    type: Literal["text"]
    text: str


class ImageURL(_Wire):
    url: str
    detail: str | None = None


class ImagePart(_Wire):
    type: Literal["image_url"]
    image_url: ImageURL


class FunctionCall(BaseModel):
    """A call the assistant made; ``arguments`` is a JSON string (OpenAI's contract)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    arguments: str = "{}"
    description: str | None = None

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_text(cls, value: Any) -> Any:
        # huggingface_hub and TGI history sometimes carry arguments as an object.
        import json

        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return value


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Wire):
    role: Role
    content: str | list[TextPart | ImagePart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="after")
    def _content_present(self) -> Message:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError(f"a {self.role} message needs `content`")
        return self

    def text(self) -> str:
        """The message's text; image parts are refused earlier, by the model."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(isinstance(p, ImagePart) for p in self.content)


class FunctionDefinition(_Wire):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    parameters: dict[str, Any] | bool | None = Field(default=None, alias="parameters")
    arguments: dict[str, Any] | bool | str | None = None
    strict: bool | None = None

    def schema_(self) -> object:
        """The argument schema, whichever key (OpenAI ``parameters``, HF ``arguments``) carried it.

        Text is parsed, not checked: ``check_schema`` tells whether it is a schema at all.
        """
        import json

        value = self.parameters if self.parameters is not None else self.arguments
        if value is None:
            return {"type": "object", "properties": {}}
        if isinstance(value, str):
            parsed: object = json.loads(value)
            return parsed
        return value


class Tool(_Wire):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class StreamOptions(_Wire):
    include_usage: bool = False


class ChatCompletionRequest(_Wire):
    """One chat-completion request. Ranges follow the spec; each violation names its field."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True)

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: Any = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=5)
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    tool_prompt: str | None = None
    parallel_tool_calls: bool | None = None
    # Extension: under tool_choice "auto", added to the logit of opening a call at the start of
    # the answer (the text-or-calls decision, in the same pass). None: the model's default.
    tool_call_bias: float | None = Field(default=None, ge=-20.0, le=20.0)
    # Extension: per output token, its text, log-probability, top alternatives and whether it was
    # sampled, forced by the constraint or steered by the budget closer (``Choice.token_info``).
    token_info: bool | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    logit_bias: Any = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else list(value)
        if len(stops) > 4:
            raise ValueError(f"at most 4 stop sequences are allowed, got {len(stops)}")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, value: Any) -> Any:
        if value:
            raise ValueError("logit_bias is not supported; leave it unset")
        return None

    @model_validator(mode="after")
    def _cross_field(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("`top_logprobs` requires `logprobs: true`")
        if self.stream_options is not None and not self.stream:
            raise ValueError("`stream_options` is only allowed with `stream: true`")
        return self

    def token_limit(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens


# --------------------------------------------------------------------------- response


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class ResponseFunction(BaseModel):
    name: str
    arguments: str


class ResponseToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ResponseFunction


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ResponseToolCall] | None = None


class TokenAlternative(BaseModel):
    text: str
    logprob: float


class TokenInfo(BaseModel):
    """Extension (request ``token_info: true``): one output token and what chose it.

    ``how``: ``sampled`` (drawn from the constraint's mask), ``forced`` (the only token the
    constraint allowed, fast-forwarded without sampling) or ``closer`` (sampled from a mask the
    budget closer narrowed so that the output closes within ``max_tokens``).
    """

    id: int
    text: str
    logprob: float
    how: Literal["sampled", "forced", "closer"]
    top: list[TokenAlternative] = Field(default_factory=list)


class _OptInExtensions(BaseModel):
    """Leaves ``token_info`` out when unset, so that responses not opting in stay byte-identical."""

    @model_serializer(mode="wrap")
    def _drop_unset_extensions(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict) and data.get("token_info") is None:
            data.pop("token_info", None)
        return data


class Choice(_OptInExtensions):
    index: int = 0
    message: ResponseMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None
    token_info: list[TokenInfo] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def new_completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=new_completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str
    choices: list[Choice]
    usage: Usage


class _WithoutNulls(BaseModel):
    """Serialised without null fields: the openai SDK's stream accumulator overwrites ``type``
    with whatever a delta carries, so a later ``"type": null`` would erase ``"function"``."""

    @model_serializer(mode="wrap")
    def _drop_nulls(self, handler: Any) -> Any:
        return {k: v for k, v in handler(self).items() if v is not None}


class DeltaFunction(_WithoutNulls):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(_WithoutNulls):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(_OptInExtensions):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None
    token_info: list[TokenInfo] | None = None  # extension: the tokens this chunk's text came from


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
