"""Closing an output before ``max_tokens`` runs out, so that a constrained answer still completes.

Without this, a constrained output that meets its token budget inside a string or object is
cut mid-structure: unparseable JSON, or a tool call with half its arguments. Small models that
start repeating themselves inside a string hit this often. Two ways to close, cheapest first:

1. **Structure**: once the tokens left are about as many as closing the open strings, arrays and
   objects takes (one per level, plus ``MARGIN``), the mask is narrowed to the tokens that only
   close (a ``"`` ending the open string, ``]``, ``}``) or end the sequence, whenever the
   constraint allows one, else to a comma (on to a key the constraint still requires).
2. **The shortest completion**: where the constraint allows no closer yet (an email that still
   needs ``@`` and a domain, a pattern, a date, required keys), :func:`shortest_completion`
   searches the matcher for the shortest way to an accepting state (one character per token,
   breadth first, states told apart by their masks), and the closer starts early enough for it
   and then follows it, one token at a time.

The constraint still decides what is allowed, so the output stays valid; where no completion
fits, the model goes on unhindered and the answer is cut, as without a constraint. Such an
answer reports ``finish_reason: "length"`` when closing overrode the model's own choice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from constrain.nesting import Nesting
from constrain.vocab import Vocabulary

BRACKETS = frozenset("]}")
# Tokens kept in hand besides one per open bracket: a closing wrapper (``</tool_call>``) and a
# required key or two that the constraint may still demand.
MARGIN = 12
# How far ahead of that a stuck output (no closer allowed) looks for its shortest completion.
LOOKAHEAD = 24
# The search gives up after this many matcher states (each costs a mask, ~10-200 µs).
MAX_STATES = 400
# A completion is followed once the tokens left are no more than its length plus this.
SLACK = 2


def closer_masks(vocabulary: Vocabulary, vocab_size: int, eos_token_ids: set[int]) -> tuple[torch.Tensor, ...]:
    """Bool vectors over the vocabulary: the tokens that close (in a string, outside one), and commas.

    In a string a closer is ``"`` followed by nothing but brackets; outside, brackets alone.
    End-of-sequence is a closer in both. Anything else could open something new. A comma is the
    way on when nothing may close yet (an object still missing a required key after a long number).
    Built once per vocabulary (and size and end tokens), kept by the vocabulary.
    """
    eos = frozenset(eos_token_ids)

    def build(all_texts: list[str]) -> tuple[torch.Tensor, ...]:
        texts = all_texts[:vocab_size]
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
        for t in eos:
            if t < vocab_size:
                in_string[t] = outside[t] = True
        return in_string, outside, commas

    return vocabulary.table(("closer_masks", vocab_size, eos), build)


def char_tokens(vocabulary: Vocabulary, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The ids of the tokens that spell one printable ASCII character (every path the constraint
    allows over ASCII text can be spelled with them), and each one's class: letters of a case
    and digits share one (a pattern rarely tells them apart), every other character is its own.
    Built once per vocabulary (and size), kept by the vocabulary."""

    def build(all_texts: list[str]) -> np.ndarray:
        texts = all_texts[:vocab_size]
        best: dict[str, int] = {}
        for i, text in enumerate(texts):
            if len(text) == 1 and " " <= text <= "~" and text not in best:
                best[text] = i
        chars = sorted(best, key=best.__getitem__)
        ids = np.array([best[c] for c in chars], dtype=np.int64)
        classes = np.array([ord("a" if c.islower() else "A" if c.isupper() else "0" if c.isdigit() else c)
                            for c in chars], dtype=np.int64)
        return np.stack([ids, classes])

    table = vocabulary.table(("char_tokens", vocab_size), build)
    return table[0], table[1]


def _allowed_of(bitmask: np.ndarray, ids: np.ndarray) -> np.ndarray:
    words = bitmask.view(np.uint32)
    return ((words[ids >> 5] >> (ids & 31).astype(np.uint32)) & 1).astype(bool)  # type: ignore[no-any-return]


