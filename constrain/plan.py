"""What one request turns into before decoding (a Plan), and what makes one for a model (a Planner).

Kept apart from ``model.py`` so that the tool planner (``constrain.tools``) and the request
preparation (``constrain.prepare``) depend on it, and not on each other or on the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from constrain.compiler import PropertyOrder, Whitespace
from constrain.constraints import COMPILERS, CompiledConstraint, Compiler
from constrain.deadline import DEFAULT_COMPILE_TIMEOUT_S
from constrain.images import ImagePolicy
from constrain.output import OutputParser
from constrain.vocab import Vocabulary


@dataclass
class Plan:
    """A prompt, a compiled constraint and an output parser."""

    prompt: str
    compiled: CompiledConstraint
    parser: OutputParser
    # Added to these tokens' logits at the first sampled token (tool_choice "auto": opening a call).
    opening_bias: dict[int, float] | None = None


@dataclass(frozen=True)
class Planner:
    """One model's tokenizer and compile settings: everything that plans a request for it."""

    tokenizer: Any
    vocab_size: int
    engine: str = "llguidance"
    whitespace: Whitespace = "compact"
    close_objects: bool = False
    property_order: PropertyOrder = "schema"
    tool_call_bias: float = 0.0
    compile_timeout_s: float | None = DEFAULT_COMPILE_TIMEOUT_S
    processor: Any = None  # a vision-language model's processor (images -> pixels and tokens)
    image_policy: ImagePolicy = field(default_factory=ImagePolicy)
    # This tokenizer's Compiler for ``engine`` (the one compile_constraint uses too); derived, so
    # that ``dataclasses.replace(planner, engine=...)`` gets the other engine's.
    compiler: Compiler = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiler", COMPILERS.compiler(self.engine, self.tokenizer, self.vocab_size))

    @property
    def vocabulary(self) -> Vocabulary:
        """The tokenizer's tokens as text (the tool opening's prefix lookup)."""
        return self.compiler.vocabulary

    @property
    def images(self) -> bool:
        """Whether this model reads images in messages."""
        return self.processor is not None

    def compile(self, response_format: Any, **options: Any) -> CompiledConstraint:
        """Compile a response_format for this tokenizer with these settings (cached)."""
        options.setdefault("whitespace", self.whitespace)
        options.setdefault("close_objects", self.close_objects)
        options.setdefault("property_order", self.property_order)
        options.setdefault("compile_timeout_s", self.compile_timeout_s)
        return self.compiler.compile(response_format, **options)
