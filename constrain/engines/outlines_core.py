"""Optional engine: outlines-core (schema -> one regex -> DFA -> token-transition index).

Useful as a second opinion and for comparisons; masks are O(1) per step once the index is
built, but the build is slow and large schemas blow up, so llguidance stays the default.
Lark grammars are not supported (outlines-core has no context-free parser).
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import outlines_core
from outlines_core.json_schema import build_regex_from_schema

from constrain.engines.base import PRETTY_WHITESPACE, EngineGrammar, GrammarKind
from constrain.errors import InvalidRegexError, InvalidRequestError, UnsupportedSchemaError

# How many consumed tokens a matcher can undo; forced-token look-ahead uses the same history.
_MAX_ROLLBACK = 512
_MAX_FORCED = 64


class OutlinesCoreMatcher:
    """Per-sequence state over an ``outlines_core.Guide``; errors are state, read with ``error()``."""

    __slots__ = ("_guide", "_eos", "_words", "_scratch", "_error")

    def __init__(self, index: outlines_core.Index, eos_token_id: int, vocab_size: int) -> None:
        self._guide = outlines_core.Guide(index, max_rollback=_MAX_ROLLBACK)
        self._eos = eos_token_id
        self._words = (vocab_size + 31) // 32
        # One reusable buffer: forced-token and stop checks read the mask instead of
        # materialising the allowed-token list (tens of thousands of ints in a wide state).
        self._scratch = np.zeros(self._words, dtype=np.int32)
        self._error: str | None = None

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        if self._error is not None:
            bitmask[:] = 0
            return
        self._guide.write_mask_into(bitmask.ctypes.data, bitmask.size, 4)

    def consume(self, token_id: int) -> bool:
        if self._error is not None:
            return False
        try:
            self._guide.advance(token_id=token_id, return_tokens=False)
        except ValueError as exc:
            self._error = f"outlines_core rejected token {token_id}: {exc}"
            return False
        return True

    def _only_token(self) -> int | None:
        """The single allowed token (EOS counts) if there is exactly one, else None."""
        buf = self._scratch
        self._guide.write_mask_into(buf.ctypes.data, buf.size, 4)
        nonzero = np.flatnonzero(buf)
        if nonzero.size != 1:
            return None
        word = int(buf[nonzero[0]]) & 0xFFFF_FFFF
        if word & (word - 1):
            return None
        return int(nonzero[0]) * 32 + word.bit_length() - 1

    def forced_tokens(self) -> list[int]:
        if self._error is not None:
            return []
        forced: list[int] = []
        while len(forced) < _MAX_FORCED:
            token = self._only_token()
            if token is None or token == self._eos:
                break
            self._guide.advance(token_id=token, return_tokens=False)
            forced.append(token)
        if forced:
            self._guide.rollback_state(len(forced))
        return forced

    def is_accepting(self) -> bool:
        return self._error is None and self._guide.is_finished()

    def is_stopped(self) -> bool:
        return self.is_accepting() and self._only_token() == self._eos

    def rollback(self, num_tokens: int) -> None:
        if num_tokens:
            self._guide.rollback_state(num_tokens)
        self._error = None

    def error(self) -> str | None:
        return self._error

    def hit_limit(self) -> bool:
        return False


class OutlinesCoreGrammar:
    __slots__ = ("grammar_text", "_index", "_eos", "_vocab_size")

    def __init__(self, regex: str, index: outlines_core.Index, eos_token_id: int, vocab_size: int) -> None:
        self.grammar_text = regex
        self._index = index
        self._eos = eos_token_id
        self._vocab_size = vocab_size

    def matcher(self) -> OutlinesCoreMatcher:
        return OutlinesCoreMatcher(self._index, self._eos, self._vocab_size)


class OutlinesCoreEngine:
    """outlines-core bound to one Hugging Face tokenizer."""

    name = "outlines_core"
    version = f"outlines_core-{importlib.metadata.version('outlines-core')}"
    grammar_kinds: frozenset[GrammarKind] = frozenset(("json_schema", "regex"))  # no context-free parser

    def __init__(self, hf_tokenizer: Any, *, vocab_size: int | None = None) -> None:
        # llguidance (a core dependency) already knows how to turn any HF tokenizer
        # (byte-level BPE or sentencepiece) into exact token bytes: reuse it once here.
        lltok = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size)
        self.vocab_size = lltok.vocab_size
        self.eos_token_id = lltok.eos_token
        by_bytes: dict[bytes, list[int]] = {}
        for token in range(self.vocab_size):
            if token == self.eos_token_id or lltok.is_special_token(token):
                continue
            data = lltok.decode_bytes([token])
            if data:
                by_bytes.setdefault(data, []).append(token)
        self.vocabulary = outlines_core.Vocabulary(self.eos_token_id, by_bytes)

    def regex(self, grammar: EngineGrammar) -> str:
        """The one regex outlines-core compiles for a grammar."""
        if grammar.kind == "json_schema":
            whitespace = "" if grammar.json.whitespace == "compact" else PRETTY_WHITESPACE
            source = grammar.source if isinstance(grammar.source, str) else json.dumps(grammar.source)
            try:
                pattern: str = build_regex_from_schema(source, whitespace)
                return pattern
            except (ValueError, TypeError) as exc:
                raise UnsupportedSchemaError(
                    f"the JSON Schema cannot be enforced by the engine 'outlines_core': "
                    f"{str(exc).strip().splitlines()[0]}",
                ) from None
        if grammar.kind == "regex":
            return str(grammar.source)
        raise InvalidRequestError(
            "engine 'outlines_core' does not support Lark grammars; use engine 'llguidance'",
            param="response_format",
        )

    def compile(self, grammar: EngineGrammar) -> OutlinesCoreGrammar:
        if grammar.rules:
            keyword = grammar.rules[0][1].keyword
            what = "property_order='any'" if keyword == "properties" else f"{keyword} over unbounded items"
            raise UnsupportedSchemaError(
                f"{what} is enforced by constrain's matcher on the engine 'llguidance' only",
                keyword=keyword, pointer="")
        regex = self.regex(grammar)
        try:
            index = outlines_core.Index(regex, self.vocabulary)
        except (ValueError, TypeError, RuntimeError) as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if grammar.kind == "regex":
                raise InvalidRegexError(
                    f"the regex cannot be compiled by the engine 'outlines_core': {message}"
                ) from None
            raise UnsupportedSchemaError(
                f"the JSON Schema cannot be enforced by the engine 'outlines_core': {message}"
            ) from None
        return OutlinesCoreGrammar(regex, index, self.eos_token_id, self.vocab_size)