def shortest_completion(matcher: Any, candidates: tuple[np.ndarray, np.ndarray], words: int, max_tokens: int,
                        max_states: int = MAX_STATES) -> list[int] | None:
    """A short path of one-character tokens from the matcher's state to a complete output, or
    None when none is found within ``max_tokens`` tokens and ``max_states`` states.

    Breadth first, so the first path found is the shortest the search sees; it tries one
    character per class (one letter, one digit, each punctuation mark) and keeps one state per
    distinct mask at each depth, which holds the search to a few states a level. Both merges
    can only miss a path, never make one up: every path returned was consumed by the matcher.
    The matcher is left as it was found.
    """
    if matcher.is_accepting() or matcher.is_stopped():
        return []
    ids, classes = candidates
    mask = np.zeros(words, dtype=np.int32)
    frontier: list[list[int]] = [[]]
    states = 0
    for _ in range(max_tokens):
        following: list[list[int]] = []
        seen: set[bytes] = set()
        for path in frontier:
            for t in path:
                matcher.consume(t)
            try:
                matcher.fill_bitmask(mask)
                allowed = _allowed_of(mask, ids)
                _, first = np.unique(classes[allowed], return_index=True)
                for token in ids[allowed][first].tolist():
                    if not matcher.consume(token):
                        return None  # an error state: nothing to find from here
                    try:
                        if matcher.is_accepting() or matcher.is_stopped():
                            return [*path, token]
                        states += 1
                        if states > max_states:
                            return None
                        matcher.fill_bitmask(mask)
                        key = mask.tobytes()
                        if key not in seen:
                            seen.add(key)
                            following.append([*path, token])
                    finally:
                        matcher.rollback(1)
            finally:
                if path:
                    matcher.rollback(len(path))
        if not following:
            return None
        frontier = following
    return None


class BudgetCloser:
    """Per sequence: narrows the allowed tokens to a way to close when the budget is nearly spent."""

    def __init__(self, vocabulary: Vocabulary, vocab_size: int, eos_token_ids: set[int], max_tokens: int) -> None:
        self.vocabulary = vocabulary
        self.vocab_size = vocab_size
        self.eos_token_ids = eos_token_ids
        self.max_tokens = max_tokens
        self.nesting = Nesting()
        self.closers: tuple[torch.Tensor, ...] | None = None
        self.closing = False  # once started, closing goes on: a closed bracket must not reopen room
        self.narrowed = False  # True once the model's first choice was held back
        self.path: list[int] = []  # the completion being followed
        self._path_at = -1  # `generated` when path[0] is due
        self._next_search = 0  # no new search until `generated` reaches this

    def _closer_set(self, allowed: torch.Tensor) -> torch.Tensor:
        if self.closers is None:
            self.closers = closer_masks(self.vocabulary, self.vocab_size, self.eos_token_ids)
        closers = self.closers[0 if self.nesting.in_string else 1].to(allowed.device)
        narrowed = allowed & closers[: allowed.numel()]
        if not narrowed.any() and self.nesting.open and not self.nesting.in_string:
            narrowed = allowed & self.closers[2].to(allowed.device)[: allowed.numel()]
        return narrowed

    def _completion(self, matcher: Any, generated: int, allowed: torch.Tensor) -> list[int]:
        """The completion to follow from here: the one being followed, or a new search (while a
        completion fits with room to spare, searched again only halfway to its deadline)."""
        if self._path_at == generated and self.path and bool(allowed[self.path[0]]):
            return self.path
        self.path = []  # stale: forced tokens moved on, or the model left the path
        if matcher is None or generated < self._next_search:
            return self.path
        words = (self.vocab_size + 31) // 32
        left = self.max_tokens - generated
        self.path = shortest_completion(matcher, char_tokens(self.vocabulary, self.vocab_size), words, left) or []
        self._path_at = generated
        slack = left - len(self.path) - SLACK
        self._next_search = generated + (max(1, slack // 2) if self.path else 4)
        return self.path

    def narrow(self, allowed: torch.Tensor, text: str, generated: int,
               logits: torch.Tensor | None = None, matcher: Any = None) -> torch.Tensor:
        """``allowed`` (bool, on the CPU or the device), narrowed when it is time to close.

        ``logits`` (before the mask) tell whether the narrowing overrode the model's first choice;
        only then is the output reported as ended by the budget. ``matcher`` (the sequence's, in
        the state this mask belongs to) lets the closer find a completion where no token closes.
        """
        self.nesting.update(text)
        left = self.max_tokens - generated
        need = self.nesting.open + MARGIN
        if not self.closing and left > need + LOOKAHEAD:
            return allowed
        if self.nesting.open and left <= need:
            self.closing = True
        narrowed = self._closer_set(allowed)
        if not narrowed.any():  # nothing may close here: follow the shortest completion once it is due
            path = self._completion(matcher, generated, allowed)
            if not path or left > len(path) + SLACK:
                return allowed
            self.closing = True
            narrowed = torch.zeros_like(allowed)
            narrowed[path.pop(0)] = True
            self._path_at = generated + 1
        elif not self.closing:
            return allowed
        if logits is None:
            self.narrowed = self.narrowed or not torch.equal(narrowed, allowed)
        else:
            n = allowed.numel()
            best = int(torch.argmax(logits[:n].masked_fill(~allowed.to(logits.device), float("-inf"))))
            self.narrowed = self.narrowed or not bool(narrowed[best])
        return narrowed
