"""A request, prepared once: parsed, planned (prompt, constraint, parser), tokenized, its sampling fixed.

Every entry point (``Model.chat_completion``, the server, the batch job) prepares a request
here exactly once, then hands ``prepared.job`` to the decoding core. Bad input raises here,
before anything queues, with an error naming the field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from constrain.chat_template import message_dicts, render
from constrain.decoding import DecodeJob, DecodeStats, SamplingParams, SequenceHandle, Step
from constrain.errors import InvalidRequestError
from constrain.images import image_parts, load_images
from constrain.output import ContentParser
from constrain.plan import Plan, Planner
from constrain.requests import parse_request
from constrain.tools import plan_tools
from constrain.types import ChatCompletionRequest

LogprobsMode = Literal["sampled", "raw"]


@dataclass(frozen=True)
class ResponseInfo:
    """What every response of one request carries besides the generated text."""

    tokenizer: Any
    model_name: str
    fingerprint: str
    logprobs: bool
    token_info: bool = False  # extension: per-token view (``types.TokenInfo``)


@dataclass
class PreparedRequest:
    """A validated request for one model, ready to submit to its decoding core."""

    request: ChatCompletionRequest
    plan: Plan
    job: DecodeJob
    info: ResponseInfo
    handle: SequenceHandle | None = None  # set once submitted

    @property
    def stream(self) -> bool:
        return self.request.stream

    @property
    def include_usage(self) -> bool:
        return bool(self.request.stream_options and self.request.stream_options.include_usage)

    def check(self, stats: DecodeStats) -> None:
        """Validate a finished constrained answer; a failure is a bug and raises GenerationError.

        A stop string may cut the answer short on purpose (a prefix is not validated); tool
        calls are checked by their parser.
        """
        if stats.finish_reason == "stop" and not stats.stop_sequence_hit and isinstance(self.plan.parser, ContentParser):
            self.plan.compiled.check_output(stats.text)

    def checked(self, steps: Iterable[Step], stats: DecodeStats) -> Iterator[Step]:
        """``steps``, with the output validated before the last one goes out."""
        for step in steps:
            if step.finish_reason is not None:
                self.check(stats)
            yield step

    async def checked_async(self, steps: AsyncIterator[Step], stats: DecodeStats) -> AsyncIterator[Step]:
        async for step in steps:
            if step.finish_reason is not None:
                self.check(stats)
            yield step


def plan_request(planner: Planner, request: ChatCompletionRequest) -> Plan:
    """Prompt, constraint and output parser for a request."""
    tool_plan = plan_tools(planner, request)  # None without tools or tool history
    if tool_plan is not None:
        return tool_plan
    compiled = planner.compile(request.response_format)
    prompt = render(planner.tokenizer, message_dicts(request.messages, images=planner.images))
    return Plan(prompt=prompt, compiled=compiled, parser=ContentParser())


def prepare(
    planner: Planner,
    fields: dict[str, Any] | ChatCompletionRequest,
    *,
    context_length: int,
    model_name: str,
    fingerprint: str,
    logprobs_mode: LogprobsMode = "sampled",
    default_max_tokens: int | None = None,
) -> PreparedRequest:
    """Parse (unless already parsed), plan and tokenize a request; raises a 400 naming the field.

    ``max_tokens`` defaults to ``default_max_tokens`` (capped by the room the prompt leaves),
    else to the whole room.
    """
    if isinstance(fields, ChatCompletionRequest):
        request = fields
    else:
        if "messages" in fields and fields["messages"] is not None and not isinstance(fields["messages"], list):
            raise InvalidRequestError("`messages` must be a list of messages", param="messages")
        request = parse_request(fields)
    plan = plan_request(planner, request)
    vision: dict[str, Any] | None = None
    if planner.images and image_parts(request.messages):
        images = load_images(request.messages, planner.image_policy)
        inputs = dict(planner.processor(text=[plan.prompt], images=[images], return_tensors="pt",
                                        add_special_tokens=False))
        prompt_ids = inputs.pop("input_ids")[0].tolist()
        inputs.pop("attention_mask", None)
        vision = inputs
    else:
        prompt_ids = planner.tokenizer(plan.prompt, add_special_tokens=False)["input_ids"]
    room = context_length - len(prompt_ids)
    if room <= 0:
        raise InvalidRequestError(
            f"`messages` take {len(prompt_ids)} tokens, more than the model's context of {context_length}",
            param="messages",
        )
    limit = request.token_limit()
    if limit is not None and limit > room:
        raise InvalidRequestError(
            f"`max_tokens` is {limit}, but only {room} tokens fit after the prompt (context {context_length})",
            param="max_tokens",
        )
    if limit is None:
        limit = room if default_max_tokens is None else min(default_max_tokens, room)
    params = SamplingParams(
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        seed=request.seed,
        frequency_penalty=request.frequency_penalty or 0.0,
        presence_penalty=request.presence_penalty or 0.0,
        logprobs=bool(request.logprobs or request.token_info),
        # The token view shows 5 alternatives unless the request asks for its own number.
        top_logprobs=request.top_logprobs or (0 if request.logprobs or not request.token_info else 5),
        raw_logprobs=logprobs_mode == "raw",
    )
    job = DecodeJob(prompt_ids=prompt_ids, compiled=plan.compiled, params=params, max_tokens=limit,
                    stop=list(request.stop or []), opening_bias=plan.opening_bias, vision=vision)
    info = ResponseInfo(tokenizer=planner.tokenizer, model_name=request.model or model_name,
                        fingerprint=fingerprint, logprobs=bool(request.logprobs),
                        token_info=bool(request.token_info))
    return PreparedRequest(request=request, plan=plan, job=job, info=info)
