"""The default engine: llguidance (sound masks, ~1 ms compile, ~10 µs per mask)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.hf
import numpy as np

from constrain.engines.base import PRETTY_WHITESPACE, EngineGrammar, GrammarKind, Matcher
from constrain.engines.rules_matcher import RulesMatcher, TokenTable
from constrain.errors import (
    InvalidGrammarError,
    InvalidRegexError,
    SchemaLimitError,
    UnsupportedSchemaError,
)
from constrain.schema.refs import find_keyword

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions  # declared in the stub only

STEP_LEXER_FUEL = 1_000_000

# llguidance's own size limits (grammar size, lexer fuel, parser rows): a limit error of ours.
_ENGINE_LIMIT = re.compile(r"too big|too complex|too large|too many|fuel|limit exceeded|items; max is", re.IGNORECASE)
_UNIMPLEMENTED = re.compile(r'Unimplemented keys: \[(.*?)\]')
_UNKNOWN_FORMAT = re.compile(r"Unknown format: (\S+)")
_OVERLAPPING_PATTERNS = re.compile(r"patternProperty regexes .* are not disjoint", re.DOTALL)


class LLGuidanceMatcher:
    """A thin adapter over ``llguidance.LLMatcher``; errors are state, read with ``error()``."""

    __slots__ = ("_m", "_grammar")

    def __init__(self, matcher: llguidance.LLMatcher, grammar: LLGuidanceGrammar | None = None) -> None:
        self._m = matcher
        self._grammar = grammar

    @property
    def native(self) -> llguidance.LLMatcher:
        """The llguidance matcher, for batch fills (``engines/batch_masks.py``)."""
        return self._m

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        self._m.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)

    def consume(self, token_id: int) -> bool:
        return self._m.consume_token(token_id)

    def forced_tokens(self) -> list[int]:
        return self._m.compute_ff_tokens()

    def is_accepting(self) -> bool:
        return self._m.is_accepting()

    def is_stopped(self) -> bool:
        return self._m.is_stopped()

    def rollback(self, num_tokens: int) -> None:
        self._m.rollback(num_tokens)

    def error(self) -> str | None:
        if not self._m.is_error():
            return None
        self.hit_limit()
        return _message(self._m.get_error())

    def hit_limit(self) -> bool:
        """The error is the engine's own size limit (a grammar too complex here), not a bug."""
        hit = self._m.is_error() and _ENGINE_LIMIT.search(self._m.get_error()) is not None
        if hit and self._grammar is not None:
            self._grammar.stale = True  # the copies share what filled up: later ones start afresh
        return hit


def _message(error: str) -> str:
    """llguidance's message without its placeholder for the parser state left out of it."""
    return error.replace("<non-verbose/>", "").strip()


class LLGuidanceGrammar:
    """A compiled grammar: a matcher in its start state, copied for each sequence.

    Copying (~10 µs) instead of compiling the grammar text again per sequence (0.5 ms for a
    small schema, seconds for a huge one) keeps the whole compile inside the compile step,
    under its deadline, and out of the decoding core's admission.
    """

    __slots__ = ("grammar_text", "_start", "_engine", "_rules", "stale")

    def __init__(self, grammar_text: str, start: llguidance.LLMatcher,
                 engine: LLGuidanceEngine | None = None, rules: tuple[Any, ...] = ()) -> None:
        self.grammar_text = grammar_text
        self._start = start
        self._engine = engine
        self._rules = rules
        # Copies of the start matcher share its lexer's store of expressions: one long output that
        # fills it to the engine's limit would fail every later copy at its first mask, so after
        # a copy hits the limit, the next sequence gets a start matcher built anew.
        self.stale = False

    def matcher(self) -> Matcher:
        if self.stale and self._engine is not None:
            self.stale = False
            self._start = llguidance.LLMatcher(self._engine.tokenizer, self.grammar_text, log_level=0,
                                               limits=self._engine.limits)
        inner = LLGuidanceMatcher(self._start.deep_copy(), self)
        if not self._rules or self._engine is None:
            return inner
        return RulesMatcher(inner, self._engine.token_table(), self._rules, self._engine.eos_token_id)


