"""Model: weights + tokenizer + engine, and ``chat_completion`` over them.

``load()`` returns one; the embedded SmolLM2-135M-Instruct when no path is given. Every
request (from any number of threads, asyncio tasks, the server or ``batch``) is prepared once
(``constrain.prepare``) and runs in the model's decoding core (``constrain.decoding``), batched
with the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from constrain.chat_template import template_renders_tools
from constrain.compiler import PropertyOrder, Whitespace
from constrain.constraints import CompiledConstraint
from constrain.deadline import DEFAULT_COMPILE_TIMEOUT_S, compile_deadline
from constrain.decoding import DEFAULT_MAX_BATCH, DecodingCore, SequenceHandle, Step
from constrain.decoding.runtimes.base import Runtime
from constrain.decoding.runtimes.transformers import TransformersRuntime
from constrain.errors import ConstrainError, InvalidRequestError, ModelLoadError
from constrain.images import ImagePolicy
from constrain.loading import (
    EMBEDDED_NAME,
    EMBEDDED_TOOL_CALL_BIAS,
    RuntimeName,
    choose_runtime,
    default_max_batch,
    load_processor,
    load_tokenizer,
    load_weights,
    resolve,
)
from constrain.plan import Plan, Planner
from constrain.prepare import LogprobsMode, PreparedRequest, plan_request, prepare
from constrain.response import build_completion
from constrain.stream import build_chunks, build_chunks_async
from constrain.types import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from constrain.version import __version__


class Model:
    """A loaded model ready to answer chat completions. Make one with :func:`constrain.load`.

    Thread-safe: concurrent calls share one batch (at most ``max_batch`` sequences per forward
    pass; more wait their turn, first come first served).
    """

    def __init__(
        self,
        name: str,
        hf_model: Any,
        tokenizer: Any,
        *,
        runtime: Runtime | None = None,
        engine: str = "llguidance",
        whitespace: Whitespace = "compact",
        close_objects: bool = False,
        property_order: PropertyOrder = "schema",
        logprobs_mode: LogprobsMode = "sampled",
        tool_call_bias: float = 0.0,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_queue: int | None = None,
        compile_timeout_s: float | None = DEFAULT_COMPILE_TIMEOUT_S,
        processor: Any = None,
        image_policy: ImagePolicy | None = None,
    ) -> None:
        self.name = name
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.engine = engine
        self.whitespace: Whitespace = whitespace
        self.close_objects = close_objects
        self.property_order: PropertyOrder = property_order
        self.logprobs_mode: LogprobsMode = logprobs_mode
        self.tool_call_bias = tool_call_bias
        self.processor = processor
        if processor is not None and not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = getattr(processor, "chat_template", None)
        if runtime is None:
            runtime = TransformersRuntime(hf_model)
        self.runtime = runtime
        config = getattr(hf_model, "config", None)
        self.vocab_size = int(getattr(config, "vocab_size", None) or len(tokenizer)) if config else runtime.vocab_size
        self.context_length = runtime.context_length
        self.eos_token_ids = self._eos_ids()
        self.planner = Planner(tokenizer=tokenizer, vocab_size=self.vocab_size, engine=engine, whitespace=whitespace,
                               close_objects=close_objects, property_order=property_order,
                               tool_call_bias=tool_call_bias, compile_timeout_s=compile_timeout_s,
                               processor=processor, image_policy=image_policy or ImagePolicy())
        # The tokenizer's engine, compile cache and vocabulary (made with the planner).
        self.compiler = self.planner.compiler
        # Compile once now: fails early if the engine can't take this tokenizer.
        self.compiler.compile({"type": "json_object"}, compile_timeout_s=None)  # no request deadline at load
        # Fixed for the model's life: built once, not per request.
        self.system_fingerprint = f"constrain-{__version__}:{self.compiler.engine.version}:{name}"
        self.core = DecodingCore(self.runtime, tokenizer=tokenizer, eos_token_ids=self.eos_token_ids,
                                 max_batch=max_batch, max_waiting=max_queue, vocabulary=self.compiler.vocabulary)

    def _eos_ids(self) -> set[int]:
        ids = self.runtime.eos_token_ids()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def max_batch(self) -> int:
        return self.core.max_batch

    def capabilities(self) -> dict[str, Any]:
        """What this model can do, as ``/v1/models`` lists it."""
        return {"context_length": self.context_length, "images": self.processor is not None,
                "chat_template": bool(getattr(self.tokenizer, "chat_template", None)),
                "tools_in_template": template_renders_tools(self.tokenizer), "max_batch": self.max_batch}

    # ------------------------------------------------------------------ compile and prepare

    def compile(self, response_format: Any, **options: Any) -> CompiledConstraint:
        """Compile a response_format for this model's tokenizer (cached)."""
        return self.planner.compile(response_format, **options)

    def plan(self, request: ChatCompletionRequest) -> Plan:
        """Prompt, constraint and output parser for a request."""
        return plan_request(self.planner, request)

    def prepare(self, fields: dict[str, Any] | ChatCompletionRequest, *,
                default_max_tokens: int | None = None) -> PreparedRequest:
        """Validate, plan and tokenize a request (once); raises an error naming the field.

        All of its compiles together (response_format, every tool) end by the model's
        ``compile_timeout_s`` (CompileTimeoutError).
        """
        with compile_deadline(self.planner.compile_timeout_s):
            return prepare(self.planner, fields, context_length=self.context_length, model_name=self.name,
                           fingerprint=self.system_fingerprint, logprobs_mode=self.logprobs_mode,
                           default_max_tokens=default_max_tokens)

    def submit(self, prepared: PreparedRequest, *, max_queue: int | None = None) -> SequenceHandle:
        """Queue a prepared request in the batch (once; later calls return its handle).

        ``max_queue``: refuse it (``OverloadedError``) when that many already wait for a place.
        """
        if prepared.handle is None:
            prepared.handle = self.core.submit(prepared.job, max_waiting=max_queue)
        return prepared.handle

    # ------------------------------------------------------------------ answers

    def complete(self, prepared: PreparedRequest) -> ChatCompletion:
        """The whole answer of a prepared request (submitted if it is not yet)."""
        handle = self.submit(prepared)
        return build_completion(prepared.checked(handle, handle.stats), prepared.plan.parser, handle.stats,
                                prepared.info)

    def stream(self, prepared: PreparedRequest) -> Iterator[ChatCompletionChunk]:
        """The answer's chunks; stopping the iteration early stops the generation."""
        handle = self.submit(prepared)
        return build_chunks(prepared.checked(handle, handle.stats), prepared.plan.parser, handle.stats,
                            prepared.info, include_usage=prepared.include_usage)

    async def complete_async(self, prepared: PreparedRequest) -> ChatCompletion:
        """``complete`` for asyncio; cancelling the awaiting task stops the generation."""
        handle = self.submit(prepared)
        steps: list[Step] = [step async for step in prepared.checked_async(handle.__aiter__(), handle.stats)]
        return build_completion(steps, prepared.plan.parser, handle.stats, prepared.info)

    def stream_async(self, prepared: PreparedRequest) -> AsyncIterator[ChatCompletionChunk]:
        """``stream`` for asyncio; closing the iterator stops the generation."""
        handle = self.submit(prepared)
        return build_chunks_async(prepared.checked_async(handle.__aiter__(), handle.stats), prepared.plan.parser,
                                  handle.stats, prepared.info, include_usage=prepared.include_usage)

    def chat_completion(
        self, messages: list[Any] | None = None, **fields: Any
    ) -> ChatCompletion | Iterator[ChatCompletionChunk]:
        """Answer a chat-completion request (same keywords as ``InferenceClient.chat_completion``).

        Returns a ChatCompletion, or with ``stream=True`` an iterator of ChatCompletionChunk.
        Raises a ``constrain.errors.InvalidRequestError`` naming the field for bad input.
        Calls from several threads run together in one batch.
        """
        if messages is not None:
            fields["messages"] = messages
        prepared = self.prepare(fields)
        return self.stream(prepared) if prepared.stream else self.complete(prepared)

    async def chat_completion_async(
        self, messages: list[Any] | None = None, **fields: Any
    ) -> ChatCompletion | AsyncIterator[ChatCompletionChunk]:
        """``chat_completion`` for asyncio (an async iterator of chunks when streaming); concurrent
        tasks run together in one batch."""
        if messages is not None:
            fields["messages"] = messages
        prepared = await asyncio.to_thread(self.prepare, fields)  # compiling may take milliseconds
        return self.stream_async(prepared) if prepared.stream else await self.complete_async(prepared)

    async def answer_async(self, body: Any, *, default_max_tokens: int | None = None) -> ChatCompletion:
        """One whole (non-streamed) answer to a request body, for batch jobs; errors name the field."""
        if not isinstance(body, dict):
            raise InvalidRequestError(f"`body` must be a JSON object, got {type(body).__name__}", param="body")
        if body.get("stream"):
            raise InvalidRequestError("`stream` is not supported in a batch; leave it unset", param="stream")
        prepared = await asyncio.to_thread(self.prepare, body, default_max_tokens=default_max_tokens)
        return await self.complete_async(prepared)

    def batch(self, requests: Iterable[dict[str, Any]]) -> list[ChatCompletion | ConstrainError]:
        """Answer many requests together; results in input order. A bad request gets its error in
        its place (a ``ConstrainError``) and never stops the others. Streaming is not allowed here."""
        bodies = list(requests)

        async def main() -> list[ChatCompletion | ConstrainError]:
            gate = asyncio.Semaphore(2 * self.max_batch)  # enough to keep the batch full

            async def one(body: Any) -> ChatCompletion | ConstrainError:
                async with gate:
                    try:
                        return await self.answer_async(body)
                    except ConstrainError as exc:
                        return exc

            return list(await asyncio.gather(*(one(body) for body in bodies)))

        return run_sync(main())

    def generate_text(self, prompt: str, **fields: Any) -> ChatCompletion:
        """Convenience: one user message."""
        return self.chat_completion([{"role": "user", "content": prompt}], **fields)  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the decoding core's thread (pending generations end with ``finish_reason: "length"``)."""
        self.core.close()
        self.runtime.close()


