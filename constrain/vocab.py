"""One tokenizer's vocabulary as text: each token's text, and the tables built over it."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

_T = TypeVar("_T")


class Vocabulary:
    """One tokenizer's tokens as text, and the tables built over them (xgrammar's TokenizerInfo).

    Made once per tokenizer by its owner (a :class:`constrain.constraints.Compiler`) and handed to
    whatever reads tokens as text: the budget closer, the tool opening. Everything is built on
    first use (decoding 50k-150k tokens takes ~0.5 s) and kept for the vocabulary's life.

    Holds its tokenizer weakly: the registry behind ``compile_constraint`` keeps one Vocabulary
    per tokenizer and must not keep the tokenizer alive through it.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = weakref.ref(tokenizer)
        self._lock = threading.Lock()
        self._texts: list[str] | None = None
        self._prefixes: dict[str, list[int]] = {}
        self._tables: dict[Hashable, Any] = {}

    @property
    def tokenizer(self) -> Any:
        """The tokenizer this vocabulary belongs to."""
        tokenizer = self._tokenizer()
        if tokenizer is None:
            raise ReferenceError("this Vocabulary's tokenizer no longer exists")
        return tokenizer

    @property
    def texts(self) -> list[str]:
        """``tokenizer.decode([i])`` for every id, special tokens spelled out; decoded once."""
        if self._texts is None:
            tokenizer = self.tokenizer
            with self._lock:  # many sequences may start at once: decode the vocabulary once, not each
                if self._texts is None:
                    self._texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))],
                                                         skip_special_tokens=False,
                                                         clean_up_tokenization_spaces=False)
        return self._texts

    def prefix_tokens(self, text: str) -> list[int]:
        """The ids of the tokens whose (non-empty) text is a prefix of ``text``; kept per text."""
        found = self._prefixes.get(text)
        if found is None:
            found = [i for i, t in enumerate(self.texts) if t and text.startswith(t)]
            self._prefixes[text] = found
        return found

    def table(self, key: Hashable, build: Callable[[list[str]], _T]) -> _T:
        """A table over the token texts, built by ``build(texts)`` on first use and kept under ``key``.

        For the layers above that need their own per-vocabulary tables (the budget closer's masks)
        without a cache of their own; ``key`` names the table and what it depends on.
        """
        try:
            return cast(_T, self._tables[key])
        except KeyError:
            pass
        built = build(self.texts)
        with self._lock:
            return cast(_T, self._tables.setdefault(key, built))
