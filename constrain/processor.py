"""ConstraintLogitsProcessor: the same masks for users of ``model.generate()``."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor

from constrain.constraints import CompiledConstraint, compile_constraint
from constrain.decoding.sampling import allocate_token_bitmask, apply_token_bitmask_inplace, bitmask_to_bool
from constrain.errors import GenerationError


class ConstraintLogitsProcessor(LogitsProcessor):
    """A ``transformers.LogitsProcessor`` that masks every token the constraint forbids.

    Parameters
    ----------
    response_format : dict | pydantic model class | CompiledConstraint
        Any dialect ``chat_completion`` accepts.
    tokenizer : transformers tokenizer
        Needed unless a CompiledConstraint is given.

    One processor serves one ``generate()`` call (one matcher per batch row); make a new one per call.
    With ``model.generate``, the model's EOS ends the output once the constraint is complete.
    """

    def __init__(self, response_format: Any, tokenizer: Any = None, **options: Any) -> None:
        if isinstance(response_format, CompiledConstraint):
            self.compiled = response_format
        else:
            if tokenizer is None:
                raise ValueError("ConstraintLogitsProcessor needs the `tokenizer` to compile a response_format")
            self.compiled = compile_constraint(response_format, tokenizer, **options)
        self._matchers: list[Any] = []
        self._prompt_length = 0
        self._bitmask = allocate_token_bitmask(self.compiled.vocab_size)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.compiled.is_unconstrained:
            return scores
        if not self._matchers:
            self._matchers = [self.compiled.matcher() for _ in range(input_ids.shape[0])]
            self._prompt_length = input_ids.shape[1]
        else:
            for row, matcher in enumerate(self._matchers):
                token = int(input_ids[row, -1])
                if matcher.is_stopped():
                    continue
                if not matcher.consume(token):
                    raise GenerationError(f"the engine rejected token {token}: {matcher.error()}")
        for row, matcher in enumerate(self._matchers):
            matcher.fill_bitmask(self._bitmask)
            allowed = bitmask_to_bool(self._bitmask, self.compiled.vocab_size, scores.device)
            apply_token_bitmask_inplace(scores[row], allowed)
        return scores
