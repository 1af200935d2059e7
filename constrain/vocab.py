"""Each token's text, decoded once per tokenizer (the budget closer and the tool opening read it)."""

from __future__ import annotations

import weakref
from typing import Any

_texts: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
_prefixes: weakref.WeakKeyDictionary[Any, dict[str, list[int]]] = weakref.WeakKeyDictionary()


def token_texts(tokenizer: Any) -> list[str]:
    """``tokenizer.decode([i])`` for every id, special tokens spelled out; cached."""
    cached = _texts.get(tokenizer)
    if cached is None:
        cached = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=False,
                                        clean_up_tokenization_spaces=False)
        _texts[tokenizer] = cached
    return cached


def prefix_tokens(tokenizer: Any, text: str) -> list[int]:
    """The ids of the tokens whose (non-empty) text is a prefix of ``text``; cached."""
    per_text = _prefixes.setdefault(tokenizer, {})
    if text not in per_text:
        per_text[text] = [i for i, t in enumerate(token_texts(tokenizer)) if t and text.startswith(t)]
    return per_text[text]
