"""Model: weights + tokenizer + engine, and ``chat_completion`` over them.

``load()`` returns one; the embedded SmolLM2-135M-Instruct when no path is given.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from constrain import __version__
from constrain.compiler import PropertyOrder, Whitespace
from constrain.constraints import CompiledConstraint, compile_constraint
from constrain.decode import DecodeStats, decode
from constrain.errors import InvalidRequestError
from constrain.loading import EMBEDDED_TOOL_CALL_BIAS, load_weights
from constrain.output import ContentParser, OutputParser
from constrain.prompt import message_dicts, render
from constrain.requests import parse_request
from constrain.response import ResponseInfo, build_completion
from constrain.sampling import SamplingParams
from constrain.stream import build_chunks
from constrain.tools import plan_tools
from constrain.types import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest

LogprobsMode = Literal["sampled", "raw"]


@dataclass
class Plan:
    """What one request turns into before decoding: a prompt, a constraint, an output parser."""

    prompt: str
    compiled: CompiledConstraint
    parser: OutputParser
    # Added to these tokens' logits at the first sampled token (tool_choice "auto": opening a call).
    opening_bias: dict[int, float] | None = None


class Model:
    """A loaded model ready to answer chat completions. Make one with :func:`constrain.load`.

    Generation is serialised by a lock: one forward pass at a time per model.
    """

    def __init__(
        self,
        name: str,
        hf_model: Any,
        tokenizer: Any,
        *,
        engine: str = "llguidance",
        whitespace: Whitespace = "compact",
        close_objects: bool = False,
        property_order: PropertyOrder = "schema",
        logprobs_mode: LogprobsMode = "sampled",
        tool_call_bias: float = 0.0,
    ) -> None:
        self.name = name
        self.tool_call_bias = tool_call_bias
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.engine = engine
        self.whitespace: Whitespace = whitespace
        self.close_objects = close_objects
        self.property_order: PropertyOrder = property_order
        self.logprobs_mode: LogprobsMode = logprobs_mode
        self.lock = threading.Lock()
        config = hf_model.config
        self.vocab_size = int(getattr(config, "vocab_size", len(tokenizer)))
        self.context_length = int(getattr(config, "max_position_embeddings", 4096))
        self.eos_token_ids = self._eos_ids()
        # Compile once now: converts the vocabulary for the engine and fails early if it can't.
        compile_constraint({"type": "json_object"}, tokenizer, engine=engine, vocab_size=self.vocab_size)

    def _eos_ids(self) -> set[int]:
        ids: set[int] = set()
        gen = getattr(self.hf_model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) if gen is not None else None
        for value in eos if isinstance(eos, list) else [eos]:
            if isinstance(value, int):
                ids.add(value)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def system_fingerprint(self) -> str:
        import llguidance

        return f"constrain-{__version__}:{self.engine}-{llguidance.__version__ if self.engine == 'llguidance' else ''}:{self.name}"

    # ------------------------------------------------------------------ compile

    def compile(self, response_format: Any, **options: Any) -> CompiledConstraint:
        """Compile a response_format for this model's tokenizer (cached)."""
        options.setdefault("whitespace", self.whitespace)
        options.setdefault("close_objects", self.close_objects)
        options.setdefault("property_order", self.property_order)
        return compile_constraint(
            response_format, self.tokenizer, engine=self.engine, vocab_size=self.vocab_size, **options
        )

    def plan(self, request: ChatCompletionRequest) -> Plan:
        """Prompt, constraint and output parser for a request."""
        tool_plan = plan_tools(self, request)  # None without tools or tool history
        if tool_plan is not None:
            return tool_plan
        compiled = self.compile(request.response_format)
        prompt = render(self.tokenizer, message_dicts(request.messages))
        return Plan(prompt=prompt, compiled=compiled, parser=ContentParser())

    # ------------------------------------------------------------------ generation

    def _prepare(self, fields: dict[str, Any]) -> tuple[ChatCompletionRequest, Plan, list[int], SamplingParams, int]:
        if "messages" in fields and fields["messages"] is not None and not isinstance(fields["messages"], list):
            raise InvalidRequestError("`messages` must be a list of messages", param="messages")
        request = parse_request(fields)
        plan = self.plan(request)
        prompt_ids = self.tokenizer(plan.prompt, add_special_tokens=False)["input_ids"]
        room = self.context_length - len(prompt_ids)
        if room <= 0:
            raise InvalidRequestError(
                f"`messages` take {len(prompt_ids)} tokens, more than the model's context of {self.context_length}",
                param="messages",
            )
        limit = request.token_limit()
        if limit is not None and limit > room:
            raise InvalidRequestError(
                f"`max_tokens` is {limit}, but only {room} tokens fit after the prompt "
                f"(context {self.context_length})",
                param="max_tokens",
            )
        temperature = 1.0 if request.temperature is None else request.temperature
        params = SamplingParams(
            temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed,
            frequency_penalty=request.frequency_penalty or 0.0,
            presence_penalty=request.presence_penalty or 0.0,
            logprobs=bool(request.logprobs),
            top_logprobs=request.top_logprobs or 0,
            raw_logprobs=self.logprobs_mode == "raw",
        )
        return request, plan, prompt_ids, params, limit or room

    def _steps(self, plan: Plan, prompt_ids: list[int], params: SamplingParams, max_tokens: int,
               request: ChatCompletionRequest, stats: DecodeStats, should_stop: Any = None) -> Iterator[Any]:
        with self.lock:
            yield from decode(
                self.hf_model,
                self.tokenizer,
                prompt_ids,
                plan.compiled,
                params,
                max_tokens=max_tokens,
                stop=request.stop,  # type: ignore[arg-type]
                eos_token_ids=self.eos_token_ids,
                stats=stats,
                should_stop=should_stop,
                opening_bias=plan.opening_bias,
            )
        if stats.finish_reason == "stop" and not stats.stop_sequence_hit and isinstance(plan.parser, ContentParser):
            plan.compiled.check_output(stats.text)

    def chat_completion(
        self, messages: list[Any] | None = None, **fields: Any
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """Answer a chat-completion request (same keywords as ``InferenceClient.chat_completion``).

        Returns a ChatCompletion, or with ``stream=True`` an iterator of ChatCompletionChunk.
        Raises a ``constrain.errors.InvalidRequestError`` naming the field for bad input.
        """
        should_stop = fields.pop("should_stop", None)
        if messages is not None:
            fields["messages"] = messages
        request, plan, prompt_ids, params, max_tokens = self._prepare(fields)
        stats = DecodeStats()
        steps = self._steps(plan, prompt_ids, params, max_tokens, request, stats, should_stop)
        info = ResponseInfo(
            tokenizer=self.tokenizer,
            model_name=request.model or self.name,
            fingerprint=self.system_fingerprint,
            logprobs=bool(request.logprobs),
        )
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return build_chunks(steps, plan.parser, stats, info, include_usage=include_usage)
        return build_completion(steps, plan.parser, stats, info)

    async def chat_completion_async(
        self, messages: list[Any] | None = None, **fields: Any
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """``chat_completion`` off the event loop; with ``stream=True`` an async iterator of chunks."""
        result = await asyncio.to_thread(self.chat_completion, messages, **fields)
        if isinstance(result, ChatCompletion):
            return result
        return _aiter(result)

    def generate_text(self, prompt: str, **fields: Any) -> ChatCompletion:
        """Convenience: one user message."""
        return self.chat_completion([{"role": "user", "content": prompt}], **fields)  # type: ignore[return-value]


_DONE = object()


async def _aiter(chunks: Iterator[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    while True:
        item = await asyncio.to_thread(next, chunks, _DONE)
        if item is _DONE:
            return
        yield item  # type: ignore[misc]


def load(
    model: str | None = None,
    *,
    engine: str = "llguidance",
    device: str | None = None,
    dtype: Any = None,
    whitespace: Whitespace = "compact",
    close_objects: bool = False,
    property_order: PropertyOrder = "schema",
    logprobs_mode: LogprobsMode = "sampled",
    tool_call_bias: float | None = None,
) -> Model:
    """Load a model. ``None``: the embedded SmolLM2-135M-Instruct; else a local HF folder or a .gguf file.

    ``property_order``: "schema" (declared properties in the schema's order, the default) or
    "any" (every key order accepted, exactly); see :func:`constrain.compile_constraint`.
    ``tool_call_bias``: the default of the request field of that name (None: +3 for the
    embedded model, which otherwise never opens a call under "auto"; 0 for others).
    The first load of a GGUF converts it (seconds, with a progress bar) and caches the result
    under ``CONSTRAIN_CACHE_DIR`` (default: the user cache dir); later loads read the cache.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name, hf_model, tokenizer = load_weights(model, dtype=dtype, device=device)
    return Model(
        name,
        hf_model,
        tokenizer,
        engine=engine,
        whitespace=whitespace,
        close_objects=close_objects,
        property_order=property_order,
        logprobs_mode=logprobs_mode,
        tool_call_bias=tool_call_bias if tool_call_bias is not None else (
            EMBEDDED_TOOL_CALL_BIAS if model is None else 0.0
        ),
    )