_T = TypeVar("_T")


def run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion, also from a thread that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


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
    max_batch: int | None = None,
    compile_timeout_s: float | None = DEFAULT_COMPILE_TIMEOUT_S,
    image_policy: ImagePolicy | None = None,
    runtime: RuntimeName = "auto",
    threads: int | None = None,
) -> Model:
    """Load a model. ``None``: the embedded SmolLM2-135M-Instruct; else a local HF folder or a .gguf file.

    ``property_order``: "schema" (declared properties in the schema's order, the default) or
    "any" (every key order accepted, exactly); see :func:`constrain.compile_constraint`.
    ``tool_call_bias``: the default of the request field of that name (None: +3 for the
    embedded model, which otherwise never opens a call under "auto"; 0 for others).
    ``max_batch``: sequences generated together in one forward pass; more wait their turn
    (default: 32 on transformers; 8 on llama.cpp, whose KV cells are split between them).
    ``compile_timeout_s``: how long compiling one request's constraints may take (None: no limit).
    ``image_policy``: for a vision-language model (a local folder with a processor), where image
    parts may come from (default: ``data:`` URLs only; see :class:`constrain.images.ImagePolicy`).
    ``runtime``: what runs the forward pass: "transformers", "llama.cpp" (GGUF files, with
    ``pip install constrain[llama-cpp]``) or "auto" (llama.cpp for a GGUF when it is installed).
    Masks, sampling and parsing are the same on both. ``threads``: llama.cpp's threads (default:
    the CPUs but one; transformers uses torch's setting). On transformers, the first load of a
    GGUF converts it (seconds, with a progress bar) and caches the result under
    ``CONSTRAIN_CACHE_DIR`` (default: the user cache dir); later loads read the cache.
    """
    hf_model: Any = None
    engine_runtime: Runtime | None = None
    chosen = choose_runtime(runtime, model)
    max_batch = default_max_batch(max_batch, chosen, model)
    if chosen == "llama.cpp":
        name, engine_runtime, tokenizer = _load_llama_cpp(model, max_batch, threads)
    else:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        name, hf_model, tokenizer = load_weights(model, dtype=dtype, device=device)
    return Model(
        name,
        hf_model,
        tokenizer,
        runtime=engine_runtime,
        engine=engine,
        whitespace=whitespace,
        close_objects=close_objects,
        property_order=property_order,
        logprobs_mode=logprobs_mode,
        tool_call_bias=tool_call_bias if tool_call_bias is not None else (
            EMBEDDED_TOOL_CALL_BIAS if name == EMBEDDED_NAME else 0.0
        ),
        max_batch=max_batch,
        compile_timeout_s=compile_timeout_s,
        processor=load_processor(model) if hf_model is not None else None,
        image_policy=image_policy,
    )


