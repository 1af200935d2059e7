"""What the decoding core needs from a model: one forward pass over many sequences at once.

A runtime keeps each running sequence's state (its KV cache); the core decides what goes in.
One implementation per file: ``transformers.py`` (any transformers causal LM, packed steps) and
``llama_cpp.py`` (a GGUF file in llama.cpp: one ``llama_batch`` of several sequences, several
tokens each, logits where asked).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Feed:
    """One sequence's input to a step: its new tokens (a whole prompt, a chunk of one, or the
    sampled token and any forced ones) and how many last positions' logits it needs."""

    seq_id: int
    tokens: list[int]
    keep: int = 1


@dataclass
class StepLogits:
    """A step's logits, in the order of the feeds."""

    last: torch.Tensor  # [feeds, vocab]: each sequence's last position
    earlier: list[torch.Tensor | None]  # [keep - 1, vocab] before it, where keep > 1


class Runtime(ABC):
    """A model's forward pass over many sequences at once."""

    #: width of the logits rows (the model's vocabulary, padding included)
    vocab_size: int
    #: most tokens (prompt and output) one sequence may hold
    context_length: int
    device: torch.device

    @abstractmethod
    def eos_token_ids(self) -> set[int]:
        """Tokens that end a generation, as the model's own files declare them."""

    def close(self) -> None:
        """Free what the runtime holds outside Python's reach (native contexts); none by default."""
        return None

    def start(self, seq_id: int, tokens: list[int], keep: int = 1, vision: dict[str, Any] | None = None) -> int:
        """A new sequence whose first feed will be ``tokens``: returns how many leading tokens the
        runtime already holds for it (a cached prefix, or a prompt with images prefilled here, at
        most ``len(tokens) - keep``); only the rest is fed. ``vision``: the processor's image
        inputs (``pixel_values``...) for a prompt with images. Runtimes without a prefix cache
        or images return 0."""
        if vision:
            raise NotImplementedError(f"{type(self).__name__} takes no images")
        return 0

    def memory(self) -> dict[str, int]:
        """Bytes held by the runtime's bounded buffers and caches, by name (``/health`` shows them,
        so that growth outside them, a leak, can be told from a cache filling up)."""
        return {}

    @abstractmethod
    def step(self, feeds: list[Feed]) -> StepLogits:
        """One forward pass for the fed sequences; a ``seq_id`` not seen before starts a new one."""

    @abstractmethod
    def drop(self, seq_id: int) -> None:
        """Forget a sequence (finished or cancelled) and free its place."""

    @abstractmethod
    def reset(self) -> None:
        """Forget every sequence (after a failure left the state unknown)."""

    @abstractmethod
    def length(self, seq_id: int) -> int:
        """Tokens a sequence holds (0 for one not seen)."""
