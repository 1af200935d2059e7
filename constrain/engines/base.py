"""The engine boundary: grammar text in, per-sequence matchers out.

Only modules in ``constrain/engines/`` import a mask library. The names follow
llguidance and xgrammar (``fill_bitmask``, int32 words, bit ``t % 32``
of word ``t // 32`` set when token ``t`` is allowed), so readers of either feel at home.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

EngineName = Literal["llguidance", "outlines_core"]
GrammarKind = Literal["json_schema", "regex", "lark"]
# The whitespace "pretty" JSON may hold between tokens: newlines and indentation, bounded so
# that the model cannot loop on whitespace. The one spelling every engine and grammar uses.
PRETTY_WHITESPACE = r"[\n ]{0,24}"


@dataclass(frozen=True)
class JsonOptions:
    """How JSON is laid out. Compact leaves the model no whitespace to loop on."""

    whitespace: Literal["compact", "pretty"] = "compact"


@dataclass(frozen=True)
class EngineGrammar:
    """What an engine compiles: a normalised JSON Schema, a regex, or a Lark grammar."""

    kind: GrammarKind
    source: Any
    json: JsonOptions = field(default_factory=JsonOptions)
    # What the matcher keeps at instance paths: ArrayRule (constrain.schema.array_rules), ObjectRule (schema.order).
    rules: tuple[tuple[Any, Any], ...] = ()


class Matcher(Protocol):
    """Per-sequence state: which tokens may come next, and what has been consumed."""

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        """Write the allowed-token bits into a 1-D int32 array of ceil(V/32) words."""

    def consume(self, token_id: int) -> bool:
        """Advance by one token; False (and an error state) if the token is not allowed."""

    def forced_tokens(self) -> list[int]:
        """Tokens that are the only way forward from here (fast-forward), without consuming them."""

    def is_accepting(self) -> bool:
        """The output so far is complete (EOS would be allowed)."""

    def is_stopped(self) -> bool:
        """No further token is possible: the output is complete and cannot grow."""

    def rollback(self, num_tokens: int) -> None:
        """Undo the last ``num_tokens`` consumed tokens."""

    def error(self) -> str | None:
        """The engine's error message, if the matcher is in an error state."""

    def hit_limit(self) -> bool:
        """The error is the engine's own size or complexity limit (the constraint is too complex
        at this point of the output), not a token the constraint refused."""


class CompiledGrammar(Protocol):
    """An immutable compiled grammar; ``matcher()`` makes a fresh per-sequence state."""

    grammar_text: str

    def matcher(self) -> Matcher: ...


class Engine(Protocol):
    """One engine bound to one tokenizer (the vocabulary conversion is done once, here).

    What an engine can compile is declared in ``grammar_kinds``: callers ask that, never the
    engine's name.
    """

    name: str
    version: str  # the engine library and its version, for fingerprints ("llguidance-1.9.1")
    vocab_size: int
    eos_token_id: int
    grammar_kinds: frozenset[GrammarKind]

    def compile(self, grammar: EngineGrammar) -> CompiledGrammar:
        """Compile or raise a ``constrain.errors`` exception naming what is unsupported."""


class EmptyMatcher:
    """The matcher of a language with no member: no token (not even EOS) is ever allowed."""

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        bitmask[:] = 0

    def consume(self, token_id: int) -> bool:
        return False

    def forced_tokens(self) -> list[int]:
        return []

    def is_accepting(self) -> bool:
        return False

    def is_stopped(self) -> bool:
        return True

    def rollback(self, num_tokens: int) -> None:
        pass

    def error(self) -> str | None:
        return "the schema admits no value"

    def hit_limit(self) -> bool:
        return False


class EmptyGrammar:
    """A schema that admits nothing, compiled exactly (``compile_constraint(allow_empty=True)``)."""

    grammar_text = "(no value matches)"

    def matcher(self) -> Matcher:
        return EmptyMatcher()