def _load_llama_cpp(model: str | None, max_batch: int, threads: int | None) -> tuple[str, Runtime, Any]:
    """A GGUF in llama.cpp, with constrain's tokenizer read from the same file and checked to
    split a chat prompt exactly as llama.cpp does. Prompts are tokenized by constrain (the same
    ids on both runtimes) and masks are built over its ids, so the two must share the vocabulary
    (the tests check every token's bytes)."""
    from constrain.decoding.runtimes.llama_cpp import LlamaCppRuntime

    name, _, gguf = resolve(model)
    assert gguf is not None  # choose_runtime allows llama.cpp for GGUF files only
    tokenizer = load_tokenizer(model)
    engine_runtime = LlamaCppRuntime(gguf, slots=max_batch, threads=threads)
    probe = "Hello, world! {\"a\": [1, 2.5e-3, null], \"b\": \"caf\u00e9\"}\n\tend"
    if getattr(tokenizer, "chat_template", None):
        probe = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},
                                               {"role": "user", "content": probe}],
                                              tokenize=False, add_generation_prompt=True)
    ours = tokenizer.encode(probe, add_special_tokens=False)
    theirs = engine_runtime.tokenize(probe)
    if ours != theirs or engine_runtime.vocab_size < len(tokenizer):
        engine_runtime.close()
        raise ModelLoadError(f"llama.cpp and transformers tokenize {gguf.name} differently; "
                             "load it with runtime='transformers'", param="runtime")
    return name, engine_runtime, tokenizer