class LLGuidanceEngine:
    """llguidance bound to one Hugging Face tokenizer."""

    name = "llguidance"
    version = f"llguidance-{llguidance.__version__}"
    grammar_kinds: frozenset[GrammarKind] = frozenset(("json_schema", "regex", "lark"))

    def __init__(self, hf_tokenizer: Any, *, vocab_size: int | None = None) -> None:
        # Expensive (~0.2-1 s): done once per tokenizer, by constrain.constraints' engine cache.
        self.tokenizer = llguidance.hf.from_tokenizer(hf_tokenizer, n_vocab=vocab_size)
        self.vocab_size = self.tokenizer.vocab_size
        self.eos_token_id = self.tokenizer.eos_token
        # No parser state in messages. Lexer fuel per token: 5x llguidance's default, which ran out
        # on a `pattern` intersected with `format: date-time` (a valid date refused mid-string);
        # a mask that spends it all takes ~60 ms here.
        self.limits = llguidance.LLParserLimits(verbose_errors=False, step_lexer_fuel=STEP_LEXER_FUEL)
        self._token_table: TokenTable | None = None

    def token_table(self) -> TokenTable:
        """Every token's bytes, and what the array-rules matcher needs to know of them (made once)."""
        if self._token_table is None:
            self._token_table = TokenTable.build([self.tokenizer.decode_bytes([i]) for i in range(self.vocab_size)])
        return self._token_table

    def grammar_text(self, grammar: EngineGrammar) -> str:
        if grammar.kind == "json_schema":
            options: JsonCompileOptions = {"whitespace_flexible": False}
            if grammar.json.whitespace == "pretty":
                options = {"whitespace_flexible": True, "whitespace_pattern": PRETTY_WHITESPACE}
            return llguidance.LLMatcher.grammar_from_json_schema(grammar.source, overrides=options)
        if grammar.kind == "regex":
            return llguidance.LLMatcher.grammar_from_regex(grammar.source)
        return llguidance.LLMatcher.grammar_from_lark(grammar.source)

    def compile(self, grammar: EngineGrammar) -> LLGuidanceGrammar:
        text = self.grammar_text(grammar)
        start = llguidance.LLMatcher(self.tokenizer, text, log_level=0, limits=self.limits)
        if start.is_error():
            raise self._translate(grammar, _message(start.get_error() or "unknown error"))
        return LLGuidanceGrammar(text, start, self, grammar.rules)

    @staticmethod
    def _translate(grammar: EngineGrammar, message: str) -> Exception:
        """The one place llguidance's error text becomes a constrain error."""
        if grammar.kind == "regex":
            return InvalidRegexError(f"the regex cannot be compiled: {message.strip()}")
        if grammar.kind == "lark":
            return InvalidGrammarError(f"the Lark grammar cannot be compiled: {message.strip()}")
        if _ENGINE_LIMIT.search(message):
            return SchemaLimitError(
                f"the JSON Schema compiles to a grammar past the engine's size or complexity limits ({message.strip()})",
                limit="grammar",
            )
        found = _UNIMPLEMENTED.search(message)
        if found:
            keywords = [k.strip().strip('"') for k in found.group(1).split(",") if k.strip()]
            keyword = keywords[0] if keywords else None
            where = find_keyword(grammar.source, keyword) if keyword else None
            return UnsupportedSchemaError(
                f"JSON Schema keyword {', '.join(repr(k) for k in keywords)} "
                f"(at {where or '?'}) cannot be enforced by the engine",
                keyword=keyword,
                pointer=where or "",
            )
        if _OVERLAPPING_PATTERNS.search(message):  # the keyword names it: normalising again can check it instead
            return UnsupportedSchemaError(
                f"`patternProperties` whose patterns a name may match together cannot be enforced by the engine "
                f"({message.strip()})", keyword="patternProperties",
                pointer=find_keyword(grammar.source, "patternProperties") or "")
        found = _UNKNOWN_FORMAT.search(message)
        if found:
            where = find_keyword(grammar.source, "format")
            return UnsupportedSchemaError(
                f"JSON Schema `format: {found.group(1)}` (at {where or '?'}) cannot be enforced by the engine",
                keyword="format",
                pointer=where or "",
            )
        return UnsupportedSchemaError(
            f"the JSON Schema cannot be enforced by the engine: {message.strip()}",
            keyword=_guess_keyword(message),
        )


def check_portable(lark: str, source: EngineGrammar) -> None:
    """Compile the Lark grammar ``lark`` with no tokenizer, the way a GPU server's llguidance reads it
    (vLLM's guidance backend: ``grammar_from("grammar", ...)``; SGLang's: ``"ebnf"``), so that an export
    fails here, with the error compiling ``source`` would raise, and not later on the server."""
    try:
        serialized = llguidance.grammar_from("grammar", lark)
    except ValueError as exc:  # not read as Lark: the exporter always writes a `start:` rule, so a bug
        raise InvalidGrammarError(f"the exported grammar is not Lark: {exc}") from None
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(serialized)
    if is_error:
        raise LLGuidanceEngine._translate(source, _message(messages[0] if messages else "unknown error"))


def _guess_keyword(message: str) -> str | None:
    if "regex" in message:
        return "pattern"
    for keyword in ("patternProperties", "format", "$ref", "multipleOf", "oneOf"):
        if keyword in message:
            return keyword
    return None


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
