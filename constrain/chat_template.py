"""Messages (and tools) -> prompt text, through the model's chat template.

Models without a template get ChatML, the format SmolLM2, Qwen and many others use.
"""

from __future__ import annotations

from typing import Any

from constrain.errors import InvalidRequestError
from constrain.types import ImagePart, Message

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def template_renders_tools(tokenizer: Any) -> bool:
    """Whether the chat template reads a ``tools`` variable (then tools go through it)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def message_dicts(messages: list[Message], *, param: str = "messages", images: bool = False) -> list[dict[str, Any]]:
    """Plain dicts for the template. Text-only models refuse image parts here; for a model that
    reads images, a message with images keeps its parts, each image as ``{"type": "image"}``
    (the placeholder chat templates of vision-language models expect)."""
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        content: str | list[dict[str, Any]] = message.text()
        if message.has_images():
            if not images:
                where = next(j for j, part in enumerate(message.content or []) if isinstance(part, ImagePart))
                raise InvalidRequestError(
                    f"`{param}[{i}].content[{where}]` is an image, but this model reads text only",
                    param=f"{param}.{i}.content.{where}",
                )
            assert isinstance(message.content, list)
            content = [{"type": "image"} if isinstance(part, ImagePart) else {"type": "text", "text": part.text}
                       for part in message.content]
        entry: dict[str, Any] = {"role": message.role, "content": content}
        if message.name:
            entry["name"] = message.name
        if message.tool_calls:
            entry["tool_calls"] = [call.model_dump(exclude_none=True) for call in message.tool_calls]
        if message.tool_call_id:
            entry["tool_call_id"] = message.tool_call_id
        out.append(entry)
    return out


def render(tokenizer: Any, messages: list[dict[str, Any]], *, tools: list[dict[str, Any]] | None = None) -> str:
    """The prompt text, ending where the assistant's answer starts."""
    kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
    if tools is not None:
        kwargs["tools"] = tools
    if not getattr(tokenizer, "chat_template", None):
        kwargs["chat_template"] = CHATML_TEMPLATE
    try:
        text: str = tokenizer.apply_chat_template(messages, **kwargs)
        return text
    except Exception as exc:  # jinja errors: the template refused this conversation
        raise InvalidRequestError(f"the chat template cannot render these messages: {exc}", param="messages") from None
