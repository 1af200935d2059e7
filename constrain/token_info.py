"""The token view (request extension ``token_info: true``): what chose each output token.

The Playground shows it so that users can see a constraint at work: which tokens the model
sampled, which the constraint forced (fast-forwarded, no sampling at all) and which the budget
closer steered so that the output closes within ``max_tokens``. Built from the same Steps as
the response, so the entries line up with ``usage.completion_tokens``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from constrain.decoding import Step
from constrain.types import TokenAlternative, TokenInfo

How = Literal["sampled", "forced", "closer"]


def _text(tokenizer: Any, token_id: int) -> str:
    text: str = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text


def step_token_info(tokenizer: Any, step: Step) -> list[TokenInfo]:
    """One entry per token of ``step``: the first ones sampled, the last ``step.forced`` forced."""
    out: list[TokenInfo] = []
    first_forced = len(step.token_ids) - step.forced
    for i, token_id in enumerate(step.token_ids):
        how: How = "forced" if i >= first_forced else ("closer" if step.steered else "sampled")
        entry = step.logprobs[i] if i < len(step.logprobs) else None
        # Tokens the constraint forbade (log-probability -inf) are no alternatives.
        top = [TokenAlternative(text=_text(tokenizer, t), logprob=v) for t, v in entry.top if math.isfinite(v)] if entry else []
        out.append(TokenInfo(id=token_id, text=_text(tokenizer, token_id),
                             logprob=entry.logprob if entry else 0.0, how=how, top=top))
    return out
