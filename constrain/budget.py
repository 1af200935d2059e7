"""Closing an open structure before ``max_tokens`` runs out, so a cut output still parses.

Without this, a constrained output that meets its token budget inside a string or object is
cut mid-structure: unparseable JSON, or a tool call with half its arguments. Small models that
start repeating themselves inside a string hit this often. So, once the tokens left are about
as many as closing the open structure needs, the mask is narrowed to the tokens that only close
(a ``"`` ending the open string, ``]``, ``}``) or end the sequence, whenever the constraint
allows one, else to a comma (on to a key the constraint still requires).
The constraint still decides what is allowed, so the output stays valid; where it needs more
(a required key, ``minItems``), the model goes on unhindered. Such an answer reports
``finish_reason: "length"``: the budget ended it, even though it is complete.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

from constrain.nesting import Nesting
from constrain.vocab import token_texts

BRACKETS = frozenset("]}")
# Tokens kept in hand besides one per open bracket: a closing wrapper (``</tool_call>``) and a
# required key or two that the constraint may still demand.
MARGIN = 12

_closer_masks: weakref.WeakKeyDictionary[Any, tuple[torch.Tensor, ...]] = weakref.WeakKeyDictionary()


def closer_masks(tokenizer: Any, vocab_size: int, eos_token_ids: set[int]) -> tuple[torch.Tensor, ...]:
    """Bool vectors over the vocabulary: the tokens that close (in a string, outside one), and commas.

    In a string a closer is ``"`` followed by nothing but brackets; outside, brackets alone.
    End-of-sequence is a closer in both. Anything else could open something new. A comma is the
    way on when nothing may close yet (an object still missing a required key after a long number).
    """
    cached = _closer_masks.get(tokenizer)
    if cached is None or cached[0].numel() != vocab_size:
        texts = token_texts(tokenizer)[:vocab_size]
        in_string = torch.zeros(vocab_size, dtype=torch.bool)
        outside = torch.zeros(vocab_size, dtype=torch.bool)
        commas = torch.zeros(vocab_size, dtype=torch.bool)
        for i, text in enumerate(texts):
            if text and set(text) <= BRACKETS:
                outside[i] = True
            elif text.startswith('"') and set(text[1:]) <= BRACKETS:
                in_string[i] = True
            elif text == ",":
                commas[i] = True
        for t in eos_token_ids:
            if t < vocab_size:
                in_string[t] = outside[t] = True
        cached = (in_string, outside, commas)
        _closer_masks[tokenizer] = cached
    return cached


class BudgetCloser:
    """Per sequence: narrows the allowed tokens to closers when the budget is nearly spent."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids: set[int], max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_token_ids
        self.max_tokens = max_tokens
        self.nesting = Nesting()
        self.closers: tuple[torch.Tensor, ...] | None = None
        self.closing = False  # once started, closing goes on: a closed bracket must not reopen room
        self.narrowed = False  # True once the model's first choice was held back

    def narrow(self, allowed: torch.Tensor, text: str, generated: int,
               logits: torch.Tensor | None = None) -> torch.Tensor:
        """``allowed`` (bool, on the CPU or the device), narrowed when it is time to close.

        ``logits`` (before the mask) tell whether the narrowing overrode the model's first choice;
        only then is the output reported as ended by the budget.
        """
        self.nesting.update(text)
        if not self.closing:
            left = self.max_tokens - generated
            if not self.nesting.open or left > self.nesting.open + MARGIN:
                return allowed
            self.closing = True
        if self.closers is None:
            self.closers = closer_masks(self.tokenizer, self.vocab_size, self.eos_token_ids)
        closers = self.closers[0 if self.nesting.in_string else 1].to(allowed.device)
        narrowed = allowed & closers[: allowed.numel()]
        if not narrowed.any() and not self.nesting.in_string:
            narrowed = allowed & self.closers[2].to(allowed.device)[: allowed.numel()]
        if not narrowed.any():
            return allowed
        if logits is None:
            self.narrowed = self.narrowed or not torch.equal(narrowed, allowed)
        else:
            n = allowed.numel()
            best = int(torch.argmax(logits[:n].masked_fill(~allowed.to(logits.device), float("-inf"))))
            self.narrowed = self.narrowed or not bool(narrowed[best])
        return narrowed
